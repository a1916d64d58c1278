"""A hub's devices: the tokens that may sync through a hub server (`python -m server --hub`),
the user each one syncs as, and which device owns which origin of the change log.

A token is shown once, when it is made, and only its SHA-256 is kept: tokens are 256 random
bits, so a fast hash is enough (a slow one protects guessable passwords, which these are not),
and a copy of the store gives nobody a token. An origin belongs to the first device that pushes
a change of it; after that no other device may push under it.

This module is the contract; each backend keeps its registry in its own folder
(sqlite/registry.py, mongo/registry.py), and the factory picks one for a hub store."""

from __future__ import annotations

import hashlib
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from server.core.times import iso_now

TOKEN_PREFIX = "csh_"
CODE_PREFIX = "csi_"  # a pairing code (`hub invite`): exchanged once for a token (hub/pairing.py)


@dataclass(frozen=True)
class Device:
    device_id: str
    user_id: str
    name: str
    created_at: str
    revoked_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"deviceId": self.device_id, "userId": self.user_id, "name": self.name,
                "createdAt": self.created_at, "revokedAt": self.revoked_at}


@dataclass(frozen=True)
class Invitation:
    """What the hub keeps of an invitation (never its code: only the code's SHA-256): until
    when its code may be exchanged (epoch seconds), when it last was, and when the token it gave
    was first used by a sync call (after that the code is spent)."""
    device_id: str
    expires_at: float
    exchanged_at: float | None = None
    used_at: float | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


CLAIM_ATTEMPTS = 8  # a MongoDB claim that gave way to others made at once tries again so often
RELAYED = "relay:"  # the holder of an origin another device brought in by relay, then its id
SEEN_EVERY_SECONDS = 600  # a position unchanged is written again at most this often (its seenAt)


@dataclass(frozen=True)
class Position:
    """Where a device of a hub is: the cursor of its last full pull (what it holds of each
    origin), and when it was last seen pulling (epoch seconds)."""
    pulled: dict[str, int]
    seen_at: float


class DeviceRegistry(ABC):
    def add(self, user_id: str, name: str) -> tuple[Device, str]:
        """A new device of `user_id`, and its token (returned here only)."""
        device = Device(f"hd_{secrets.token_hex(6)}", user_id, name, iso_now())
        token = new_token()
        self._insert(device, token_hash(token))
        return device, token

    @abstractmethod
    def _insert(self, device: Device, hashed: str) -> None: ...

    def invite(self, user_id: str, name: str, expires_at: float) -> tuple[Device, str]:
        """A new device of `user_id` in state invited, and its pairing code (returned here only).
        It has no token until the code is exchanged: its token hash is that of a secret nobody holds."""
        device = Device(f"hd_{secrets.token_hex(6)}", user_id, name, iso_now())
        code = CODE_PREFIX + secrets.token_urlsafe(24)
        self._insert_invited(device, token_hash(secrets.token_urlsafe(32)), token_hash(code), expires_at)
        return device, code

    @abstractmethod
    def _insert_invited(self, device: Device, hashed: str, code_hashed: str, expires_at: float) -> None: ...

    @abstractmethod
    def exchange(self, code: str, now: float) -> tuple[str, Device | None, str | None]:
        """Exchange a pairing code for a new token of its device, replacing any token an earlier
        exchange gave: ("paired", device, token); or ("unknown" | "revoked" | "used" | "expired",
        device or None, None) with nothing written. "used": the token was used by a sync call."""

    @abstractmethod
    def note_used(self, device_id: str, now: float) -> None:
        """The device's token was used by a sync call: its invitation's code is spent. Writes only
        for a device whose code was exchanged and not yet marked."""

    @abstractmethod
    def invitations(self, user_id: str | None = None) -> dict[str, Invitation]:
        """device id -> its invitation, for the devices (of `user_id`) made by `invite`."""

    @abstractmethod
    def find(self, token: str) -> Device | None:
        """The device this token belongs to (revoked ones too: the caller says why it refuses)."""

    @abstractmethod
    def devices(self, user_id: str | None = None) -> list[Device]:
        """Every device (of `user_id`), oldest first."""

    @abstractmethod
    def revoke(self, token_or_device: str) -> list[Device]:
        """Revoke the device with this token or device id; the devices revoked now."""

    @abstractmethod
    def origin_owner(self, user_id: str, origin: str) -> str | None:
        """The device that owns this origin of the user's log, if one does."""

    @abstractmethod
    def claim_origin(self, user_id: str, origin: str, device_id: str, limit: int | None = None) -> str | None:
        """Make `device_id` (a device id, or RELAYED + one) the origin's owner unless another
        already is; the owner after. With `limit`: only if it then holds at most `limit` origins,
        counted and claimed as one step, so that requests at once cannot together go over it;
        None when there was no room (nothing claimed)."""

    @abstractmethod
    def origins_held(self, user_id: str, holder: str) -> int:
        """How many of the user's origins `holder` holds: a device id, or RELAYED + a device id
        for the origins that device brought in by relay and nobody has pushed as its own yet."""

    @abstractmethod
    def revoked_among(self, device_ids: list[str]) -> set[str]:
        """Of these devices, the ones revoked (a waiting device's wait ends with 401)."""

    @abstractmethod
    def take_relayed(self, user_id: str, origin: str, device_id: str, limit: int | None = None) -> bool | None:
        """Make `device_id` the owner of an origin only brought in by relay; True if it was one.
        With `limit`, as claim_origin: None when the device holds `limit` origins already."""

    @abstractmethod
    def note_pulled(self, device: Device, cursor: dict[str, int], now: float) -> None:
        """The device pulled after `cursor`: it holds that much of each origin. Written only when
        the cursor moved or the last note is SEEN_EVERY_SECONDS old, so an idle round writes
        nothing most of the time."""

    @abstractmethod
    def positions(self, user_id: str) -> dict[str, Position]:
        """device id -> its position, for the user's devices that have pulled."""

    @abstractmethod
    def owners(self, user_id: str) -> dict[str, str]:
        """origin -> the device that owns it (or RELAYED + the device that brought it in)."""

    @abstractmethod
    def device_counts(self, seen_since: float) -> dict[str, int]:
        """Every user's: {"active": devices not revoked, "seen": devices that pulled at or after
        `seen_since` (epoch seconds)}."""
