"""The sync routes. The service behind them is built by the app factory (server/api.py)."""

from __future__ import annotations

from flask import Blueprint, current_app, request

from server.errors import Conflict, ValidationError
from server.http import declaring, envelope, error
from server.openapi import Operation
from server.sync.service import SyncService, sync_status

bp = Blueprint("sync", __name__, url_prefix="/api/v1")
OPERATIONS: list[Operation] = []
route = declaring(bp, OPERATIONS)


def _service() -> SyncService | None:
    return current_app.extensions.get("sync")


@route(Operation("get", "/sync/status", "syncStatus", "Sync state", {"200": ("SyncStatus", "Status", False)}))
def status():
    return envelope(sync_status(current_app.extensions["store"], _service()))


@route(Operation("post", "/sync", "syncNow", "Run one sync round now", {"200": ("SyncReport", "The round", False)},
                 (409,)))
def sync_now():
    service = _service()
    if service is None:
        raise Conflict("No hub is configured: set MONGO_URI to enable sync.", code="sync_disabled")
    report = service.run_once(wait_seconds=current_app.config["SYNC_WAIT_SECONDS"])
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
