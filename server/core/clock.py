"""Hybrid logical clock (HLC): wall-clock milliseconds, a counter and the origin (the
id a store's own changes are stamped with).

A stamp is a string that sorts like the triple it encodes, so stores compare stamps with plain
string comparison (SQL `>`, Mongo `$gt`, Python `<`). That holds only while both numbers keep
their fixed width, so `encode` refuses a value that does not fit rather than write a wider one
(which would sort below smaller values). Ties between origins are broken by the origin, so
every replica picks the same winner for the same pair of writes.
"""

from __future__ import annotations

import re
import threading
import time

MS_WIDTH = 15
COUNTER_WIDTH = 6
MS_MAX = 10**MS_WIDTH - 1  # about the year 33658
COUNTER_MAX = 10**COUNTER_WIDTH - 1
ZERO = ""  # sorts before every real stamp: "never written"
# ASCII digits only (str.isdigit would take "²"), and an origin of printable ASCII with no space.
ORIGIN_PATTERN = "[!-~]+"
ORIGIN_RE = re.compile(ORIGIN_PATTERN)
STAMP_RE = re.compile(rf"[0-9]{{{MS_WIDTH}}}-[0-9]{{{COUNTER_WIDTH}}}-{ORIGIN_PATTERN}")


def encode(ms: int, counter: int, origin: str) -> str:
    if not (0 <= ms <= MS_MAX and 0 <= counter <= COUNTER_MAX):
        raise ValueError(f"clock value out of range: {ms} ms, counter {counter}")
    _check_origin(origin)
    return f"{ms:0{MS_WIDTH}d}-{counter:0{COUNTER_WIDTH}d}-{origin}"


def _check_origin(origin: str) -> None:
    if not ORIGIN_RE.fullmatch(origin):
        raise ValueError(f"not an origin for a stamp: {origin!r}")


def is_stamp(value: object) -> bool:
    return isinstance(value, str) and STAMP_RE.fullmatch(value) is not None


def decode(stamp: str) -> tuple[int, int, str]:
    if not is_stamp(stamp):
        raise ValueError(f"not a clock stamp: {stamp!r}")
    ms, counter, origin = stamp.split("-", 2)
    return int(ms), int(counter), origin


def wall_ms() -> int:
    # time.time() rather than a monotonic clock: freezegun drives it in tests, and the value has
    # to mean the same thing on every device.
    return int(time.time() * 1000)


def stamp_ms(stamp: str) -> int:
    return decode(stamp)[0]


class HybridClock:
    """Never goes backwards: not when the wall clock is set back, not across a restart (the
    owner persists `last` and passes it back in), and it moves past every remote stamp it sees."""

    def __init__(self, origin: str, last: str = ZERO) -> None:
        _check_origin(origin)
        self.origin = origin
        self._lock = threading.Lock()
        self._at = decode(last)[:2] if last else (0, 0)  # (ms, counter) of the newest stamp known

    @property
    def last(self) -> str:
        with self._lock:
            return encode(*self._at, self.origin)

    def now(self) -> str:
        """A new stamp for a local write, greater than every stamp issued or observed."""
        with self._lock:
            ms, counter = self._at
            wall = wall_ms()
            if wall > ms:
                self._at = (wall, 0)
            elif counter < COUNTER_MAX:
                self._at = (ms, counter + 1)
            else:
                # Counter exhausted within one millisecond: borrow the next millisecond.
                self._at = (ms + 1, 0)
            ms, counter = self._at
            if ms > MS_MAX:
                raise ValueError(f"clock value out of range: {ms} ms")
            # The origin was checked when the clock was made: only the width can fail here.
            return f"{ms:0{MS_WIDTH}d}-{counter:0{COUNTER_WIDTH}d}-{self.origin}"

    def observe(self, remote: str) -> None:
        """Advance past a stamp received from another replica."""
        if remote:
            seen = decode(remote)[:2]
            with self._lock:
                self._at = max(self._at, seen)
