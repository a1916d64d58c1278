"""Purging a revoked device from a hub: its origins' changes are dropped from the user's log at
once, whoever has pulled them, and the refused changes kept of those origins go too.

A purge is not an undo. What the device's changes did to the records stays (it merged into the
user's data by the usual rule, and other devices built on it). Dropping the log is compaction
with each origin's floor at its top, so the rules of bounded history make it safe:
- every purged change is held (`sequences.held_below`): a device that relays it back, as a
  device does for a hub it thinks lost history, is not refused and stores nothing;
- a device that had not pulled all of it is below the floor, is told so in the shortfall answer
  (`compacted`) and catches up from the records: nothing is lost, nothing comes back.
Refused changes that name no readable origin cannot be told apart by device and stay (the
hub keeps at most HUB_MAX_QUARANTINED of them per user)."""

from __future__ import annotations

from typing import Any

from server.connectors.base import DatabaseConnector
from server.connectors.registry import RELAYED, Device, DeviceRegistry


class NotRevoked(ValueError):
    """A purge of a device that still has a working token: it would only push again."""


def purged_origins(registry: DeviceRegistry, device: Device) -> list[str]:
    """The origins of the user's log the device owns, or brought in by relay and nobody took."""
    holders = {device.device_id, RELAYED + device.device_id}
    return sorted(o for o, holder in registry.owners(device.user_id).items() if holder in holders)


def purge_device(store: DatabaseConnector, registry: DeviceRegistry, device: Device) -> dict[str, Any]:
    """Drop the revoked `device`'s origins from `store` (the hub store of its user), in the
    compaction's short writes; what went, as a report."""
    if not device.revoked_at:
        raise NotRevoked(f"device {device.device_id} is not revoked: revoke it first (`flask hub revoke`)")
    origins = purged_origins(registry, device)
    tops = store.tops(set(origins))
    dropped = 0
    while step := store.compact(tops, 100_000):
        dropped += step
    refused = [q["id"] for q in store.list_quarantine(limit=10_000_000) if q.get("origin") in tops]
    return {"deviceId": device.device_id, "userId": device.user_id, "origins": len(origins),
            "dropped": dropped, "refusedReleased": store.release_quarantined(refused) if refused else 0,
            "floors": {o: f for o, f in store.floors().items() if o in tops}}
