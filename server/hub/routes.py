"""The hub protocol over HTTP, served by `python -m server --hub` in front of the hub's store
(MongoDB, or an embedded SQLite file). The same three calls the sync engine makes of a hub
connector: the epoch, pull the changes after a cursor, push a batch.

Every request brings a device's token (`flask hub add-device`), and the token alone decides the
user: the body can name no user, and whatever it asks for is read and written in that user's
part of the store only. A device may push changes only under origins it owns (the first device
to push an origin owns it). Hub processes keep no state between requests, so any number of them
can serve one store."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, g, request

from server.connectors.registry import RELAYED, Device, DeviceRegistry
from server.core.changes import is_heal_origin
from server.core.errors import Forbidden, StoreUnavailable, TooManyRequests, Unauthorized, ValidationError
from server.core.records import is_id
from server.core.sequences import behind
from server.hub.bodies import MAX_BATCH, cursor_of, json_object, only_keys, origin_or_none
from server.hub.document import build_hub_document
from server.hub.fair import in_turns
from server.hub.limits import MAX_IN_FLIGHT
from server.hub.pairing import OPERATIONS as PAIRING_OPERATIONS
from server.hub.pairing import note_first_use
from server.web.http import bearer_token, cached_document, declaring, envelope, health_answer
from server.web.openapi import Operation

log = logging.getLogger(__name__)
bp = Blueprint("hub", __name__, url_prefix="/hub/v1")
OPERATIONS: list[Operation] = []
route = declaring(bp, OPERATIONS)
# What this hub server can do beyond the first protocol, named in the epoch answer so that a
# device talks to an older hub server as before: "shortfall" (what the hub lacks of a cursor),
# "relay" (a push of other origins' changes the hub lost), "resume" (a push answer that says
# where an origin must be sent again from instead of storing a gap).
# "wait" (POST /wait, held open until there is news: only where the hub's front serves it).
# "snapshot" (POST /snapshot: the user's records, for a cursor below what the hub compacted,
# which the shortfall answer names as "compacted"; the answer's "floors" say what a device may
# drop of its own log). "heal" (POST /heal: a device's records, for a hub that lost history no
# device's log still holds).
# "healLog" (a heal's logAs: what it changed is logged under the healer's heal origin; a relay
# answers `owned` for origins another device gives back itself).
# "pair" (POST /pair: an invitation's code traded for a token, hub/pairing.py). "round" (POST
# /round: a round's opening in one call, server/hub/opening.py). "waitChanges" (a wait with a
# `limit` is answered, when woken, with the changes past its cursor).
FEATURES = ("shortfall", "relay", "resume", "wait", "snapshot", "heal", "healLog", "pair", "round", "waitChanges")
WAIT_SECONDS, MAX_WAIT_SECONDS = 25, 60


def health():
    """Liveness, as on a device (at /api/v1/health), saying it is a hub."""
    return health_answer("The hub's", role="hub")


def _registry() -> DeviceRegistry:
    return current_app.extensions["registry"]


@bp.before_request
def authenticate() -> None:
    if request.endpoint == "hub.hubOpenapi":
        return
    token = bearer_token(request.headers.get("Authorization"))
    if not token:
        raise Unauthorized("Send this device's hub token: Authorization: Bearer <token>.")
    device = _guarded(_registry().find, token)
    if device is None:
        raise Unauthorized("This token is not known to the hub.", code="unknown_token")
    if device.revoked_at:
        raise Unauthorized(f"This device's token was revoked at {device.revoked_at}.", code="token_revoked",
                           detail={"revokedAt": device.revoked_at})
    if not current_app.extensions["in_flight"].enter(device.device_id):
        raise TooManyRequests(f"This device has {MAX_IN_FLIGHT} requests at the hub already; wait for them.",
                              code="too_many_requests", detail={"limit": MAX_IN_FLIGHT})
    g.in_flight = device.device_id
    g.device = device
    if request.endpoint != "hub.hubEpoch":  # (a pairing device checks its new token with the epoch)
        note_first_use(device)  # an invitation's code is spent once its token syncs
    g.hub_store = current_app.extensions["hub_stores"].for_user(device.user_id)


@bp.teardown_request
def _leave(exc) -> None:
    device_id = g.pop("in_flight", None)
    if device_id is not None:
        current_app.extensions["in_flight"].leave(device_id)


def _metrics():
    return current_app.extensions["metrics"]


def _guarded(fn, *args):
    """A registry call, with the store's driver errors answered as 503 like the store's own."""
    return current_app.extensions["store"].guarded(fn, *args)


@route(Operation("get", "/epoch", "hubEpoch", "The hub's epoch (changes when the hub is wiped and re-seeded)",
                 {"200": ("HubEpoch", "The epoch", False)}, (401,)))
def epoch():
    return envelope(epoch_answer())


def epoch_answer() -> dict:
    # Whose token this is, so that a device set up for another user can refuse it (HubClient).
    return {"epoch": g.hub_store.hub_epoch(), "userId": g.device.user_id, "deviceId": g.device.device_id,
            "features": list(FEATURES)}


@route(Operation("post", "/shortfall", "hubShortfall",
                 "Of the origins in a cursor, those the hub holds less of than the cursor says, with what it holds",
                 {"200": ("HubShortfall", "origin -> the hub's newest seq; empty when it holds everything", False)},
                 (401,), "HubShortfallRequest"))
def shortfall():
    body = json_object()
    only_keys(body, {"cursor"})
    problems: dict[str, str] = {}
    cursor = cursor_of(body, problems)
    if problems:
        raise ValidationError(problems)
    return envelope(g.hub_store.shortfall(cursor))


@route(Operation("post", "/pull", "hubPull", "The user's changes after a cursor, in (origin, seq) order",
                 {"200": ("HubChanges", "Changes", False)}, (401,), "HubPullRequest"))
def pull():
    body = json_object()
    only_keys(body, {"cursor", "limit", "excludeOrigin", "onlyOrigin"})
    problems: dict[str, str] = {}
    cursor = cursor_of(body, problems)
    limit = body.get("limit", 500)
    if type(limit) is not int or not 1 <= limit <= MAX_BATCH:
        problems["limit"] = f"must be an integer from 1 to {MAX_BATCH}"
    exclude, only = origin_or_none(body, "excludeOrigin", problems), origin_or_none(body, "onlyOrigin", problems)
    if problems:
        raise ValidationError(problems)
    return envelope({"changes": pull_page(cursor, limit, exclude, only)})


def pull_page(cursor: dict[str, int], limit: int, exclude: str | None, only: str | None) -> list:
    """A pull's page (POST /pull, and the first of a round's, POST /round)."""
    return _pulled(cursor, g.hub_store.changes_since(cursor, limit, exclude_origin=exclude, only_origin=only), only)


def _pulled(cursor: dict[str, int], changes: list, only: str | None) -> list:  # counted, the position noted
    _metrics().took("pulled", len(changes))
    if only is None:  # a whole cursor: the device holds that much of each origin
        _note_position(g.device, cursor)
    return changes


@route(Operation("post", "/snapshot", "hubSnapshot",
                 "The user's records page by page, tombstones too, with the cursor the log goes on from: for a "
                 "device whose cursor is below what the hub compacted", {"200": ("HubSnapshot", "A page", False)},
                 (401,), "HubSnapshotRequest"))
def snapshot():
    body = json_object()
    only_keys(body, {"after", "limit"})
    problems: dict[str, str] = {}
    after, limit = body.get("after"), body.get("limit", 500)
    if after is not None and not (isinstance(after, list) and len(after) == 2 and all(
            isinstance(part, str) and len(part) <= 300 for part in after)):
        problems["after"] = "must be null or the [kind, key] a page named as next"
    if type(limit) is not int or not 1 <= limit <= MAX_BATCH:
        problems["limit"] = f"must be an integer from 1 to {MAX_BATCH}"
    if problems:
        raise ValidationError(problems)
    return envelope(g.hub_store.snapshot_page(tuple(after) if after else None, limit))


@route(Operation("post", "/heal", "hubHeal",
                 "Merge a page of this device's records, for a hub that lost history no device's log still holds "
                 "(restored from an old backup, recreated); with the last page, hold this device's origins up to "
                 "where its records hold them", {"200": ("HubHealResult", "What the hub did with the page", False)},
                 (401, 403, 429), "HubHealRequest"))
def heal():
    body = json_object()
    only_keys(body, {"records", "hold", "logAs"})
    records, log_as = body.get("records"), body.get("logAs")
    problems: dict[str, str] = {}
    if not isinstance(records, list) or len(records) > MAX_BATCH:
        problems["records"] = f"must be a list of at most {MAX_BATCH} records"
    hold = _hold_of(body, problems)
    if log_as is not None and not is_heal_origin(log_as):
        problems["logAs"] = "must be null or a heal origin: h and 12 hexadecimal digits"
    if problems:
        raise ValidationError(problems)
    assert isinstance(records, list)  # checked above; said for the type checker
    device: Device = g.device
    limits = _refusals_allowed(device)
    if hold or log_as:
        # Only the device's own origins (or new ones, which it claims): a hold drops every change
        # at or below it as held, so one over another device's origin would lose that device's
        # edits; and what a heal changed is logged under the healer's own heal origin.
        _check_origins(device, sorted({*(hold or {}), *([log_as] if log_as else [])}))
    # A write stamped by another device that can still give it back itself is not taken: a heal
    # writes as no other device (docs/how-sync-works.md, what a device of the same user can do).
    result = g.hub_store.heal(records, hold=hold, log_as=log_as, not_from=_owned_by_others(device))
    limits.count(device.device_id, len(result["quarantined"]))
    _metrics().took("healed", result["applied"])
    _metrics().refused_changes(result["quarantined"])
    log.warning("device %s gave back %d records (%d changed) and held %s", device.device_id, len(records),
                result["applied"], result["held"] or "nothing")
    if result["held"] or result["logged"]:  # the other devices lack what it changed: they wake and take it
        current_app.extensions["waiters"].notify(device.user_id, but=device.device_id)
    return envelope(result)


def _hold_of(body: dict, problems: dict) -> dict[str, int] | None:
    """A heal's hold as origin -> seq (None: none), as cursor_of reads a cursor."""
    value = body.get("hold")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 8 or not all(
            isinstance(h, dict) and h.keys() == {"origin", "seq"} and is_id(h["origin"]) and type(h["seq"]) is int
            and 1 <= h["seq"] < 2**53 for h in value):
        problems["hold"] = "must be null or a list of at most 8 {origin, seq}"
        return None
    hold: dict[str, int] = {}
    for h in value:  # an origin named twice is held at the higher seq
        hold[h["origin"]] = max(h["seq"], hold.get(h["origin"], 0))
    return hold


