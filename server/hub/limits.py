"""What one device may ask of a hub process at once and per minute: the counters behind the
hub's 429 answers (routes.py). Per process: a device that spreads over several hub processes
gets each one's allowance, which bounds what it costs any one of them."""

from __future__ import annotations

import threading
import time

MAX_IN_FLIGHT = 4  # requests of one device served at once (one at a time is what a device does)


class InFlight:
    """How many requests each device has in this process right now, at most `limit`."""

    def __init__(self, limit: int = MAX_IN_FLIGHT):
        self.limit, self._lock = limit, threading.Lock()
        self._count: dict[str, int] = {}

    def enter(self, key: str) -> bool:
        with self._lock:
            n = self._count.get(key, 0)
            if n >= self.limit:
                return False
            self._count[key] = n + 1
            return True

    def leave(self, key: str) -> None:
        with self._lock:
            n = self._count.pop(key, 1) - 1
            if n > 0:
                self._count[key] = n


class Refusals:
    """Changes of each device refused in this process in the current minute, at most `per_minute`."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute, self._clock, self._lock = per_minute, clock, threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}  # device -> (minute, refused in it)

    def over(self, device_id: str) -> bool:
        minute = int(self._clock() // 60)
        with self._lock:
            at, n = self._counts.get(device_id, (minute, 0))
            return at == minute and n >= self.per_minute

    def count(self, device_id: str, refused: int) -> None:
        if not refused:
            return
        minute = int(self._clock() // 60)
        with self._lock:
            at, n = self._counts.get(device_id, (minute, 0))
            self._counts[device_id] = (minute, (n if at == minute else 0) + refused)
