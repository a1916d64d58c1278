"""Fair shares between the users of one hub process, so that one user, however hostile, costs
another little: what the hub's front (hub_front.py) hands out by user, on its event loop.

- Threads (`Lanes`): a request runs on one of the app's threads only within its user's share of
  them; when a thread frees, the users waiting take turns (round robin), so a user with a
  hundred requests queued waits behind its own, not in front of another's.
- Body bytes in flight (`Budget`): a large body is read only within its user's share of the
  bytes the front holds, and of the whole.
- Store writes (`in_turns`): a large push is written in turns of TURN changes, each its own
  transaction, so that another user's write waits for one turn, not a whole push (the SQLite
  hub's writer lock hands itself over in order, sql_pool.TurnLock).
Waits hold no thread while parked; each pass of one through the app is a request of its user."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Hashable

TURN = 100  # changes written in one transaction of a large push


class Lanes:
    """`slots` threads shared by lanes (a user each), at most `share(lane)` of them per lane."""

    def __init__(self, slots: int, share: Callable[[Hashable], int]):
        self.free, self.share = slots, share
        self.running: dict[Hashable, int] = {}
        self.waiting: OrderedDict[Hashable, deque[asyncio.Future]] = OrderedDict()

    def queued(self, lane: Hashable) -> int:
        return len(self.waiting.get(lane, ()))

    @asynccontextmanager
    async def slot(self, lane: Hashable) -> AsyncIterator[None]:
        await self.enter(lane)
        try:
            yield
        finally:
            self.leave(lane)

    async def enter(self, lane: Hashable) -> None:
        if self.free > 0 and lane not in self.waiting and self.running.get(lane, 0) < self.share(lane):
            self._take(lane)
            return
        turn = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(lane, deque()).append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave(lane)  # granted as it was cancelled: give it on
            else:
                self._forget(lane, turn)
            raise

    def leave(self, lane: Hashable) -> None:
        left = self.running[lane] - 1
        if left:
            self.running[lane] = left
        else:
            del self.running[lane]
        self.free += 1
        self._grant()

    def _take(self, lane: Hashable) -> None:
        self.free -= 1
        self.running[lane] = self.running.get(lane, 0) + 1

    def _forget(self, lane: Hashable, turn: asyncio.Future) -> None:
        queue = self.waiting.get(lane)
        if queue is not None and turn in queue:
            queue.remove(turn)
            if not queue:
                del self.waiting[lane]

    def _grant(self) -> None:
        """Hand free slots to the waiting lanes in turn: the first lane under its share goes to
        the back of the line after it is served."""
        while self.free > 0:
            lane = next((k for k in self.waiting if self.running.get(k, 0) < self.share(k)), None)
            if lane is None:
                return
            queue = self.waiting.pop(lane)
            turn = queue.popleft()
            if queue:
                self.waiting[lane] = queue  # to the back of the line
            self._take(lane)
            turn.set_result(None)


class Budget:
    """Bytes the front holds in bodies: at most `per_lane` for one lane, `total` for all; a
    reservation waits until it fits, behind its own lane's only."""

    def __init__(self, per_lane: int, total: int):
        self.per_lane, self.total = per_lane, total
        self.held: dict[Hashable, int] = {}
        self.used = 0
        self.waiting: deque[tuple[Hashable, int, asyncio.Future]] = deque()

    def _fits(self, lane: Hashable, n: int) -> bool:
        return self.held.get(lane, 0) + n <= self.per_lane and self.used + n <= self.total

    async def reserve(self, lane: Hashable, n: int) -> None:
        if self._fits(lane, n) and not any(w[0] == lane for w in self.waiting):
            self._take(lane, n)
            return
        turn = asyncio.get_running_loop().create_future()
        entry = (lane, n, turn)
        self.waiting.append(entry)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release(lane, n)
            else:
                self.waiting.remove(entry)
            raise

    def release(self, lane: Hashable, n: int) -> None:
        left = self.held[lane] - n
        if left:
            self.held[lane] = left
        else:
            del self.held[lane]
        self.used -= n
        for entry in list(self.waiting):  # whoever fits now, in order: one lane's wait holds up no other
            lane_, m, turn = entry
            if self._fits(lane_, m):
                self.waiting.remove(entry)
                self._take(lane_, m)
                turn.set_result(None)

    def _take(self, lane: Hashable, n: int) -> None:
        self.held[lane] = self.held.get(lane, 0) + n
        self.used += n


def in_turns(apply: Callable[[list], dict[str, Any]], changes: list) -> dict[str, Any]:
    """`apply` (a store's apply_changes or relay_changes) over the batch in turns of TURN
    changes, in order, as that many pushes one after another would be: the answers joined."""
    if len(changes) <= TURN:
        return apply(changes)
    joined: dict[str, Any] = {}
    for start in range(0, len(changes), TURN):
        joined = _joined(joined, apply(changes[start:start + TURN]))
    return joined


def _joined(before: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """Two answers of a store's apply, as one: counts added, lists put end to end, maps merged
    (where both name a key, as the first said it: an origin resumed from the first gap)."""
    out = dict(before)
    for key, value in now.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, bool) or not isinstance(value, (int, list, dict)):
            continue
        elif isinstance(value, int):
            out[key] += value
        elif isinstance(value, list):
            out[key] = [*out[key], *value]
        else:
            out[key] = {**value, **out[key]}
    return out
