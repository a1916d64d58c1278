"""Hybrid logical clock (HLC): wall-clock milliseconds, a counter and the device id.

A stamp is a string that sorts like the triple it encodes, so stores compare stamps with plain
string comparison (SQL `>`, Mongo `$gt`, Python `<`). Ties between devices are broken by the
device id, so every replica picks the same winner for the same pair of writes.
"""

from __future__ import annotations

import threading
import time

MS_WIDTH = 15
COUNTER_WIDTH = 6
ZERO = ""  # sorts before every real stamp: "never written"


def encode(ms: int, counter: int, device: str) -> str:
    return f"{ms:0{MS_WIDTH}d}-{counter:0{COUNTER_WIDTH}d}-{device}"


def decode(stamp: str) -> tuple[int, int, str]:
    ms, counter, device = stamp.split("-", 2)
    return int(ms), int(counter), device


def is_stamp(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.split("-", 2)
    return (
        len(parts) == 3
        and len(parts[0]) == MS_WIDTH
        and len(parts[1]) == COUNTER_WIDTH
        and parts[0].isdigit()
        and parts[1].isdigit()
        and bool(parts[2])
    )


def wall_ms() -> int:
    # time.time() rather than a monotonic clock: freezegun drives it in tests, and the value has
    # to mean the same thing on every device.
    return int(time.time() * 1000)


def stamp_ms(stamp: str) -> int:
    return decode(stamp)[0]


class HybridClock:
    """Never goes backwards: not when the wall clock is set back, not across a restart (the
    owner persists `last` and passes it back in), and it moves past every remote stamp it sees."""

    def __init__(self, device_id: str, last: str = ZERO) -> None:
        if not device_id:
            raise ValueError("device id must be a non-empty string")
        self.device_id = device_id
        self._lock = threading.Lock()
        self._ms, self._counter = 0, 0
        if last:
            self._ms, self._counter, _ = decode(last)

    @property
    def last(self) -> str:
        with self._lock:
            return encode(self._ms, self._counter, self.device_id)

    def now(self) -> str:
        """A new stamp for a local write, greater than every stamp issued or observed."""
        with self._lock:
            wall = wall_ms()
            if wall > self._ms:
                self._ms, self._counter = wall, 0
            else:
                self._counter += 1
                if self._counter >= 10**COUNTER_WIDTH:
                    # Counter exhausted within one millisecond: borrow the next millisecond.
                    self._ms, self._counter = self._ms + 1, 0
            return encode(self._ms, self._counter, self.device_id)

    def observe(self, remote: str) -> None:
        """Advance past a stamp received from another replica."""
        if not remote:
            return
        r_ms, r_counter, _ = decode(remote)
        with self._lock:
            if (r_ms, r_counter) > (self._ms, self._counter):
                self._ms, self._counter = r_ms, r_counter
