"""How times are written and read: ISO-8601 UTC with milliseconds and a `Z`, the one form the
API, the stores and the sync status use (e.g. 2026-11-26T10:12:35.123Z). Pure: the only input is
the wall clock, for `iso_now`."""

from __future__ import annotations

import datetime as dt
import time


def iso_from_ms(ms: int) -> str:
    """Milliseconds since the epoch as ISO-8601 UTC with milliseconds and a Z."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def iso_now() -> str:
    return iso_from_ms(int(time.time() * 1000))


def iso_from_seconds(ts: float | None) -> str | None:
    """A time.time() value as ISO text; None stays None (a time that has not happened yet)."""
    return None if ts is None else iso_from_ms(int(ts * 1000))


def ms_from_iso(value: str) -> int:
    """The milliseconds of an ISO-8601 UTC text ending in Z (with or without a fraction)."""
    parsed = dt.datetime.fromisoformat(value[:-1]).replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp() * 1000)


def seconds_from_iso(value: str | None) -> float | None:
    return None if not value else ms_from_iso(value) / 1000
