"""Which sync service a store gets, and whether its background worker starts: at most one
worker per store per process, never in the Flask reloader's watcher or a CLI command."""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
from typing import Callable

from server.connectors.base import DatabaseConnector
from server.core.config import Settings
from server.sync.child import ChildRounds
from server.sync.hub import Hub, open_hub
from server.sync.service import SyncService

_workers: dict[str, SyncService] = {}  # device id -> the service whose worker runs
_workers_lock = threading.Lock()


def build_sync(settings: Settings, local: DatabaseConnector, *,
               hub: Callable[[], Hub] | None = None, start: bool = True) -> SyncService | None:
    """The store's sync service, or None when no hub is set (or on DB_CONNECTOR=mongo, where
    the API writes to the hub itself). `hub` opens a connected hub that lives in this process
    (a test's); rounds then run in this process too, else in a child (SYNC_PROCESS)."""
    if not settings.hub_enabled or settings.db_connector != "sql":
        return None
    in_process = hub is not None or not settings.sync_process
    with _workers_lock:
        service = _workers.get(local.origin)
        if service is None or service.local is not local:
            child = None if in_process else ChildRounds(settings, local.user_id, local.origin)
            opener = functools.partial(open_hub, settings, local.user_id)
            # The live wait holds a hub connection of its own, so only with a hub it can open
            # again (not a test's single in-memory one).
            service = SyncService(settings, local, hub or opener, child=child,
                                  live_hub=opener if hub is None and settings.sync_live else None)
    if start:
        start_worker(service)
    return service


def start_worker(service: SyncService) -> None:
    """Start the service's background worker, unless this process must not run one or the
    store's worker already runs."""
    with _workers_lock:
        if should_start_worker() and service.local.origin not in _workers:
            service.start()
            _workers[service.local.origin] = service
            atexit.register(service.shutdown)


def stop_worker(origin: str) -> None:
    """Stop and forget the worker of that store (tests that started one)."""
    with _workers_lock:
        service = _workers.pop(origin, None)
    if service is not None:
        service.shutdown()


def should_start_worker() -> bool:
    """False in the Flask reloader's watcher process, which never serves a request."""
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
        return True
    if os.environ.get("WERKZEUG_RUN_MAIN") == "true":
        return True  # the reloader's serving child
    argv = sys.argv[1:]
    if "run" not in argv:
        return False  # `flask sync ...`, `flask seed ...`: no background worker
    debug = os.environ.get("FLASK_DEBUG", "").lower() in ("1", "true") or "--debug" in argv
    reload = "--reload" in argv or (debug and "--no-reload" not in argv)
    return not reload
