"""Live sync on a device: a thread that keeps one request waiting at the hub and runs a round
as soon as the hub says another device's change is there, then waits again.

- Through a hub server that has the waiting call (`wait` in its epoch features) the request is
  held by the hub (POST /hub/v1/wait) and costs the device one idle connection.
- A hub server without it (an older one): nothing waits; the timer syncs as before.
- A hub store opened directly (MongoDB, or a SQLite file in benches and tests): a short indexed
  poll for changes past the cursor (hub.StoreHub.wait).
Hub trouble ends the wait, which is tried again after a jittered, growing delay (at most
RETRY_CAP_SECONDS); when the hub answers again while rounds are backing off, a round runs at once.
The periodic round stays the safety net, so nothing here can lose or hold back a change: at
worst sync is as slow as the timer."""

from __future__ import annotations

import logging
import random
import threading
from typing import Any, Callable

from server.core.changes import Cursor
from server.core.errors import AppError, SyncBusy
from server.sync.bookmark import load_bookmark
from server.sync.hub import WaitingHub

log = logging.getLogger("server.sync")
WAIT_SECONDS = 25.0  # well under the idle limits of proxies and NATs
RETRY_CAP_SECONDS = 60.0


class LiveWait:
    def __init__(self, service: Any, open_hub: Callable[[], WaitingHub], *, seconds: float = WAIT_SECONDS,
                 rng: Callable[[], float] = random.random):
        self.service, self._open_hub, self.seconds, self._rng = service, open_hub, seconds, rng
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sync-live", daemon=True)
        self.hub: WaitingHub | None = None
        self.state = "starting"  # waiting, timer (the hub cannot wait), retrying, stopped
        self.since: float | None = None  # waiting since (the connection that holds the wait)
        self.retry_at: float | None = None
        self.wakes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        hub = self.hub
        if hub is not None:
            hub.interrupt()  # a wait in progress ends now
        self._thread.join(timeout=5)
        self._drop_hub()
        self.state = "stopped"

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            service = self.service
            try:
                hub, fresh = self.hub, self.hub is None
                if hub is None:
                    self.hub = hub = self._open_hub()
                    if self._stop.is_set():  # stop() ran while it opened and found no hub to interrupt
                        hub.interrupt()
                local = service.local
                cursor = load_bookmark(local).cursor
                if self.state != "waiting":
                    self.since = service.now()
                self.state, self.retry_at = "waiting", None
                if fresh and service.backoff_until is not None:
                    # The hub answers again while rounds back off (it was down, or restarted):
                    # sync now rather than at the end of the backoff.
                    service.backoff_until = None
                    self._round(cursor)
                    continue
                news = self._wait(hub, cursor, load_bookmark(local).epoch)
                failures = 0
                if news is None:  # an older hub server: the timer it is
                    self.state = "timer"
                    log.info("the hub has no waiting call: syncing on the timer only")
                    return
                if news and not self._stop.is_set():
                    self.wakes += 1
                    if not (isinstance(news, dict) and service.apply_woken(news)):
                        self._round(cursor)  # no page, another epoch: the whole round
            except (AppError, OSError) as exc:
                if self._stop.is_set():
                    return
                failures += 1
                self._drop_hub()
                delay = min(RETRY_CAP_SECONDS, 2 ** failures) * (0.5 + self._rng() / 2)
                self.state, self.retry_at = "retrying", service.now() + delay
                log.info("the live wait ended (%s); waiting again in %.1fs", getattr(exc, "message", exc), delay)
                self._stop.wait(delay)
            except Exception:
                log.exception("the live wait crashed; the timer goes on")
                self._drop_hub()
                self.state = "retrying"
                self._stop.wait(RETRY_CAP_SECONDS)

    def _wait(self, hub: WaitingHub, cursor: Cursor, epoch: str | None) -> Any:
        """The hub's wait: with the changes where the hub answers them (HubClient.wait_changes)."""
        local = self.service.local
        with_changes = getattr(hub, "wait_changes", None)
        if with_changes is None:
            return hub.wait(cursor, exclude_origin=local.origin, seconds=self.seconds)
        return with_changes(cursor, exclude_origin=local.origin, seconds=self.seconds,
                            limit=self.service.settings.sync_batch_size, epoch=epoch)

    def _round(self, cursor: Cursor) -> None:
        try:
            self.service.run_once(wait_seconds=60)
        except SyncBusy:
            pass  # a round long enough to outlast this is a round that pulls it
        local = self.service.local
        if load_bookmark(local).cursor == cursor:
            # The round could not move past the news (a hub refusing, a store failing): do not
            # ask again at once, or the wait turns into a busy loop.
            self._stop.wait(min(self.service.settings.sync_interval_seconds, 5.0))

    def _drop_hub(self) -> None:
        hub, self.hub = self.hub, None
        if hub is not None:
            try:
                hub.close()
            except Exception:
                pass

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "since": self.since, "retryAt": self.retry_at, "wakes": self.wakes}

