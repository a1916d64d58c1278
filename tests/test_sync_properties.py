"""Property: whatever three devices do, in whatever order, with rounds failing at random
points, quiescent rounds leave every replica identical, and every acknowledged write is either
present or explainably superseded (by a later write of the same field, or by a delete)."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

from freezegun import freeze_time
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from server.connectors.common import record_key
from server.errors import AppError
from server.records import validate
from tests.synckit import FlakyHub, World, assert_converged

DEVICES = ["a", "b", "c"]
COURSES = ["c1", "c2"]
LECTURES = [("c1", "l1"), ("c1", "l2"), ("c2", "l3")]  # made before the steps, on every device
NEW_LECTURES = ["n1", "n2"]
WORDS = st.sampled_from(["alpha", "beta", "gamma", "delta"])
EXAMPLES = int(os.environ.get("SYNC_PROPERTY_EXAMPLES", "200"))

dev = st.sampled_from(DEVICES)
step = st.one_of(
    st.tuples(st.just("create_course"), dev, st.sampled_from(COURSES), WORDS),
    st.tuples(st.just("update_course"), dev, st.sampled_from(COURSES), st.sampled_from(["title", "notes"]), WORDS),
    st.tuples(st.just("delete_course"), dev, st.sampled_from(COURSES)),
    st.tuples(st.just("create_lecture"), dev, st.sampled_from(COURSES), st.sampled_from(NEW_LECTURES), WORDS),
    st.builds(lambda d, cl, f, w: ("update_lecture", d, cl[0], cl[1], f, w), dev, st.sampled_from(LECTURES),
              st.sampled_from(["title", "note", "status"]), WORDS),
    st.builds(lambda d, cl, f, w: ("update_lecture", d, cl[0], cl[1], f, w), dev, st.sampled_from(LECTURES),
              st.sampled_from(["title", "note"]), WORDS),
    st.builds(lambda d, cl: ("delete_lecture", d, cl[0], cl[1]), dev, st.sampled_from(LECTURES)),
    st.tuples(st.just("sync"), dev),
    st.tuples(st.just("sync"), dev),
    st.tuples(st.just("failing_sync"), dev, st.sampled_from(
        ["hub_before_apply", "hub_after_apply", "cursor_move", "local_apply", "hub_down"])),
    st.tuples(st.just("tick"), st.integers(min_value=0, max_value=5000)),
)


def run_step(world: World, s: tuple, acked: list, frozen) -> None:
    kind = s[0]
    if kind == "tick":
        frozen.tick(dt.timedelta(milliseconds=s[1]))
        return
    name = s[1]
    store = world.device(name)
    if kind in ("sync", "failing_sync"):
        if kind == "failing_sync":
            inject(world, name, s[2])
        try:
            world.sync(name)
        except RuntimeError:
            pass  # the injected crash; the next round must repair everything
        finally:
            world.hubs[name] = getattr(world.hubs[name], "inner", world.hubs[name])
            store.__dict__.pop("_persist", None)
            store.__dict__.pop("set_state", None)
        return
    try:
        if kind == "create_course":
            store.create_course(validate("course", {"id": s[2], "title": s[3], "source": "https://a.b"}, "create"))
        elif kind == "update_course":
            store.update_course(s[2], {s[3]: s[4]})
        elif kind == "delete_course":
            store.delete_course(s[2])
        elif kind == "create_lecture":
            body = {"id": s[3], "title": s[4], "order": 1, "videoUrl": "https://a.b/v"}
            store.create_lecture(s[2], validate("lecture", body, "create"))
        elif kind == "update_lecture":
            value = s[5] if s[4] != "status" else {"alpha": "completed", "beta": "in_progress"}.get(s[5], "not_started")
            store.update_lecture(s[2], s[3], {s[4]: value})
        elif kind == "delete_lecture":
            store.delete_lecture(s[2], s[3])
    except AppError:
        event(f"{kind} refused")
        return  # refused (not found, id conflict): not acknowledged, nothing promised
    event(f"{kind} acknowledged")
    change = store.changes_since({store.device_id: 0}, 10_000)[-1]
    acked.append(change)


def inject(world: World, name: str, where: str) -> None:
    store = world.device(name)
    event(f"injected {where}")
    if where in ("hub_before_apply", "hub_after_apply", "hub_down"):
        flaky = FlakyHub(world.hub_for(name))
        if where == "hub_down":
            flaky.down = True
        else:
            flaky.fail_after("apply_changes", 1, after_call=where == "hub_after_apply")
        world.hubs[name] = flaky
    elif where == "cursor_move":
        original = store.set_state

        def crash(key, value):
            raise RuntimeError("killed before the cursor moved")

        store.set_state = crash  # type: ignore[method-assign]
        del original
    elif where == "local_apply":
        original = type(store)._persist

        def crash_after(*args, **kwargs):
            original(store, *args, **kwargs)
            raise RuntimeError("killed while applying")

        store._persist = crash_after  # type: ignore[method-assign]


def baseline(world: World) -> None:
    first = world.device(DEVICES[0])
    for cid in COURSES:
        first.create_course(validate("course", {"id": cid, "title": cid, "source": "https://a.b"}, "create"))
    for cid, lid in LECTURES:
        body = {"id": lid, "title": lid, "order": 1, "videoUrl": "https://a.b/v"}
        first.create_lecture(cid, validate("lecture", body, "create"))
    world.settle(DEVICES, rounds=1)


def check_acknowledged(world: World, acked: list) -> None:
    records = world.hub.dump_records()
    for change in acked:
        state = records.get((change["kind"], record_key(change["kind"], change["courseId"], change["id"])))
        assert state is not None, f"acknowledged write vanished: {change}"
        if state["deleted"]:
            continue  # superseded by a delete
        if change["op"] == "delete":
            raise AssertionError(f"acknowledged delete undone: {change}")
        for field, value in change["fields"].items():
            clock = state["clocks"].get(field, "")
            assert clock >= change["hlc"], f"{field} of {change['id']} lost: {change}"
            if clock == change["hlc"]:
                assert state["fields"][field] == value


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=30))
def test_random_operations_converge_and_lose_nothing(steps):
    with tempfile.TemporaryDirectory() as tmp, freeze_time("2030-01-01T00:00:00Z") as frozen:
        world = World(Path(tmp), "mongomock", batch_size=3)
        try:
            acked: list = []
            baseline(world)
            for s in steps:
                run_step(world, s, acked, frozen)
            world.settle(DEVICES, rounds=2)
            conflicts = sum(len(world.device(n).list_conflicts()) for n in DEVICES)
            event(f"conflicts: {min(conflicts, 5)}{'+' if conflicts >= 5 else ''}")
            assert_converged(world)
            check_acknowledged(world, acked)
        finally:
            world.close()