def _note_position(device: Device, cursor: dict[str, int]) -> None:
    """Remember where the device is, for the history every device has pulled. A note that fails
    is left for the next pull: until then the hub holds more history, never less."""
    try:
        _guarded(_registry().note_pulled, device, cursor, time.time())
    except StoreUnavailable as exc:
        log.warning("position of %s not noted: %s", device.device_id, exc)


@route(Operation("post", "/push", "hubPush", "Store a batch of this device's changes; each refused one says why",
                 {"200": ("HubPushResult", "What the hub did with the batch", False)}, (401, 403), "HubPushRequest"))
def push():
    body = json_object()
    only_keys(body, {"changes", "relay"})
    changes, relay = body.get("changes"), body.get("relay", False)
    if not isinstance(changes, list) or len(changes) > MAX_BATCH:
        raise ValidationError({"changes": f"must be a list of at most {MAX_BATCH} changes"})
    if type(relay) is not bool:
        raise ValidationError({"relay": "must be true or false"})
    device: Device = g.device
    limits = _refusals_allowed(device)
    # Origins that are not ids cannot be claimed; the door quarantines their changes anyway.
    origins = sorted({ch["origin"] for ch in changes if isinstance(ch, dict) and is_id(ch.get("origin"))})
    if relay:
        # Changes of the user's other origins that this hub lost (restored from a backup,
        # recreated) and a device still holds. They are the token's user's (the store is that
        # user's part), and are taken only past the hub's top of each origin, gapless, through
        # the same door: a relay can only give back, never overwrite. An origin the hub does not
        # know is held for the relaying device (within its quota) until its own device pushes it.
        # An origin another device owns and can still give back itself is not taken at all: a
        # relay past its top would write as that device (which then sees a change it never wrote).
        owned = _owned_by_others(device) & set(origins)
        _hold_relayed(device, [o for o in origins if o not in owned])
        result = in_turns(lambda turn: g.hub_store.relay_changes(turn, owned=owned), changes)
    else:
        _check_origins(device, origins)
        result = in_turns(g.hub_store.apply_changes, changes)
    limits.count(device.device_id, len(result["quarantined"]))
    _metrics().took("relayed" if relay else "pushed", result["applied"])
    _metrics().refused_changes(result["quarantined"])
    if result["applied"]:
        current_app.extensions["waiters"].notify(device.user_id, but=device.device_id)
    return envelope(result)


