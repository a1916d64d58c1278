"""Sync rounds in a child process of the server.

A round's CPU work (reading the log, merging on the hub side, applying a pull) is Python, and in
the API's own process it competed with request threads for the interpreter lock: writes got
several times slower while a large push ran. In a child process the round runs on the other core.
The child opens the same SQLite file (WAL: readers never block, writers queue on the file lock)
and its own hub client, keeps both between rounds, and returns each round's RoundReport.

The child is started with "spawn" (forking a process that has server threads is unsafe), ignores
Ctrl-C (the parent decides when to stop) and exits on its own when its parent is gone, even after
a SIGKILL: an orphan must not keep syncing a file that a restarted server also syncs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from server.core.config import Settings
from server.core.errors import AppError
from server.sync.engine import run_round
from server.sync.hub import HubSpec, open_hub
from server.sync.report import RoundReport

log = logging.getLogger("server.sync")
PARENT_CHECK_SECONDS = 0.5


class ChildRounds:
    """Runs `run_round` in one long-lived child process; `run` blocks until the round ends.
    `hub` says which hub the child opens (with server/sync/hub.py's open_hub, as the server would)."""

    def __init__(self, settings: Settings, user_id: str, origin: str, hub: HubSpec = HubSpec()):
        self._args = (settings, user_id, origin, hub, os.getpid())
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.pid: int | None = None

    def run(self, batch_size: int) -> RoundReport:
        with self._lock:
            if self._closed:  # never start a new child for a round that comes after close()
                return RoundReport(error="The server is shutting down.", error_code="shutting_down")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_child_start, initargs=self._args)
            pool = self._pool
        try:
            future = pool.submit(_child_round, batch_size)
        except BrokenProcessPool:  # (a RuntimeError too: caught first)
            return self._lost(pool)
        except RuntimeError:  # the interpreter is exiting: a scheduled round came too late
            return RoundReport(error="The server is shutting down.", error_code="shutting_down")
        try:
            report, self.pid = future.result()
        except BrokenProcessPool:
            return self._lost(pool)
        return report

    def _lost(self, pool: ProcessPoolExecutor) -> RoundReport:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False)
        self.pid = None
        log.warning("the sync process stopped in the middle of a round; a new one starts next round")
        return RoundReport(error="The sync process stopped unexpectedly; the next round starts a new one.",
                           error_code="sync_process_lost")

    def close(self) -> None:
        with self._lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # a running round finishes first


# --- in the child ---------------------------------------------------------------------------
_child: dict[str, Any] = {}


def _child_start(settings: Settings, user_id: str, origin: str, hub: HubSpec, parent: int) -> None:
    from server.connectors.factory import get_db_connector

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s [sync] %(message)s")
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()
    # Everything this process writes to the store can be had again from the hub: a pulled batch
    # (lost together with the cursor that passed it) is pulled again, a lost push cursor makes
    # the hub get a batch it already has. So its commits need not wait for an fsync, and the
    # API's writes need not queue behind them: only the user's own writes must survive a power
    # cut (SQLITE_SYNCHRONOUS, in the server's process).
    # The store's own origin, not a pinned one: a round may have moved the store to a new origin
    # (a restored store, see engine._check_own_log), and a new child must go on from there.
    local = get_db_connector("sql", settings, user_id=user_id, origin=None, synchronous="NORMAL")
    local.connect()
    _child.update(settings=settings, local=local, hub_spec=hub, hub=None)


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(0)  # mid-round is fine: every step of a round is crash-safe


def _child_round(batch_size: int) -> tuple[RoundReport, int]:
    try:
        if _child["hub"] is None:
            _child["hub"] = open_hub(_child["settings"], _child["local"].user_id, _child["hub_spec"])
        return run_round(_child["local"], _child["hub"], batch_size), os.getpid()
    except AppError as exc:  # the hub could not even be reached to connect
        return RoundReport(error=exc.message, error_code=exc.code), os.getpid()
