"""What of a user's history at a hub every device still served holds: the part compaction may
drop. A device holds history back from its first pull until it has not been seen for
HUB_DEVICE_RETENTION_DAYS (or is revoked); the rule itself is `sequences.retention_floor`."""

from __future__ import annotations

from typing import Any

from server.connectors.base import DatabaseConnector
from server.connectors.registry import DeviceRegistry
from server.core.sequences import retention_floor
from server.core.times import iso_from_seconds

DAY = 86_400


def holding_back(registry: DeviceRegistry, user_id: str, now: float, retention_days: float) -> dict[str, dict]:
    """device id -> the cursor of its last pull, for the user's devices that hold history back."""
    revoked = {d.device_id for d in registry.devices(user_id) if d.revoked_at}
    oldest = now - retention_days * DAY
    return {device: position.pulled for device, position in registry.positions(user_id).items()
            if device not in revoked and position.seen_at >= oldest}


def _floors(store: DatabaseConnector, registry: DeviceRegistry, user_id: str, now: float,
            retention_days: float) -> tuple[dict[str, dict], dict[str, str], dict[str, int], dict[str, int]]:
    """(device -> cursor of the devices holding history back, origin -> owner, origin -> top,
    origin -> the floor every device still served holds) for the user's log at this hub."""
    pulled = holding_back(registry, user_id, now, retention_days)
    owners = registry.owners(user_id)
    origins = set(owners) | {o for cursor in pulled.values() for o in cursor}
    tops = store.tops(origins)
    return pulled, owners, tops, retention_floor(tops, pulled, owners)


def retention_report(store: DatabaseConnector, registry: DeviceRegistry, user_id: str, now: float,
                     retention_days: float) -> dict[str, Any]:
    """Per origin of the user's log at this hub: its top, the floor every device still served
    holds, and which device holds it lowest; and how many changes lie at or below the floors."""
    pulled, owners, tops, floor = _floors(store, registry, user_id, now, retention_days)
    lowest = {o: min((d for d in pulled if owners.get(o) != d), key=lambda d: pulled[d].get(o, 0), default=None)
              for o in tops}
    positions = registry.positions(user_id)
    return {
        "userId": user_id,
        "devicesHoldingHistory": sorted(pulled),
        "devicesNotHolding": sorted(set(positions) - set(pulled)),
        "origins": {o: {"top": tops[o], "floor": floor[o],
                        "heldBackBy": lowest[o] if floor[o] < tops[o] else None} for o in sorted(tops)},
        "changesAtOrBelowFloor": sum(floor.values()),
        "changes": sum(tops.values()),
        "retentionDays": retention_days,
        "at": iso_from_seconds(now),
    }


def compact_user(store: DatabaseConnector, registry: DeviceRegistry, user_id: str, now: float,
                 retention_days: float, limit: int) -> int:
    """Drop at most `limit` of the user's changes that every device still served holds (in
    short writes: pushes and pulls go on between them). Returns how many went; 0: nothing left."""
    return store.compact(_floors(store, registry, user_id, now, retention_days)[3], limit)


def users(registry: DeviceRegistry) -> list[str]:
    """Every user with a device at this hub, sorted."""
    return sorted({d.user_id for d in registry.devices()})