@route(Operation("post", "/wait", "hubWait",
                 "Held open until the user's log holds a change of another origin past the cursor, or the "
                 "hub holds records the cursor lacks (a heal, a purge) (then `changed: true`: run a round), or "
                 "`seconds` pass with neither (`changed: false`)",
                 {"200": ("HubWait", "Whether there is something to pull", False)}, (401,), "HubWaitRequest"))
def wait():
    body = json_object()
    only_keys(body, {"cursor", "excludeOrigin", "seconds", "limit", "epoch"})
    problems: dict[str, str] = {}
    cursor = cursor_of(body, problems)
    exclude = origin_or_none(body, "excludeOrigin", problems)
    seconds, limit, known = body.get("seconds", WAIT_SECONDS), body.get("limit"), body.get("epoch")
    if type(seconds) not in (int, float) or not 0 <= seconds <= MAX_WAIT_SECONDS:
        problems["seconds"] = f"must be a number from 0 to {MAX_WAIT_SECONDS}"
    if limit is not None and (type(limit) is not int or not 1 <= limit <= MAX_BATCH):
        problems["limit"] = f"must be null or an integer from 1 to {MAX_BATCH}"
    if known is not None and not isinstance(known, str):
        problems["epoch"] = "must be null or the epoch the device holds its cursor in"
    if problems:
        raise ValidationError(problems)
    # Set by the hub's front (front.py), which can hold a request without a thread; without
    # it (a bare WSGI server, a test client) the answer is what there is now.
    holding = request.environ.get("asgi.scope", {}).get("coursesync.wait")
    waiters = current_app.extensions["waiters"]
    # Registered before the store is read: a change landing between the two still wakes it.
    waiter = waiters.add(g.device.user_id, g.device.device_id) if holding and not holding["final"] and seconds \
        else None
    try:
        changed, epoch, page = _news(g.hub_store, cursor, exclude, limit, known)
    except BaseException:
        if waiter is not None:
            waiters.remove(waiter)
        raise
    if waiter is not None:
        if not changed:
            held = min(seconds, current_app.config["SETTINGS"].hub_max_wait_seconds)
            holding["park"] = {"waiter": waiter, "seconds": held}  # the front holds it and asks again
        else:
            waiters.remove(waiter)
    if changed and limit is not None:  # waitChanges: the news itself, as a pull's page
        return envelope({"changed": True, "epoch": epoch,
                         **({"changes": _pulled(cursor, page, None)} if page is not None else {})})
    return envelope({"changed": changed})


