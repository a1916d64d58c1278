"""Push on write: the leading edge, then paced rounds while writes keep coming.

A write after a quiet spell is pushed at once: its round starts as soon as the write is
answered. The writes answered while that round runs go together in the next one. If writes
came during that one too, a burst is under way, and each further round waits a little before it
starts: FIRST_PAUSE after the first busy round, twice as long after each busy round after it,
never more than MAX_PAUSE. A round during which no write came ends the job, and the next write
is a leading edge again. So a burst of a thousand writes goes in a few tens of rounds, not one
round every few writes, and the device's CPU goes to answering the writes rather than to rounds
that each carry a handful; a single write still goes at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Callable

log = logging.getLogger("server.sync")
FIRST_PAUSE = 0.01  # seconds before the round after the first busy one
MAX_PAUSE = 0.15  # the longest a write waits, on top of the round running when it came


def next_pause(pause: float, first: float = FIRST_PAUSE, cap: float = MAX_PAUSE) -> float:
    """The pause before the next round, after a round during which writes came, given the pause
    before that round (0 for the leading edge's)."""
    return min(cap, max(first, pause * 2))


class PushOnWrite:
    """The push job of a sync service (server/sync/service.py): `nudge` after each write the API
    answered; `job` is what the scheduler runs. `pause` waits that many seconds or until `stop`
    (tests hand in one that only records)."""

    def __init__(self, service: Any, *, pause: Callable[[float], Any] | None = None,
                 first: float = FIRST_PAUSE, cap: float = MAX_PAUSE):
        self._service = service
        self._stopping = threading.Event()
        self._pause = pause or self._stopping.wait
        self.first, self.cap = first, cap
        self._state = threading.Lock()
        self.pushing = False  # a push job is scheduled or running
        self._again = False  # writes came while it ran: it goes once more

    def nudge(self) -> None:
        """A local write was answered. Never in the write's way: the answer has gone, nothing
        here waits for the hub, a round already running (the timer's, a live wake's) is waited
        for rather than overlapped, and while backing off the write waits for the retry like any
        other."""
        service = self._service
        scheduler = service.scheduler
        if scheduler is None or service.backing_off():
            return
        with self._state:
            if self.pushing:
                self._again = True  # the running push job goes once more, after its round
                return
            self.pushing = True
        try:
            # max_instances=2: the job before may not have returned yet, though it is done.
            scheduler.add_job(self.job, "date", run_date=dt.datetime.now(dt.timezone.utc), id="push-soon",
                              misfire_grace_time=60, max_instances=2)
        except Exception:
            with self._state:
                self.pushing = False  # a scheduler shutting down: the next round takes the write
            log.debug("the push after a write could not be scheduled", exc_info=True)

    def job(self) -> None:
        """A round at once, and one more for as long as writes came while one ran, each after a
        pause that grows while they keep coming."""
        service, pause = self._service, 0.0
        while not service.backing_off() and not self._stopping.is_set():  # a failed round: the retry
            with self._state:
                self._again = False  # the writes nudged so far go in this round
            try:
                service.run_once(wait_seconds=60)
            except Exception:
                pass  # recorded like any round's; the next write or the timer tries again
            with self._state:
                if not self._again:
                    self.pushing = False
                    return
            pause = next_pause(pause, self.first, self.cap)
            self._pause(pause)  # the writes answered meanwhile go in the next round too
        with self._state:
            self.pushing = self._again = False

    def start(self) -> None:
        self._stopping.clear()

    def stop(self) -> None:
        """The service is stopping: a job pausing ends now, and runs no more rounds."""
        self._stopping.set()
