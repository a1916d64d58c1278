"""Pairing this device with a hub, no restart: `POST /api/v1/sync/hub {"invitation": "..."}`
(the sync page's "Connect to a hub" form posts the same) and `DELETE /api/v1/sync/hub`.

The invitation is checked live (server/sync/hub_settings.py) before anything is kept. Then, in
one transaction, the store keeps the hub's address and token and, when it has never synced, its
records, profile and focus course move to the invitation's user: nothing made before pairing
vanishes. The sync service is then built again for the hub, and started, in the running app.
Settings (HUB_URL and HUB_TOKEN, or MONGO_URI) win when set: pairing is refused then, saying so."""

from __future__ import annotations

import threading

from flask import Blueprint, Flask, current_app, request

from server.connectors.factory import hub_link_for
from server.connectors.hub_link import HubLink, StoreHoldsOthers
from server.core.config import Settings
from server.core.errors import NotFound, StateConflict, UnsupportedMedia, ValidationError
from server.core.times import iso_now
from server.sync import hub_settings
from server.sync.hub_settings import PairingFailed
from server.sync.wiring import build_sync, start_worker, stop_worker
from server.web.http import NO_BODY, declaring, envelope, json_object
from server.web.openapi import Operation

bp = Blueprint("pairing", __name__, url_prefix="/api/v1")
OPERATIONS: list[Operation] = []
route = declaring(bp, OPERATIONS)
_lock = threading.Lock()  # one pairing at a time: each stops and starts the sync service
_pairing = threading.Lock()  # held from a pairing's exchange with the hub to its answer
CONNECTED = {"type": "object", "required": ["hub", "userId", "hubDeviceId", "hubFrom"], "properties": {
    "hub": {"type": "string", "description": "the hub's address, now kept in this device's store"},
    "userId": {"type": "string"}, "hubDeviceId": {"type": "string", "description": "this device at the hub"},
    "hubFrom": {"type": "string", "enum": ["store"]},
    "moved": {"type": "object", "additionalProperties": {"type": "integer"},
              "description": "rows moved to the invitation's user, per table (a store that had never synced)"}}}
DISCONNECTED = {"type": "object", "required": ["hub", "hubDeviceId"], "properties": {
    "hub": {"type": "string"}, "hubDeviceId": {"type": "string"}}}


def settings_in_force(settings: Settings, store) -> tuple[Settings, str | None]:
    """For the app factory: the settings with the hub in force (hub_settings.in_force)."""
    return hub_settings.in_force(settings, store)


def install(app: Flask, given: Settings) -> None:
    """The routes; the settings as given (before a kept hub is put in them), from which each
    pairing works out the hub in force again; whether a pairing starts the sync worker (not in
    a test's app)."""
    app.config.update(GIVEN_SETTINGS=given, START_SYNC_ON_PAIR=not app.testing)
    app.register_blueprint(bp)


def hub_from() -> str | None:
    return current_app.config.get("HUB_FROM")


@route(Operation("post", "/sync/hub", "connectHub",
                 "Pair this device with a hub by an invitation (`hub invite`): checked live at the hub, then kept "
                 "in this device's store, and sync started at once",
                 {"200": (CONNECTED, "The hub this device now syncs through", False)}, (409, 502), "HubInvitation"))
def connect():
    body = _json()
    extra = sorted(set(body) - {"invitation"})
    if extra or not isinstance(body.get("invitation"), str) or len(body["invitation"]) > 2000:
        fields = {k: "unknown field" for k in extra[:20]}
        if not isinstance(body.get("invitation"), str) or len(body["invitation"]) > 2000:
            fields["invitation"] = "required: the invitation `hub invite` printed (at most 2000 characters)"
        raise ValidationError(fields)
    invitation = hub_settings.parse_invitation(body["invitation"])
    # One pairing at a time, from the exchange on: each exchange of a code replaces the token the
    # one before got, so a second one at once (a double click) would leave a dead token kept.
    if not _pairing.acquire(blocking=False):
        raise StateConflict("A pairing is under way on this device: wait for its answer, then look at the sync "
                            "page before pasting the invitation again.", code="pairing_in_progress")
    try:
        return _pair(invitation)
    finally:
        _pairing.release()