def _refusals_allowed(device: Device):
    """The hub's count of refusals per device, once this device is found under its quota (429)."""
    limits = current_app.extensions["refusals"]
    if limits.over(device.device_id):
        raise TooManyRequests(f"The hub refused more than {limits.per_minute} of this device's changes in the last "
                              "minute; it takes no more for now.", code="refusal_quota", retry_after=60,
                              detail={"limit": limits.per_minute})
    return limits


def _news(store, cursor: dict[str, int], exclude: str | None, limit: int | None,
          known: str | None) -> tuple[bool, str | None, list | None]:
    """(changed, the hub's epoch when asked, the page when the wait answers one). News is another
    epoch than the device's, a change of another origin past the cursor, or records the cursor
    lacks (another device healed the hub from its records, or a purge): a round then catches up.
    With waitChanges the page is the news, read once rather than a look for one change first."""
    epoch = store.hub_epoch() if limit is not None or known is not None else None
    if known is not None and known != epoch:
        return True, epoch, None
    page = store.changes_since(cursor, limit or 1, exclude_origin=exclude)
    changed = bool(page) or bool(behind(cursor, store.floors(), but=exclude))
    return changed, epoch, page if limit is not None else None


def _check_origins(device: Device, origins: list[str]) -> None:
    """Refuse the whole batch, writing nothing, if another device owns one of its origins; then
    take the ones nobody owns yet (or that only a relay brought in), within the device's quota,
    each counted and claimed in one step (registry.claim_origin)."""
    registry = _registry()
    owners = {o: _guarded(registry.origin_owner, device.user_id, o) for o in origins}
    for origin in origins:
        if owners[origin] not in (None, device.device_id) and not owners[origin].startswith(RELAYED):
            _not_yours(origin)
    limit = current_app.config["SETTINGS"].hub_max_origins
    for origin in (o for o in origins if owners[o] != device.device_id):
        owner = _guarded(registry.claim_origin, device.user_id, origin, device.device_id, limit) \
            if owners[origin] is None else owners[origin]
        if owner == device.device_id:
            continue
        taken = _guarded(registry.take_relayed, device.user_id, origin, device.device_id, limit) if owner else None
        if taken is None:
            _over_quota(limit, "origins of its own")
        if not taken:
            _not_yours(origin)  # another device took it a moment ago


