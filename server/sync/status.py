"""The sync status: one shape for GET /api/v1/sync/status, `sync status` and the sync page,
with or without a running service (server/sync/service.py adds what only it knows)."""

from __future__ import annotations

import time
from typing import Any, Protocol

from server.connectors.base import DatabaseConnector
from server.core.clock import stamp_ms
from server.core.times import iso_from_seconds
from server.sync.bookmark import Bookmark, load_bookmark
from server.sync.relay import HeldForOther, held_for_others


class Running(Protocol):
    """What the status reads of a running service (server/sync/service.py's SyncService)."""

    settings: Any

    def now(self) -> float: ...

    def live_status(self) -> dict[str, Any]: ...

CLOCK_AHEAD = ("The hub refused {n} of this device's edits because its clock is ahead of the hub's. "
               "Set this device's date and time right. The refused edits wait in the quarantine and are "
               "sent again by themselves once the hub's clock has caught up with them.")
QUARANTINE_HELD = ("{n} change{s} {verb} held in the quarantine, refused at a door and not synced "
                   "(GET /api/v1/sync/quarantine says why); everything else syncs.")
CATCHING_UP = ("This device is part way through catching up from the hub's records (its log no longer reaches "
               "back here): until a round finishes it, it may lack part of what the hub holds.")
HELD_FOR_OTHERS = ("The hub lost {n} change(s) of another of your devices (origin {origin}) that this device holds; "
                   "only that device may give them back, at its next round. If it is gone for good, revoke its "
                   "token at the hub (`hub revoke`): this device then gives them back within the hour.")
LIVE_OFF = {"state": "off", "since": None, "retryAt": None, "wakes": 0, "lastRemoteLagMs": None}
# Without a hub: the same keys, saying that nothing runs.
DISABLED: dict[str, Any] = {
    "hub": None, "state": "disabled", "worker": None, "lastAttempt": None, "lastSuccess": None,
    "lastError": None, "nextRun": None, "consecutiveFailures": 0,
    "totals": {"pushed": 0, "pulled": 0, "conflicts": 0, "rounds": 0}, "lastRound": None, "recentRounds": [],
    "warnings": [], "live": LIVE_OFF,
}


def sync_status(local: DatabaseConnector, service: Running | None = None) -> dict[str, Any]:
    """The one status shape (GET /api/v1/sync/status, `flask sync status`), with or without sync.

    `origin` is the store's origin (what its changes are logged under). `deviceId` holds the same
    value under its old name and stays for one release, for readers written before `origin`: a
    hub's device id (its token's) is another thing, and read as `origin` from now on."""
    bookmark = load_bookmark(local)
    count, oldest = local.pending_since(bookmark.cursor)
    now = service.now() if service else time.time()
    oldest_s = stamp_ms(oldest) / 1000 if oldest else None
    held = local.count_quarantine()
    live = service.live_status() if service else DISABLED
    warnings = list(live["warnings"])
    if held and not warnings:
        warnings.append(QUARANTINE_HELD.format(n=held, s="" if held == 1 else "s", verb="is" if held == 1 else "are"))
    others = held_for_others(local, bookmark)
    if bookmark.catch_up is not None:
        warnings.append(CATCHING_UP)
    warnings += [HELD_FOR_OTHERS.format(n=h["changes"], origin=h["origin"]) for h in others]
    return {
        "enabled": service is not None,
        "origin": local.origin,
        "deviceId": local.origin,  # the old name of `origin`: kept for one release (docs/learner.md)
        "userId": local.user_id,
        **live,
        "warnings": warnings,
        "pending": {
            "count": count,
            "oldestAt": iso_from_seconds(oldest_s),
            "oldestAgeSeconds": round(now - oldest_s, 1) if oldest_s is not None else None,
        },
        "openConflicts": local.count_conflicts(),
        "resolvedConflictsKeptDays": service.settings.conflicts_keep_resolved_days if service else None,
        "quarantined": held,
        "hubEpoch": bookmark.epoch,
        **_histories(bookmark, others),
    }


def _histories(bookmark: Bookmark, others: list[HeldForOther]) -> dict[str, Any]:
    """What the hub and this store went through, as the status lists it."""
    return {
        "hubResets": [{"from": r["from"], "to": r["to"], "at": iso_from_seconds(r["at"])}
                      for r in bookmark.resets],
        # The store was older than its own log on the hub (a restored backup, a copied file).
        "originRestarts": [{"from": r["from"], "to": r["to"], "at": iso_from_seconds(r["at"]), "resent": r["resent"]}
                           for r in bookmark.restarts],
        # Catch-ups from the hub's records given up because the hub lost history under them.
        "catchUpRestarts": [{"at": iso_from_seconds(r["at"]), "origins": r["origins"]}
                            for r in bookmark.catch_up_restarts],
        # Changes of other devices the hub lost and only their own device may give back.
        "heldForOthers": [{**h, "since": iso_from_seconds(h["since"])} for h in others],
        # The hub held less than it had acknowledged (restored from an older backup); what it
        # lost was given back by the round that noticed.
        "hubRollbacks": [{"at": iso_from_seconds(r["at"]), "origins": r["origins"], "changes": r["changes"],
                          "foundBy": r.get("by", "this device")}
                         for r in bookmark.rollbacks],
    }