def _pair(invitation: hub_settings.Invitation):
    settings: Settings = current_app.config["GIVEN_SETTINGS"]
    store, link = current_app.extensions["store"], _link()
    paired = hub_settings.exchange(invitation, settings.hub_timeout_ms)
    user = paired["userId"]
    _check_user(settings, link, user)
    hub_settings.check_token(invitation, paired, settings.hub_timeout_ms)
    kept = hub_settings.kept_hub(invitation, paired, iso_now())
    with _lock:
        _stop_sync(current_app)
        try:
            moved = store.guarded(link.keep, kept, store.user_id if store.user_id != user else None)
        except StoreHoldsOthers:
            raise StateConflict(f"This store holds data of user {store.user_id!r} and of {user!r} already, so the "
                                f"one cannot take the other's: start a new store (another SQLITE_PATH) for {user!r}.",
                                code="store_holds_another_user") from None
        finally:
            _start_sync(current_app)
    return envelope({"hub": kept.url, "userId": user, "hubDeviceId": kept.device_id, "hubFrom": "store",
                     "moved": moved})


@route(Operation("delete", "/sync/hub", "disconnectHub",
                 "Forget the hub this device was paired with and stop syncing (its token stays valid at the hub "
                 "until `hub revoke`)", {"200": (DISCONNECTED, "The hub forgotten", False)}, (404, 409),
                 "SyncRequest"))
def disconnect():
    body = _json(required=False)
    if body:
        raise ValidationError({"body": "must be empty or {}"})
    if hub_from() == "settings":
        raise StateConflict("This device's hub is set by HUB_URL (or MONGO_URI) in its settings, which win: remove "
                            "them from .env or the environment and restart to disconnect.", code="hub_from_settings")
    link, store = _link(), current_app.extensions["store"]
    with _lock:
        kept = store.guarded(link.kept)
        if kept is None:
            raise NotFound("This device is not paired with a hub: there is nothing to disconnect.", code="not_paired")
        _stop_sync(current_app)
        store.guarded(link.forget)
        _start_sync(current_app)  # (none: no hub is in force now)
    return envelope({"hub": kept.url, "hubDeviceId": kept.device_id})


def _json(required: bool = True) -> dict:
    # A write: JSON only, so that a cross-site form (sent without a CORS preflight) cannot pair.
    if request.mimetype != "application/json":
        raise UnsupportedMedia("Send the request as application/json.")
    body = json_object(required)
    return {} if body is NO_BODY else body


def _link() -> HubLink:
    if hub_from() == "settings":
        raise StateConflict("This device's hub is set by HUB_URL and HUB_TOKEN (or MONGO_URI) in its settings, "
                            "which win over an invitation: remove them from .env or the environment and restart "
                            "to pair by invitation instead.", code="hub_from_settings")
    link = hub_link_for(current_app.extensions["store"])
    if link is None:
        raise StateConflict("This server runs on DB_CONNECTOR=mongo and writes to the hub itself: there is no hub "
                            "to pair it with.", code="pairing_unsupported")
    return link


def _check_user(settings: Settings, link: HubLink, user: str) -> None:
    """Refuse an invitation for a user this store cannot become (nothing kept, the code still good)."""
    if settings.user_id and settings.user_id != user:
        raise PairingFailed(409, "user_mismatch",
                            f"The invitation is for user {user!r}, but USER_ID={settings.user_id} is set for this "
                            f"server: ask for an invitation for {settings.user_id!r}, or remove USER_ID and restart.")
    others = sorted(current_app.extensions["store"].guarded(link.synced_users) - {user})
    if others:
        raise PairingFailed(409, "store_holds_another_user",
                            f"This store has synced as user {others[0]!r} and the invitation is for {user!r}: ask "
                            f"for an invitation for {others[0]!r}, or start a new store (another SQLITE_PATH) for "
                            f"{user!r}.")


def _stop_sync(app: Flask) -> None:
    service = app.extensions.pop("sync", None)
    if service is None:
        return
    stop_worker(service.local.origin)
    service.shutdown()  # (a second shutdown is harmless: it finds nothing left to stop)


def _start_sync(app: Flask) -> None:
    """The sync service for the hub in force now, started unless this is a test's app."""
    settings, source = hub_settings.in_force(app.config["GIVEN_SETTINGS"], app.extensions["store"])
    app.config.update(SETTINGS=settings, HUB_FROM=source)
    service = build_sync(settings, app.extensions["store"], start=False)
    if service is None:
        return
    app.extensions["sync"] = service
    metrics = app.extensions.get("metrics")
    if metrics is not None:
        metrics.service = service
    if app.config.get("START_SYNC_ON_PAIR"):
        start_worker(service)