def _owned_by_others(device: Device) -> set[str]:
    """The origins of the user that another device owns whose token is not revoked: only that
    device gives back what the hub lost of them (its push, its heal), so a relay or a heal of
    this device takes none of their changes."""
    registry = _registry()
    others = {o: owner for o, owner in _guarded(registry.owners, device.user_id).items()
              if owner != device.device_id and not owner.startswith(RELAYED)}
    revoked = _guarded(registry.revoked_among, sorted(set(others.values()))) if others else set()
    return {o for o, owner in others.items() if owner not in revoked}


def _hold_relayed(device: Device, origins: list[str]) -> None:
    registry, holder = _registry(), RELAYED + device.device_id
    limit = current_app.config["SETTINGS"].hub_max_origins * 4
    for origin in origins:
        if _guarded(registry.origin_owner, device.user_id, origin) is None and \
                _guarded(registry.claim_origin, device.user_id, origin, holder, limit) is None:
            _over_quota(limit, "origins brought in by relay")


def _over_quota(limit: int, what: str) -> None:
    raise TooManyRequests(f"This device holds {limit} {what}; the hub allows {limit} (HUB_MAX_ORIGINS). Ask "
                          "whoever runs the hub.", code="origin_quota", retry_after=3600, detail={"limit": limit})


def _not_yours(origin: str) -> None:
    raise Forbidden(f"Origin {origin!r} belongs to another device: a device pushes only its own changes.",
                    code="origin_not_yours", detail={"origin": origin})


@route(Operation("get", "/openapi.json", "hubOpenapi", "This document", {"200": ({"type": "object"}, "OpenAPI", False)},
                 public=True, enveloped=False))
def hub_openapi():
    return cached_document("hub_openapi", lambda: build_hub_document(OPERATIONS + PAIRING_OPERATIONS))


