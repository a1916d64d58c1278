"""Where a device paired through its sync page keeps its hub: the hub's address, its token and
the hub's user, in its own store (the meta table), not in `.env`; and, on pairing, the handover
of a store that has never synced to the invitation's user, in the same transaction.

This module is the contract; the SQLite store keeps it in sqlite/hub_link.py, and the factory
gives a store's (`hub_link_for`). A device on DB_CONNECTOR=mongo writes to the hub itself and
has none."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KeptHub:
    url: str  # the hub's address, as HUB_URL takes it
    token: str  # this device's token at that hub
    user_id: str  # whose data the token syncs
    device_id: str  # the device's id at the hub (`hub revoke` takes it)
    paired_at: str

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "token": self.token, "userId": self.user_id, "deviceId": self.device_id,
                "pairedAt": self.paired_at}


class StoreHoldsOthers(Exception):
    """The store holds data of the invitation's user already, beside its own user's: moving one
    onto the other would mix two logs."""


class HubLink(ABC):
    @abstractmethod
    def kept(self) -> KeptHub | None:
        """The hub this store was paired with, if any."""

    @abstractmethod
    def synced_users(self) -> set[str]:
        """The users this store has synced as (any sync state kept for them)."""

    @abstractmethod
    def keep(self, hub: KeptHub, move_from: str | None) -> dict[str, int]:
        """Keep `hub`, in one transaction with (when `move_from` is given) moving every record,
        change, conflict and the user profile of `move_from` to hub.user_id, and making that user
        the store's owner. Returns the rows moved per table. Raises StoreHoldsOthers (nothing
        written) if the store holds changes of hub.user_id already."""

    @abstractmethod
    def forget(self) -> KeptHub | None:
        """Forget the kept hub; the one forgotten."""
