"""The hub's fair shares (server/hub/fair.py) on their own: threads handed to users in turn,
bytes held per user, and a large push written in turns that answers as one push would."""

from __future__ import annotations

import asyncio

from server.hub import fair
from server.hub.fair import BUSY_TURN, MAX_REST, TURN, Budget, Lanes, in_turns


def test_a_user_with_many_requests_waits_behind_its_own_and_users_take_turns():
    async def scenario() -> list[str]:
        lanes, order = Lanes(2, lambda lane: 1), []
        await lanes.enter("mallory")  # mallory holds her share
        await lanes.enter("bob")

        async def request(lane: str, n: int) -> None:
            async with lanes.slot(lane):
                order.append(f"{lane}{n}")

        queued = [asyncio.ensure_future(request("mallory", n)) for n in range(3)]
        queued += [asyncio.ensure_future(request("alice", 0)), asyncio.ensure_future(request("bob", 1))]
        await asyncio.sleep(0)
        assert lanes.queued("mallory") == 3 and lanes.queued("alice") == 1
        lanes.leave("mallory", 0.0)
        lanes.leave("bob", 0.0)
        await asyncio.gather(*queued)
        return order

    order = asyncio.run(scenario())
    # Alice, who came after three of mallory's, is served with mallory's first, not after all three.
    assert order.index("alice0") < order.index("mallory1") and order.index("bob1") < order.index("mallory2")


def test_a_user_that_used_the_threads_much_gives_way_while_a_light_users_request_is_in():
    async def scenario() -> list[str]:
        now = [0.0]
        lanes, order = Lanes(8, lambda lane: 2, clock=lambda: now[0]), []
        await lanes.enter("mallory")
        now[0] += 1.0
        lanes.leave("mallory", 1.0)  # a second of the threads just now
        lanes.arrive("alice")  # light: in the front, and on a thread at once
        await lanes.enter("alice")
        assert lanes.should_yield("mallory") and not lanes.should_yield("alice")
        assert lanes.others_about("mallory") and not lanes.others_about("alice")

        async def heavy() -> None:
            lanes.arrive("mallory")
            async with lanes.slot("mallory"):
                order.append("mallory")
            lanes.depart("mallory")

        waiting = asyncio.ensure_future(heavy())
        await asyncio.sleep(0.01)
        assert order == [] and lanes.queued("mallory") == 1  # free threads, yet it waits
        order.append("alice done")
        lanes.leave("alice", 0.001)
        lanes.depart("alice")
        await waiting
        return order

    assert asyncio.run(scenario()) == ["alice done", "mallory"]


def test_bodies_are_held_within_a_users_share_and_another_user_is_not_held_up():
    async def scenario() -> list[str]:
        budget, got = Budget(per_lane=10, total=100), []
        await budget.reserve("mallory", 8)

        async def reserve(lane: str, n: int) -> None:
            await budget.reserve(lane, n)
            got.append(lane)

        waiting = asyncio.ensure_future(reserve("mallory", 5))  # over her share: waits
        other = asyncio.ensure_future(reserve("alice", 9))  # after her in line, but fits
        await asyncio.sleep(0)
        assert got == ["alice"]
        budget.release("mallory", 8)
        await asyncio.gather(waiting, other)
        return got

    assert asyncio.run(scenario()) == ["alice", "mallory"]


def test_a_large_push_in_turns_answers_as_one_push_would():
    calls = []

    def apply(part: list) -> dict:
        calls.append(len(part))
        gap = [c for c in part if c == "gap"]
        return {"received": len(part), "applied": len(part) - len(gap), "conflicts": 1,
                "quarantined": [{"origin": "o", "seq": n} for n in part if n in (7, 107)],
                "resume": {"o": 9} if gap else {}, "note": "first"}

    changes = list(range(2 * TURN)) + ["gap"] + list(range(5))
    joined = in_turns(apply, changes)
    assert calls == [TURN, TURN, 6]
    assert joined == {"received": len(changes), "applied": len(changes) - 1, "conflicts": 3,
                      "quarantined": [{"origin": "o", "seq": 7}, {"origin": "o", "seq": 107}],
                      "resume": {"o": 9}, "note": "first"}
    assert in_turns(apply, [1, 2]) == apply([1, 2])


def test_while_another_user_is_about_a_large_push_rests_between_turns_as_long_as_each_took(monkeypatch):
    """The writer and the disk are left free between a heavy push's turns, for as long as the
    turn held them (at most MAX_REST): another user's commit then waits for neither."""
    clock, rests = [0.0], []
    monkeypatch.setattr(fair.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(fair.time, "sleep", rests.append)
    monkeypatch.setattr(fair, "pace", lambda: True)  # another user is about

    def apply(part: list) -> dict:
        clock[0] += 0.004 * len(part) / BUSY_TURN  # a full turn holds the writer 4 ms
        return {"received": len(part)}

    assert in_turns(apply, list(range(3 * BUSY_TURN + 1)))["received"] == 3 * BUSY_TURN + 1
    assert rests == [0.004, 0.004, 0.004]  # after each turn but the last
    monkeypatch.setattr(fair, "pace", lambda: False)  # alone: no rest
    rests.clear()
    in_turns(apply, list(range(3 * TURN)))
    assert rests == []
    clock[0], rests[:] = 0.0, []
    monkeypatch.setattr(fair, "pace", lambda: True)
    in_turns(lambda part: clock.__setitem__(0, clock[0] + 1.0) or {"received": len(part)}, list(range(2 * BUSY_TURN)))
    assert rests == [MAX_REST]
