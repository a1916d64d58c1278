"""The sync routes. The service behind them is built with the app (server/device/app.py)."""

from __future__ import annotations

from flask import Blueprint, current_app, request

from server.core.errors import StateConflict, UnsupportedMedia, ValidationError
from server.sync import ledger
from server.sync.service import SyncService
from server.sync.status import sync_status
from server.web.http import NO_BODY, declaring, envelope, error, json_body
from server.web.openapi import Operation

bp = Blueprint("sync", __name__, url_prefix="/api/v1")
OPERATIONS: list[Operation] = []
route = declaring(bp, OPERATIONS)
LIMIT = {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}


def _service() -> SyncService | None:
    return current_app.extensions.get("sync")


@route(Operation("get", "/sync/status", "syncStatus", "Sync state", {"200": ("SyncStatus", "Status", False)}))
def status():
    # hubFrom: where the hub in force comes from, "settings" (they win), "store" (a pairing) or null.
    return envelope({**sync_status(current_app.extensions["store"], _service()),
                     "hubFrom": current_app.config.get("HUB_FROM")})


@route(Operation("post", "/sync", "syncNow", "Run one sync round now", {"200": ("SyncReport", "The round", False)},
                 (409,), "SyncRequest"))
def sync_now():
    # A round is a write: like every other one it takes only JSON, so a cross-site form or a
    # text/plain post (sent without a CORS preflight) cannot start one. The body may be empty.
    if request.mimetype != "application/json":
        raise UnsupportedMedia("Send the request as application/json (an empty body or {}).")
    body = json_body(required=False)
    if body is not NO_BODY and body != {}:
        raise ValidationError({"body": "must be empty or {}"})
    service = _service()
    if service is None:
        raise StateConflict("No hub is configured: set HUB_URL and HUB_TOKEN (or MONGO_URI) to enable sync.",
                       code="sync_disabled")
    # Joins, never refuses: a round running now (a push on write, a live wake) is waited for, and
    # the answer is the report of a round that started after this request came.
    report = service.join(current_app.config["SYNC_WAIT_SECONDS"])
    if report.error:
        return error(503, report.error_code or "store_unavailable",
                     f"The sync round did not finish: {report.error}", extra={"report": report.as_dict()})
    return envelope(report.as_dict())


STATUS = {"name": "status", "in": "query", "required": False,
          "schema": {"type": "string", "enum": ["all", "open", "resolved"]}}
CONFLICT_ID = "/sync/conflicts/<conflict_id>"


@route(Operation("get", "/sync/conflicts", "syncConflicts", "Values that lost a merge, newest first",
                 {"200": ({"type": "array", "items": {"$ref": "#/components/schemas/Conflict"}}, "Conflicts", False)},
                 query=(LIMIT, STATUS)))
def conflicts():
    status = request.args.get("status", "all")
    if status not in ("all", "open", "resolved"):
        raise ValidationError({"status": "must be all, open or resolved"})
    return envelope(current_app.extensions["store"].list_conflicts(_limit(), status))


@route(Operation("post", f"{CONFLICT_ID}/restore", "restoreConflict",
                 "Write the losing value back as a new edit; answers the record",
                 {"200": ({"type": "object"}, "The record, with the value restored", False)}, (404, 409),
                 "SyncRequest"))
def restore_conflict(conflict_id: str):
    _no_body()
    return envelope(ledger.restore(current_app.extensions["store"], conflict_id))


@route(Operation("post", f"{CONFLICT_ID}/dismiss", "dismissConflict", "Mark a conflict resolved without a write",
                 {"200": ("Conflict", "The conflict, resolved", False)}, (404, 409), "SyncRequest"))
def dismiss_conflict(conflict_id: str):
    _no_body()
    return envelope(ledger.dismiss(current_app.extensions["store"], conflict_id))


def _no_body() -> None:
    """These writes take no body, but like every write they take only JSON (an empty body or
    {}): a cross-site form post, which needs no CORS preflight, must not resolve a conflict."""
    if request.mimetype != "application/json":
        raise UnsupportedMedia("Send the request as application/json (an empty body or {}).")
    body = json_body(required=False)
    if body is not NO_BODY and body != {}:
        raise ValidationError({"body": "must be empty or {}"})


@route(Operation("get", "/sync/quarantine", "syncQuarantine", "Changes refused at the door, newest first, with why",
                 {"200": ({"type": "array", "items": {"$ref": "#/components/schemas/Quarantined"}}, "Quarantine",
                          False)},
                 query=(LIMIT,)))
def quarantine():
    return envelope(current_app.extensions["store"].list_quarantine(_limit()))


def _limit() -> int:
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ValidationError({"limit": "must be an integer from 1 to 1000"})
    return int(raw)
