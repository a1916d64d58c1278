"""Fair shares between the users of one hub process, so that one user, however hostile, costs
another little: what the hub's front (front.py) hands out by user, on its event loop.

- Threads (`Lanes`): a request runs on one of the app's threads only within its user's share of
  them; when a thread frees, the user waiting that used the threads least lately takes it, so a
  user with a hundred requests queued waits behind its own, not in front of another's; and a
  user that used them much gives way while a light user's request runs (at the door, between
  the turns of a large push, before a large body is parsed): one interpreter runs one thread at
  a time, and a light user's call then has it to itself.
- Body bytes in flight (`Budget`): a large body is read only within its user's share of the
  bytes the front holds, and of the whole.
- Store writes (`in_turns`): a large push is written in turns (TURN changes, BUSY_TURN while
  another user is about), each its own transaction, so that another user's write waits
  for one turn, not a whole push (the SQLite hub's writer lock hands itself over in order,
  connectors/sqlite/pool.py, TurnLock); while another user is about, the push rests after each
  turn as long as the turn took, leaving the writer and the disk free (their commits' fsyncs
  were what other users' pushes waited for, bench_fair).
Waits hold no thread while parked; each pass of one through the app is a request of its user."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections import OrderedDict, deque
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Hashable

from flask import current_app, has_request_context, request

LANE_KEY = "coursesync.lane"  # the request's lane, in its ASGI scope (set by the front)

TAU = 2.0  # seconds over which a lane's use of the threads is remembered, fading
LIGHT = 0.05  # thread-seconds remembered, under which a lane never gives way
MAX_YIELD = 0.5  # a lane gives way to lighter ones at most this long at a time
LOOK_AHEAD = 64  # waiting lanes, from the front of the line, a freed thread chooses among
RECENT = 1.0  # seconds after its last request that a lane is still about (a large push takes small turns)
TURN, BUSY_TURN = 500, 25  # changes in one transaction of a large push, alone / while others are about
TURN_CHARS, BUSY_TURN_CHARS = 1024 * 1024, 32 * 1024  # and their fields' text
MAX_REST = 0.05  # seconds a large push rests after a turn while others are about, at most


class Lanes:
    """`slots` threads shared by lanes (a user each), at most `share(lane)` of them per lane.

    Light users first: each lane's use of the threads is remembered (thread-seconds, fading over
    TAU); a freed thread goes to the waiting lane that used least, and a lane that used much
    gives way (for up to MAX_YIELD at a time) while a much lighter lane has a request in the
    front (`arrive` to `depart`), at the door and at the pace points of a long request (`pace`)."""

    def __init__(self, slots: int, share: Callable[[Hashable], int], clock: Callable[[], float] = time.monotonic):
        self.free, self.share, self.clock = slots, share, clock
        self.running: dict[Hashable, int] = {}
        self.waiting: OrderedDict[Hashable, deque[tuple[asyncio.Future, float]]] = OrderedDict()
        self.used: dict[Hashable, tuple[float, float]] = {}  # lane -> (thread-seconds, as of when)
        self.forget_past = 1000
        self.lock = threading.Lock()  # request threads ask should_yield
        self.timer: asyncio.TimerHandle | None = None
        self.present: dict[Hashable, int] = {}  # lane -> its requests in the front, not parked
        self.recent: OrderedDict[Hashable, float] = OrderedDict()  # lane -> when a request of it came

    def arrive(self, lane: Hashable) -> None:
        """A request of `lane` is in the front (from its head to its answer, but while parked)."""
        now = self.clock()
        with self.lock:
            self.present[lane] = self.present.get(lane, 0) + 1
            self.recent[lane] = now
            self.recent.move_to_end(lane)
            while self.recent and next(iter(self.recent.values())) < now - RECENT:
                self.recent.popitem(last=False)

    def depart(self, lane: Hashable) -> None:
        with self.lock:
            left = self.present[lane] - 1
            if left:
                self.present[lane] = left
            else:
                del self.present[lane]
        self._grant()

    def queued(self, lane: Hashable) -> int:
        return len(self.waiting.get(lane, ()))

    def weight(self, lane: Hashable, now: float) -> float:
        value, when = self.used.get(lane, (0.0, now))
        return value * math.exp((when - now) / TAU)

    def _yields(self, lane: Hashable, now: float) -> bool:
        mine = self.weight(lane, now)
        return mine > LIGHT and any(other != lane and 2 * self.weight(other, now) < mine for other in self.present)

    def should_yield(self, lane: Hashable) -> bool:
        """Whether a request of `lane` should pause to let a much lighter lane's run alone."""
        with self.lock:
            return self._yields(lane, self.clock())

    async def give_way(self, lane: Hashable) -> float:
        """On the loop: wait (up to MAX_YIELD) while `lane` should let a lighter lane's request
        run alone; the seconds waited."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while self.should_yield(lane) and loop.time() - start < MAX_YIELD:
            await asyncio.sleep(0.002)
        return loop.time() - start

    def others_about(self, lane: Hashable) -> bool:
        """Whether another lane sent a request within the last RECENT seconds."""
        with self.lock:
            return len(self.recent) > (lane in self.recent)

    @asynccontextmanager
    async def slot(self, lane: Hashable) -> AsyncIterator[None]:
        await self.enter(lane)
        start = self.clock()
        try:
            yield
        finally:
            self.leave(lane, self.clock() - start)

    async def enter(self, lane: Hashable) -> None:
        now = self.clock()
        with self.lock:
            if self.free > 0 and lane not in self.waiting and self.running.get(lane, 0) < self.share(lane) \
                    and not self._yields(lane, now):
                self._take(lane)
                return
            turn = asyncio.get_running_loop().create_future()
            self.waiting.setdefault(lane, deque()).append((turn, now))
        self._wake_later()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave(lane, 0.0)  # granted as it was cancelled: give it on
            else:
                self._forget(lane, turn)
            raise

    def leave(self, lane: Hashable, seconds: float) -> None:
        now = self.clock()
        with self.lock:
            self.used[lane] = (self.weight(lane, now) + seconds, now)
            left = self.running[lane] - 1
            if left:
                self.running[lane] = left
            else:
                del self.running[lane]
                if len(self.used) > self.forget_past:  # forget the lanes not used lately
                    self.used = {k: u for k, u in self.used.items() if self.weight(k, now) > LIGHT / 100}
                    self.forget_past = 1000 + 2 * len(self.used)
            self.free += 1
        self._grant()

    def _take(self, lane: Hashable) -> None:
        self.free -= 1
        self.running[lane] = self.running.get(lane, 0) + 1

    def _forget(self, lane: Hashable, turn: asyncio.Future) -> None:
        with self.lock:
            queue = self.waiting.get(lane)
            if queue is None:
                return
            entry = next((e for e in queue if e[0] is turn), None)
            if entry is not None:
                queue.remove(entry)
                if not queue:
                    del self.waiting[lane]

    def _grant(self) -> None:
        """Hand free slots to waiting lanes, the lightest of the first LOOK_AHEAD in line first,
        passing over a lane that gives way to a lighter one running (unless it has waited
        MAX_YIELD). A lane served goes to the back of the line."""
        granted = []
        with self.lock:
            now = self.clock()
            while self.free > 0:
                ready = [k for k, q in itertools.islice(self.waiting.items(), LOOK_AHEAD)
                         if self.running.get(k, 0) < self.share(k) and (now - q[0][1] > MAX_YIELD or
                                                                        not self._yields(k, now))]
                if not ready:
                    break
                lane = min(ready, key=lambda k: self.weight(k, now))
                queue = self.waiting.pop(lane)
                granted.append(queue.popleft()[0])
                if queue:
                    self.waiting[lane] = queue  # to the back of the line
                self._take(lane)
        for turn in granted:
            turn.set_result(None)
        if self.waiting:
            self._wake_later()

    def _wake_later(self) -> None:
        """Look again in a moment: a lane giving way may stop doing so by the clock alone."""
        if self.timer is None or self.timer.cancelled():
            def wake() -> None:
                self.timer = None
                self._grant()
            self.timer = asyncio.get_running_loop().call_later(MAX_YIELD / 10, wake)


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
    """`apply` (a store's apply_changes or relay_changes) over the batch in turns, in order, as
    that many pushes one after another would be: the answers joined. A turn is smaller while
    another user is about, and rested after (up to MAX_REST), and a heavy user gives way between
    turns (`pace`)."""
    if len(changes) <= BUSY_TURN:
        return apply(changes)
    joined: dict[str, Any] = {}
    start = 0
    while start < len(changes):
        busy = pace()
        count, chars = (BUSY_TURN, BUSY_TURN_CHARS) if busy else (TURN, TURN_CHARS)
        end, size = start, 0
        while end < len(changes) and end - start < count and (end == start or size < chars):
            size += _chars(changes[end])
            end += 1
        began = time.monotonic()
        joined = _joined(joined, apply(changes[start:end]))
        start = end
        if busy and start < len(changes):  # the writer and the disk left free as long as it held them
            time.sleep(min(time.monotonic() - began, MAX_REST))
    return joined


def _chars(change: Any) -> int:
    fields = change.get("fields") if isinstance(change, dict) else None
    return sum(len(v) for v in fields.values() if isinstance(v, str)) if isinstance(fields, dict) else 0


def pace() -> bool:
    """In a request thread of the hub's front: give way (up to MAX_YIELD) while a much lighter
    user's request is in the front, then say whether another user is about. Without the front
    (a test's client, a bare WSGI server) nothing waits."""
    if not has_request_context():
        return False
    lanes, lane = current_app.extensions.get("lanes"), request.environ.get("asgi.scope", {}).get(LANE_KEY)
    if lanes is None or lane is None:
        return False
    deadline = time.monotonic() + MAX_YIELD
    while lanes.should_yield(lane) and time.monotonic() < deadline:
        time.sleep(0.002)
    return lanes.others_about(lane)


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
