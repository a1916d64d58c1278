"""A hub's devices: the tokens that may sync through a hub server (`python -m server --hub`),
the user each one syncs as, and which device owns which origin of the change log.

A token is shown once, when it is made, and only its SHA-256 is kept: tokens are 256 random
bits, so a fast hash is enough (a slow one protects guessable passwords, which these are not),
and a copy of the store gives nobody a token. An origin belongs to the first device that pushes
a change of it; after that no other device may push under it."""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from server.connectors.base import DatabaseConnector
from server.connectors.sqlite.atomic import Transaction
from server.connectors.sqlite.atomic import atomic as transaction
from server.connectors.sqlite.pool import Connections
from server.core.times import iso_now

TOKEN_PREFIX = "csh_"


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


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


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
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._insert(device, token_hash(token))
        return device, token

    @abstractmethod
    def _insert(self, device: Device, hashed: str) -> None: ...

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


class SqlRegistry(DeviceRegistry):
    def __init__(self, pool: Connections):
        self.pool = pool  # the connections of the hub's (connected, migrated) SQLite file

    def _atomic(self) -> Transaction:
        # In the file's writer queue, in turn with the stores' writes: in SQLite's busy loop it
        # lost every race to a large push written in turns, for seconds.
        return transaction(self.pool.get, lock=self.pool.write_lock)

    def _insert(self, device: Device, hashed: str) -> None:
        with self._atomic() as conn:
            conn.execute("INSERT INTO hub_devices VALUES (?, ?, ?, ?, ?, NULL)",
                         (device.device_id, device.user_id, device.name, hashed, device.created_at))

    def find(self, token: str) -> Device | None:
        row = self.pool.get().execute(
            "SELECT device_id, user_id, name, created_at, revoked_at FROM hub_devices WHERE token_hash = ?",
            (token_hash(token),)).fetchone()
        return Device(*row) if row else None

    def devices(self, user_id: str | None = None) -> list[Device]:
        rows = self.pool.get().execute(
            "SELECT device_id, user_id, name, created_at, revoked_at FROM hub_devices "
            "WHERE ? IS NULL OR user_id = ? ORDER BY created_at, device_id", (user_id, user_id))
        return [Device(*r) for r in rows]

    def revoke(self, token_or_device: str) -> list[Device]:
        with self._atomic() as conn:
            rows = conn.execute(
                "UPDATE hub_devices SET revoked_at = ? WHERE revoked_at IS NULL AND (device_id = ? OR token_hash = ?) "
                "RETURNING device_id, user_id, name, created_at, revoked_at",
                (iso_now(), token_or_device, token_hash(token_or_device))).fetchall()
        return [Device(*r) for r in rows]

    def origins_held(self, user_id: str, holder: str) -> int:
        return self.pool.get().execute("SELECT COUNT(*) FROM hub_origins WHERE user_id = ? AND device_id = ?",
                                          (user_id, holder)).fetchone()[0]

    def take_relayed(self, user_id: str, origin: str, device_id: str, limit: int | None = None) -> bool | None:
        with self._atomic() as conn:  # BEGIN IMMEDIATE: the count and the update are one step
            if limit is not None and self._held(conn, user_id, device_id) >= limit:
                return None
            return conn.execute("UPDATE hub_origins SET device_id = ? WHERE user_id = ? AND origin = ? AND "
                                "substr(device_id, 1, ?) = ?",
                                (device_id, user_id, origin, len(RELAYED), RELAYED)).rowcount == 1

    @staticmethod
    def _held(conn, user_id: str, holder: str) -> int:
        return conn.execute("SELECT COUNT(*) FROM hub_origins WHERE user_id = ? AND device_id = ?",
                            (user_id, holder)).fetchone()[0]

    def revoked_among(self, device_ids: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(device_ids), 500):
            part = device_ids[i:i + 500]
            out.update(r[0] for r in self.pool.get().execute(
                f"SELECT device_id FROM hub_devices WHERE revoked_at IS NOT NULL AND device_id IN "
                f"({','.join('?' * len(part))})", part))
        return out

    def note_pulled(self, device: Device, cursor: dict[str, int], now: float) -> None:
        pulled = json.dumps(cursor, sort_keys=True)
        with self._atomic() as conn:
            conn.execute("INSERT INTO hub_positions VALUES (?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
                         "pulled = excluded.pulled, seen_at = excluded.seen_at "
                         "WHERE pulled != excluded.pulled OR seen_at < ?",
                         (device.device_id, device.user_id, pulled, now, now - SEEN_EVERY_SECONDS))

    def positions(self, user_id: str) -> dict[str, Position]:
        rows = self.pool.get().execute("SELECT device_id, pulled, seen_at FROM hub_positions WHERE user_id = ?",
                                       (user_id,))
        return {device: Position(json.loads(pulled), seen) for device, pulled, seen in rows}

    def owners(self, user_id: str) -> dict[str, str]:
        return dict(self.pool.get().execute("SELECT origin, device_id FROM hub_origins WHERE user_id = ?",
                                            (user_id,)))

    def origin_owner(self, user_id: str, origin: str) -> str | None:
        row = self.pool.get().execute("SELECT device_id FROM hub_origins WHERE user_id = ? AND origin = ?",
                                         (user_id, origin)).fetchone()
        return row[0] if row else None

    def device_counts(self, seen_since: float) -> dict[str, int]:
        conn = self.pool.get()
        active = conn.execute("SELECT COUNT(*) FROM hub_devices WHERE revoked_at IS NULL").fetchone()[0]
        seen = conn.execute("SELECT COUNT(*) FROM hub_positions WHERE seen_at >= ?", (seen_since,)).fetchone()[0]
        return {"active": active, "seen": seen}

    def claim_origin(self, user_id: str, origin: str, device_id: str, limit: int | None = None) -> str | None:
        with self._atomic() as conn:  # BEGIN IMMEDIATE: the count and the claim are one step
            row = conn.execute("SELECT device_id FROM hub_origins WHERE user_id = ? AND origin = ?",
                               (user_id, origin)).fetchone()
            if row is not None:
                return row[0]
            if limit is not None and self._held(conn, user_id, device_id) >= limit:
                return None
            conn.execute("INSERT INTO hub_origins VALUES (?, ?, ?)", (user_id, origin, device_id))
            return device_id


