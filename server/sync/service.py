"""The background worker and the status record around sync rounds.

One lock serialises rounds, whoever asks (the APScheduler job or `POST /api/v1/sync`). Hub
errors back off exponentially with jitter up to a cap; the first success resets it."""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from server.connectors.base import DatabaseConnector
from server.core.clock import stamp_ms
from server.core.config import Settings
from server.core.errors import AppError, SyncBusy
from server.core.times import iso_from_ms, iso_from_seconds
from server.sync.child import ChildRounds
from server.sync.engine import Progress, run_round
from server.sync.hub import Hub, WaitingHub
from server.sync.live import LiveWait
from server.sync.push import PushOnWrite
from server.sync.report import RoundReport
from server.sync.status import CLOCK_AHEAD, LIVE_OFF, sync_status
from server.sync.wake import apply_page

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger("server.sync")
BACKOFF_CAP_SECONDS = 300.0
HISTORY = 30  # rounds kept for the sync page's chart
LEDGER_AGEING_SECONDS = 3600  # how often the scheduled job forgets conflicts resolved long ago


class _OverlapsAreDebug(logging.Filter):
    """A round that outlasts the interval makes APScheduler skip the next run and warn. That is
    max_instances=1 doing its job, not a problem: say it at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "maximum number of running instances" in record.getMessage():
            log.debug("a round outlasted the interval; the next scheduled one was skipped")
            return False
        return True


SCHEDULER_LOG = logging.getLogger("apscheduler.scheduler")
SCHEDULER_LOG.addFilter(_OverlapsAreDebug())


JOIN_TIMED_OUT = ("No sync round ended within {s} s of this request: the one running is slow (a long catch-up, "
                  "or a hub that does not answer). Nothing is lost; GET /api/v1/sync/status shows the round "
                  "and its last error. Try again once it has ended.")


class SyncService:
    def __init__(self, settings: Settings, local: DatabaseConnector,
                 open_hub: Callable[[], Hub], *, child: ChildRounds | None = None,
                 rng: Callable[[], float] = random.random, clock: Callable[[], float] = time.time,
                 live_hub: Callable[[], WaitingHub] | None = None, pause: Callable[[float], Any] | None = None):
        """`open_hub` returns a connected hub (server/sync/hub.py's, or a test's). `child`: run
        rounds there rather than in the calling thread (the server does; tests that hand in an
        in-memory hub cannot). `live_hub` opens the hub the live wait holds (server/sync/live.py);
        without it, sync runs on the timer and after writes only. `pause`: how the push job waits
        between the rounds of a burst (server/sync/push.py; a test's records instead)."""
        self.settings, self.local, self._open_hub = settings, local, open_hub
        self.child = child
        self.hub: Hub | None = None
        self._rng = rng
        self.now = clock  # the time source of rounds and backoff (time.time; a test's own)
        self._lock = threading.Lock()
        self._meta_lock = threading.Lock()
        # Rounds are numbered as they start; `join` waits on this for one that started after it.
        self._rounds = threading.Condition()
        self._started = 0
        self._ended: tuple[int, RoundReport] | None = None  # the newest round that ended, by number
        self.push = PushOnWrite(self, pause=pause)
        self.running = False
        self.last_attempt: float | None = None
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.last_report: RoundReport | None = None
        self.failures = 0
        self.clock_ahead = 0  # own changes the hub refused in the last round that pushed, for the clock
        self.backoff_until: float | None = None
        self.totals = {"pushed": 0, "pulled": 0, "conflicts": 0, "rounds": 0}
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)  # the recent rounds, for the sync page
        self.observers: list[Callable[[RoundReport], None]] = []  # told of every round that ended (metrics)
        self.scheduler: BackgroundScheduler | None = None
        self._live_hub = live_hub
        self.live: LiveWait | None = None
        self.last_remote_lag_ms: float | None = None  # from the newest pulled change's stamp to here
        self._ledger_aged_at: float | None = None

    # --- rounds ---------------------------------------------------------------------------
    def _ensure_hub(self) -> Hub:
        if self.hub is None:
            self.hub = self._open_hub()
        return self.hub

    def run_once(self, *, wait_seconds: float = 30.0, progress: Progress | None = None,
                 here: bool = False) -> RoundReport:
        """Run one round now. Raises SyncBusy if another round holds the lock longer than
        `wait_seconds`; hub trouble is reported in the returned report, not raised. `here` runs
        it in this thread even when the service has a child process (progress needs that)."""
        got = self._lock.acquire(timeout=wait_seconds) if wait_seconds > 0 else self._lock.acquire(blocking=False)
        if not got:
            raise SyncBusy("A sync round is already running.")
        report: RoundReport | None = None
        try:
            with self._rounds:
                self._started += 1
                number = self._started
                self.running = True
            self.last_attempt = self.now()
            try:
                if self.child is not None and not here:
                    report = self.child.run(self.settings.sync_batch_size)
                else:
                    report = run_round(self.local, self._ensure_hub(), self.settings.sync_batch_size, progress)
            except AppError as exc:  # the hub could not even be reached to connect
                report = RoundReport(error=exc.message, error_code=exc.code)
            except Exception as exc:
                log.exception("sync round crashed")
                report = RoundReport(error=f"internal error: {exc.__class__.__name__}", error_code="internal_error")
                self._record(report)
                raise
            self._record(report)
            return report
        finally:
            with self._rounds:
                self.running = False
                if report is not None:
                    self._ended = (number, report)
                self._lock.release()
                self._rounds.notify_all()

    def join(self, deadline_seconds: float, *, progress: Progress | None = None, here: bool = False) -> RoundReport:
        """"Sync now": the report of a round that started after this call came, within
        `deadline_seconds`. A round running now is waited for; then this runs one, or rides along
        with one that another caller (a push, a live wake) started first. Raises SyncBusy, with
        what to do, only when no such round ended by the deadline."""
        end = time.monotonic() + deadline_seconds
        with self._rounds:
            ticket = self._started
        while True:
            try:
                return self.run_once(wait_seconds=0, progress=progress, here=here)
            except SyncBusy:
                pass
            with self._rounds:
                while self.running:
                    if self._ended is not None and self._ended[0] > ticket:
                        return self._ended[1]
                    left = end - time.monotonic()
                    if left <= 0:
                        raise SyncBusy(JOIN_TIMED_OUT.format(s=round(deadline_seconds)))
                    self._rounds.wait(left)
                if self._ended is not None and self._ended[0] > ticket:
                    return self._ended[1]
                # The lock is held by what is not a round (a live wake's page being applied):
                # wait a moment for it, within the deadline, rather than spin.
                left = end - time.monotonic()
                if left <= 0:
                    raise SyncBusy(JOIN_TIMED_OUT.format(s=round(deadline_seconds)))
                self._rounds.wait(min(left, 0.05))

    def apply_woken(self, news: dict[str, Any]) -> bool:
        """A live wake that brought the changes (feature "waitChanges"): applied here, in this
        process, as a pull (the store's door, one transaction with the cursor; sync/wake.py).
        False when a round must run instead, or a round holds the lock."""
        if not self._lock.acquire(timeout=60):
            return False
        started = time.perf_counter()
        report = RoundReport()
        try:
            passed = apply_page(self.local, news, self.settings.sync_batch_size, report)
            report.duration_ms = (time.perf_counter() - started) * 1000
        except AppError as exc:
            log.info("a wake's changes were not applied (%s); a round runs", exc.message)
            return False
        finally:
            self._lock.release()
        if report.newest_pulled or report.pulled or report.quarantined:  # a page was applied
            self._record(report)
        return passed  # a page it could not pass: the round, which knows to stop asking

    def _record(self, report: RoundReport) -> None:
        with self._meta_lock:
            self.last_report = report
            self.totals["pushed"] += report.pushed
            self.totals["pulled"] += report.pulled
            self.totals["conflicts"] += report.conflicts
            self.totals["rounds"] += 1
            self.history.append({"at": iso_from_seconds(self.now()), "pushed": report.pushed, "pulled": report.pulled,
                                 "conflicts": report.conflicts, "durationMs": round(report.duration_ms, 1),
                                 "error": report.error})
            if report.newest_pulled:  # the writer's clock against this one's: a guide, not a measure
                self.last_remote_lag_ms = max(0.0, round(self.now() * 1000 - stamp_ms(report.newest_pulled), 1))
            if report.refused_for_clock:
                self.clock_ahead = report.refused_for_clock
            elif report.pushed and not report.error:
                self.clock_ahead = 0  # the hub took this device's stamps again
            now = self.now()
            if report.error:
                self.failures += 1
                self.last_error = report.error
                ceiling = min(BACKOFF_CAP_SECONDS, self.settings.sync_interval_seconds * 2 ** self.failures)
                # Full jitter keeps a fleet of devices from retrying in lockstep after an outage.
                delay = max(self.settings.sync_interval_seconds, ceiling * (0.5 + self._rng() / 2))
                self.backoff_until = now + delay
                log.warning("sync round failed (%s); next try in %.1fs", report.error, delay)
            else:
                self.failures = 0
                self.backoff_until = None
                self.last_success = now
                self.last_error = None
        for observe in self.observers:
            observe(report)

    def age_ledger(self) -> int:
        """Forget the conflicts resolved longer ago than CONFLICTS_KEEP_RESOLVED_DAYS, at most once
        every LEDGER_AGEING_SECONDS; how many went."""
        now = self.now()
        if self._ledger_aged_at is not None and now - self._ledger_aged_at < LEDGER_AGEING_SECONDS:
            return 0
        self._ledger_aged_at = now
        before = now - self.settings.conflicts_keep_resolved_days * 86_400
        gone = self.local.forget_resolved_conflicts(iso_from_ms(int(before * 1000)))
        if gone:
            log.info("forgot %d conflict(s) resolved more than %g days ago", gone,
                     self.settings.conflicts_keep_resolved_days)
        return gone

    def tick(self) -> None:
        """The scheduled job: forget conflicts resolved long ago; then a round, unless backing off or
        a manual round runs."""
        try:
            self.age_ledger()
        except Exception:
            log.exception("ageing the conflict ledger failed; the next tick tries again")
        if self.backing_off():
            return
        try:
            self.run_once(wait_seconds=0)
        except SyncBusy:
            pass
        except Exception:
            pass  # already logged and recorded; the job must survive to run again

    def nudge(self) -> None:
        """A local write was answered: push it on the leading edge, and pace the rounds of a
        burst (server/sync/push.py)."""
        self.push.nudge()

    def backing_off(self) -> bool:
        return self.backoff_until is not None and self.now() < self.backoff_until

    # --- worker ---------------------------------------------------------------------------
    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        if self.scheduler is not None:
            return
        scheduler = BackgroundScheduler(daemon=True, timezone="UTC", logger=SCHEDULER_LOG)
        self.scheduler = scheduler
        self.push.start()
        scheduler.add_job(self.tick, "interval", id="sync-round", seconds=self.settings.sync_interval_seconds,
                          max_instances=1, coalesce=True, next_run_time=dt.datetime.now(dt.timezone.utc))
        scheduler.start()
        if self._live_hub is not None:
            self.live = LiveWait(self, self._live_hub)
            self.live.start()
        log.info("sync worker started: every %ss to %s", self.settings.sync_interval_seconds,
                 self.settings.hub_address)

    def shutdown(self) -> None:
        if self.live is not None:
            self.live.stop()
        self.push.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)  # let a running round finish before stores close
            self.scheduler = None
        if self.child is not None:
            self.child.close()
        if self.hub is not None:
            self.hub.close()
            self.hub = None

    # --- status ---------------------------------------------------------------------------
    def state(self) -> str:
        if self.running:
            return "running"
        if self.backing_off():
            return "backing_off"
        if self.live is not None and self.live.state == "waiting":
            return "live"  # connected, and the hub answers as soon as there is news
        return "idle"

    def next_run(self) -> float | None:
        candidates: list[float] = []
        if self.scheduler is not None:
            job = self.scheduler.get_job("sync-round")
            if job and job.next_run_time:
                candidates.append(job.next_run_time.timestamp())
        if self.backoff_until is not None:
            candidates = [max([self.backoff_until, *candidates])]
        return candidates[0] if candidates else None

    def status(self) -> dict[str, Any]:
        return sync_status(self.local, self)

    def live_status(self) -> dict[str, Any]:
        """What only a running service knows; `sync_status` adds what the store knows."""
        return {
            "hub": self.settings.hub_address,
            "state": self.state(),
            "worker": {"process": "child" if self.child else "server", "pid": self.child.pid if self.child else None},
            "lastAttempt": iso_from_seconds(self.last_attempt),
            "lastSuccess": iso_from_seconds(self.last_success),
            "lastError": self.last_error,
            "nextRun": iso_from_seconds(self.next_run()),
            "consecutiveFailures": self.failures,
            "totals": dict(self.totals),
            "lastRound": self.last_report.as_dict() if self.last_report else None,
            "recentRounds": list(self.history),
            "warnings": [CLOCK_AHEAD.format(n=self.clock_ahead)] if self.clock_ahead else [],
            "live": self._live_status(),
        }

    def _live_status(self) -> dict[str, Any]:
        if self.live is None:
            return dict(LIVE_OFF)
        live = self.live.status()
        return {"state": live["state"], "since": iso_from_seconds(live["since"]),
                "retryAt": iso_from_seconds(live["retryAt"]), "wakes": live["wakes"],
                "lastRemoteLagMs": self.last_remote_lag_ms}

    def health(self) -> dict[str, Any]:
        return {"enabled": True, "state": self.state(), "lastSuccess": iso_from_seconds(self.last_success),
                "lastError": self.last_error}

