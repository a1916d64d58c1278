"""The devices waiting at this hub process for news (POST /hub/v1/wait), and what wakes them.

A waiter is a request the hub holds without a thread: an asyncio event that the hub's front
(hub_front.py) awaits. It is woken
- by a push through this process (hub_routes calls `notify` for the pushing device's user);
- by the watcher, for pushes through other hub processes on the same store: it looks only when
  devices wait, reads the origins' tops of the waiting users through the store's `StoreWatcher`
  (connectors/base.py; the factory picks the backend's, which knows when to look again), and
  wakes the users whose tops moved; after a commit it also looks up, at most once a second,
  which waiting devices were revoked;
- by a newer wait of the same device (at most one per device), and by the server stopping.

A woken request is checked again through the door as a new one would be (token, then the
store), so a wake-up can be spurious at no risk: it costs one check and the request waits on."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable

from server.connectors.base import StoreWatcher

log = logging.getLogger("server.hub")
REVOKED_SECONDS = 1.0


class Wake:
    """What a parked wait awaits: set once, on the loop. An asyncio.Event keeps a deque of its
    waiters from the start (some 700 bytes), and ten thousand are held at once; this keeps a
    future only while it is awaited."""

    __slots__ = ("_set", "_future")

    def __init__(self) -> None:
        self._set = False
        self._future: asyncio.Future | None = None

    def set(self) -> None:
        self._set = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> bool:
        if not self._set:
            self._future = asyncio.get_running_loop().create_future()
            try:
                await self._future
            finally:
                self._future = None
        return True


class Waiter:
    __slots__ = ("user_id", "device_id", "event", "reason", "_loop")

    def __init__(self, user_id: str, device_id: str, loop: asyncio.AbstractEventLoop | None):
        self.user_id, self.device_id, self._loop = user_id, device_id, loop
        self.event = Wake()
        self.reason: str | None = None  # news, superseded, revoked, closing

    def fire(self, reason: str) -> None:
        if self.reason is None or reason != "news":
            self.reason = reason
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.event.set)


class Waiters:
    """Thread-safe: added from request threads, woken from any thread, awaited on the loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_device: dict[str, Waiter] = {}
        self._by_user: dict[str, set[str]] = {}
        self._joined: set[str] = set()  # users come to wait since the watcher last took them
        self.loop: asyncio.AbstractEventLoop | None = None  # the front's, once it serves
        self.closing = False

    def add(self, user_id: str, device_id: str) -> Waiter:
        waiter = Waiter(user_id, device_id, self.loop)
        with self._lock:
            older = self._by_device.get(device_id)
            self._by_device[device_id] = waiter
            if user_id not in self._by_user:
                self._by_user[user_id] = set()
                self._joined.add(user_id)
            self._by_user[user_id].add(device_id)
        if older is not None:
            older.fire("superseded")  # one wait per device: the newer one stands
        if self.closing:
            waiter.fire("closing")
        return waiter

    def remove(self, waiter: Waiter) -> None:
        with self._lock:
            if self._by_device.get(waiter.device_id) is waiter:
                del self._by_device[waiter.device_id]
                devices = self._by_user.get(waiter.user_id)
                if devices is not None:
                    devices.discard(waiter.device_id)
                    if not devices:
                        del self._by_user[waiter.user_id]

    def notify(self, user_id: str, *, but: str | None = None) -> None:
        """News for `user_id`: wake its waiting devices (but the one that brought it)."""
        with self._lock:
            woken = [self._by_device[d] for d in self._by_user.get(user_id, ()) if d != but]
        for waiter in woken:
            waiter.fire("news")

    def revoked(self, device_ids: set[str]) -> None:
        with self._lock:
            woken = [self._by_device[d] for d in device_ids if d in self._by_device]
        for waiter in woken:
            waiter.fire("revoked")

    def close_all(self) -> None:
        self.closing = True
        with self._lock:
            woken = list(self._by_device.values())
        for waiter in woken:
            waiter.fire("closing")

    def joined(self) -> set[str]:
        """The users come to wait since the last call (taken: the next call starts afresh)."""
        with self._lock:
            joined, self._joined = self._joined, set()
            return joined

    def users(self) -> list[str]:
        with self._lock:
            return list(self._by_user)

    def devices(self) -> list[str]:
        with self._lock:
            return list(self._by_device)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_device)


class Watcher:
    """A thread that wakes the waiters whose user's log moved through another process, and
    those whose device was revoked (`flask hub revoke` runs in a process of its own)."""

    def __init__(self, waiters: Waiters, source: StoreWatcher, revoked_among: Callable[[list[str]], set[str]],
                 driver_errors: tuple = ()):
        self.waiters, self.source, self.revoked_among = waiters, source, revoked_among
        self.driver_errors = driver_errors
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hub-watcher", daemon=True)
        self._tops: dict[str, tuple] = {}
        self._marker: Any = object()
        # Which waiting devices were revoked is looked up after a commit, at most once a
        # REVOKED_SECONDS: 10 ms for 10,000 waiting devices, on every look after a push.
        self._revoked_unchecked, self._revoked_next = False, 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.source.interval):
                try:
                    self.look()
                except self.driver_errors as exc:  # the store is away: the waits time out as usual
                    log.warning("the hub's watcher could not read the store: %s", exc.__class__.__name__)
                    self._stop.wait(1.0)
        finally:
            self.source.close()

    def look(self) -> None:
        """One look: wake whoever has news since the last one, or was revoked."""
        self._news()
        now = time.monotonic()
        if self._revoked_unchecked and now >= self._revoked_next:
            self._revoked_unchecked, self._revoked_next = False, now + REVOKED_SECONDS
            devices = self.waiters.devices()
            gone = self.revoked_among(devices) if devices else set()
            if gone:
                self.waiters.revoked(gone)

    def _news(self) -> None:
        # The marker before the users: a wait not among the users of the last look registered,
        # then read the store, after that look's marker was read.
        marker = self.source.marker()
        joined = self.waiters.joined()
        if marker is not None and marker == self._marker:
            # Nothing committed since that marker, so since any newcomer's read: each newcomer's
            # tops are noted, and it is not woken (10,000 waits come in while nothing is
            # written, and the first write woke every one of them to be checked again).
            new = [u for u in joined if u not in self._tops]
            if new:
                tops = self.source.tops(new)
                self._tops.update((u, tops.get(u, ())) for u in new)
            return
        users = self.waiters.users()
        if not users:
            return
        self._marker, self._revoked_unchecked = marker, True
        tops = self.source.tops(users)
        for user in users:
            # A user first seen now is woken too: its waiter checked before this look, and a
            # change may have landed in between. A spurious wake costs one check.
            if user not in self._tops or tops.get(user, ()) != self._tops[user]:
                self.waiters.notify(user)
        self._tops.update((u, tops.get(u, ())) for u in users)
        if len(self._tops) > 4 * len(users) + 1000:  # users who stopped waiting long ago
            self._tops = {u: self._tops[u] for u in users}