class MongoRegistry(DeviceRegistry):
    def __init__(self, db: Database):
        self.db = db  # a connected MongoConnector's database
        self.db.hub_devices.create_index([("tokenHash", ASCENDING)], unique=True)
        self.db.hub_devices.create_index([("deviceId", ASCENDING)], unique=True)
        self.db.hub_origins.create_index([("userId", ASCENDING), ("origin", ASCENDING)], unique=True)
        self.db.hub_positions.create_index([("deviceId", ASCENDING)], unique=True)
        self.db.hub_positions.create_index([("userId", ASCENDING)])

    @staticmethod
    def _device(doc: dict) -> Device:
        return Device(doc["deviceId"], doc["userId"], doc["name"], doc["createdAt"], doc.get("revokedAt"))

    def _insert(self, device: Device, hashed: str) -> None:
        self.db.hub_devices.insert_one({"deviceId": device.device_id, "userId": device.user_id, "name": device.name,
                                        "tokenHash": hashed, "createdAt": device.created_at, "revokedAt": None})

    def find(self, token: str) -> Device | None:
        doc = self.db.hub_devices.find_one({"tokenHash": token_hash(token)})
        return self._device(doc) if doc else None

    def devices(self, user_id: str | None = None) -> list[Device]:
        docs = self.db.hub_devices.find({} if user_id is None else {"userId": user_id})
        return sorted((self._device(d) for d in docs), key=lambda d: (d.created_at, d.device_id))

    def revoke(self, token_or_device: str) -> list[Device]:
        query = {"revokedAt": None, "$or": [{"deviceId": token_or_device}, {"tokenHash": token_hash(token_or_device)}]}
        found = [self._device(d) for d in self.db.hub_devices.find(query)]
        now = iso_now()
        for device in found:
            self.db.hub_devices.update_one({"deviceId": device.device_id, "revokedAt": None},
                                           {"$set": {"revokedAt": now}})
        return [Device(**{**asdict(d), "revoked_at": now}) for d in found]

    def origins_held(self, user_id: str, holder: str) -> int:
        return self.db.hub_origins.count_documents({"userId": user_id, "deviceId": holder})

    def take_relayed(self, user_id: str, origin: str, device_id: str, limit: int | None = None) -> bool | None:
        was = self.db.hub_origins.find_one_and_update(
            {"userId": user_id, "origin": origin, "deviceId": {"$regex": "^" + re.escape(RELAYED)}},
            {"$set": {"deviceId": device_id}})
        if was is None:
            return False
        if limit is not None and self.origins_held(user_id, device_id) > limit:  # as claim_origin: give it back
            self.db.hub_origins.update_one({"userId": user_id, "origin": origin, "deviceId": device_id},
                                           {"$set": {"deviceId": was["deviceId"]}})
            return None  # (rare enough, an origin relayed in and then pushed at once, not to try again)
        return True

    def revoked_among(self, device_ids: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(device_ids), 500):
            docs = self.db.hub_devices.find({"deviceId": {"$in": device_ids[i:i + 500]}, "revokedAt": {"$ne": None}},
                                            {"_id": 0, "deviceId": 1})
            out.update(d["deviceId"] for d in docs)
        return out

    def note_pulled(self, device: Device, cursor: dict[str, int], now: float) -> None:
        # Kept as a list of pairs: a cursor's origins never become field names of a document.
        pulled = [[o, s] for o, s in sorted(cursor.items())]
        doc = self.db.hub_positions.find_one({"deviceId": device.device_id}, {"_id": 0, "pulled": 1, "seenAt": 1})
        if doc and doc.get("pulled") == pulled and doc.get("seenAt", 0) >= now - SEEN_EVERY_SECONDS:
            return
        self.db.hub_positions.update_one({"deviceId": device.device_id},
                                         {"$set": {"userId": device.user_id, "pulled": pulled, "seenAt": now}},
                                         upsert=True)

    def positions(self, user_id: str) -> dict[str, Position]:
        return {d["deviceId"]: Position({o: s for o, s in d["pulled"]}, d["seenAt"])
                for d in self.db.hub_positions.find({"userId": user_id})}

    def owners(self, user_id: str) -> dict[str, str]:
        return {d["origin"]: d["deviceId"] for d in self.db.hub_origins.find({"userId": user_id})}

    def origin_owner(self, user_id: str, origin: str) -> str | None:
        doc = self.db.hub_origins.find_one({"userId": user_id, "origin": origin})
        return doc["deviceId"] if doc else None

    def device_counts(self, seen_since: float) -> dict[str, int]:
        return {"active": self.db.hub_devices.count_documents({"revokedAt": None}),
                "seen": self.db.hub_positions.count_documents({"seenAt": {"$gte": seen_since}})}

    def claim_origin(self, user_id: str, origin: str, device_id: str, limit: int | None = None) -> str | None:
        # No transaction: claim, then count, and give the claim back if it went over. No claim
        # that stays was counted over the limit (each counts after its own insert, so it sees
        # every claim kept before it): never over. Claims made at once may all give way: each
        # then tries again after a random pause while the count leaves room.
        for attempt in range(CLAIM_ATTEMPTS):
            try:
                self.db.hub_origins.insert_one({"userId": user_id, "origin": origin, "deviceId": device_id})
            except DuplicateKeyError:
                return self.origin_owner(user_id, origin) or device_id
            if limit is None or self.origins_held(user_id, device_id) <= limit:
                return device_id
            self.db.hub_origins.delete_one({"userId": user_id, "origin": origin, "deviceId": device_id})
            if self.origins_held(user_id, device_id) >= limit:
                return None
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
        return None


def registry_for(store: DatabaseConnector) -> DeviceRegistry:
    """The registry kept in this (connected) hub store."""
    from server.connectors.sqlite.store import SqlConnector

    return SqlRegistry(store.pool) if isinstance(store, SqlConnector) else MongoRegistry(store.db)
