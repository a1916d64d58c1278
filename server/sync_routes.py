"""The sync routes and the wiring of the background worker into the app."""

from __future__ import annotations

import atexit
import os
import sys
import threading

from flask import Blueprint, Flask, current_app, request

from server.connectors.factory import get_db_connector
from server.errors import Conflict, ValidationError
from server.http import declaring, envelope, error
from server.openapi import Operation
from server.sync.child import ChildRounds
from server.sync.engine import stored_cursor
from server.sync.service import SyncService

bp = Blueprint("sync", __name__, url_prefix="/api/v1")
OPERATIONS: list[Operation] = []
route = declaring(bp, OPERATIONS)
_workers: dict[str, SyncService] = {}  # one worker per local store per process
_workers_lock = threading.Lock()


def install(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    local = app.extensions["store"]
    # On DB_CONNECTOR=mongo the API writes to the hub itself: there is nothing to sync.
    if settings.hub_enabled and settings.db_connector == "sql":
        factory = app.config.get("HUB_FACTORY") or (
            lambda: get_db_connector("mongo", settings, user_id=local.user_id, device_id=None))
        # Rounds run in a child process unless a test handed in a hub object that lives here.
        isolated = settings.sync_process and "HUB_FACTORY" not in app.config
        with _workers_lock:
            service = _workers.get(local.device_id)
            if service is None or service.local is not local:
                child = ChildRounds(settings, local.user_id, local.device_id) if isolated else None
                service = SyncService(settings, local, factory, child=child)
            if app.config.get("START_SYNC") and should_start_worker() and local.device_id not in _workers:
                service.start()
                _workers[local.device_id] = service
                atexit.register(service.shutdown)
        app.extensions["sync"] = service
    app.register_blueprint(bp)


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


def _service() -> SyncService | None:
    return current_app.extensions.get("sync")


@route(Operation("get", "/sync/status", "syncStatus", "Sync state", {"200": ("SyncStatus", "Status", False)}))
def status():
    service = _service()
    if service:
        return envelope(service.status())
    local = current_app.extensions["store"]
    epoch, cursor = stored_cursor(local)
    count, _ = local.pending_since(cursor)
    return envelope({
        "enabled": False, "state": "disabled", "deviceId": local.device_id, "userId": local.user_id,
        "hub": None, "lastAttempt": None, "lastSuccess": None, "lastError": None, "nextRun": None,
        "pending": {"count": count}, "totals": {"pushed": 0, "pulled": 0},
        "openConflicts": local.count_conflicts(), "hubEpoch": epoch,
    })


@route(Operation("post", "/sync", "syncNow", "Run one sync round now", {"200": ("SyncReport", "The round", False)},
                 (409,)))
def sync_now():
    service = _service()
    if service is None:
        raise Conflict("No hub is configured: set MONGO_URI to enable sync.", code="sync_disabled")
    report = service.run_once(wait_seconds=current_app.config.get("SYNC_WAIT_SECONDS", 10))
    if report.error:
        return error(503, report.error_code or "store_unavailable",
                     f"The sync round did not finish: {report.error}", extra={"report": report.as_dict()})
    return envelope(report.as_dict())


@route(Operation("get", "/sync/conflicts", "syncConflicts", "Values that lost a merge, newest first",
                 {"200": ({"type": "array", "items": {"$ref": "#/components/schemas/Conflict"}}, "Conflicts", False)},
                 query=({"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},)))
def conflicts():
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ValidationError({"limit": "must be an integer from 1 to 1000"})
    return envelope(current_app.extensions["store"].list_conflicts(int(raw)))
