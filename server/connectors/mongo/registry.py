"""The hub's device registry in its MongoDB database (collections hub_devices, hub_origins,
hub_positions), held without transactions."""

from __future__ import annotations

import random
import re
import time
from dataclasses import asdict

from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from server.connectors.registry import (
    CLAIM_ATTEMPTS,
    RELAYED,
    SEEN_EVERY_SECONDS,
    Device,
    DeviceRegistry,
    Invitation,
    Position,
    new_token,
    token_hash,
)
from server.core.times import iso_now


class MongoRegistry(DeviceRegistry):
    def __init__(self, db: Database):
        self.db = db  # a connected MongoConnector's database
        self.db.hub_devices.create_index([("tokenHash", ASCENDING)], unique=True)
        self.db.hub_devices.create_index([("deviceId", ASCENDING)], unique=True)
        self.db.hub_origins.create_index([("userId", ASCENDING), ("origin", ASCENDING)], unique=True)
        self.db.hub_positions.create_index([("deviceId", ASCENDING)], unique=True)
        self.db.hub_positions.create_index([("userId", ASCENDING)])
        self.db.hub_invitations.create_index([("codeHash", ASCENDING)], unique=True)
        self.db.hub_invitations.create_index([("deviceId", ASCENDING)], unique=True)
        self.db.hub_invitations.create_index([("userId", ASCENDING)])

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
        # One operation: written unless it holds this position, seen lately; then the filter
        # matches nothing, and the upsert's insert meets the unique device id.
        pulled = [[o, s] for o, s in sorted(cursor.items())]
        try:
            self.db.hub_positions.update_one(
                {"deviceId": device.device_id,
                 "$or": [{"pulled": {"$ne": pulled}}, {"seenAt": {"$lt": now - SEEN_EVERY_SECONDS}}]},
                {"$set": {"userId": device.user_id, "pulled": pulled, "seenAt": now}}, upsert=True)
        except DuplicateKeyError:
            pass  # the position is there already

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

    # --- invitations (hub/pairing.py) ---------------------------------------------------------
    def _insert_invited(self, device: Device, hashed: str, code_hashed: str, expires_at: float) -> None:
        # The invitation first: a device without one would be a device nobody can pair.
        self.db.hub_invitations.insert_one({"codeHash": code_hashed, "deviceId": device.device_id,
                                            "userId": device.user_id, "expiresAt": expires_at,
                                            "exchangedAt": None, "usedAt": None})
        self._insert(device, hashed)

    def exchange(self, code: str, now: float) -> tuple[str, Device | None, str | None]:
        invitation = self.db.hub_invitations.find_one({"codeHash": token_hash(code)})
        doc = invitation and self.db.hub_devices.find_one({"deviceId": invitation["deviceId"]})
        if not invitation or not doc:
            return "unknown", None, None
        device = self._device(doc)
        if device.revoked_at:
            return "revoked", device, None
        if invitation.get("usedAt") is not None:
            return "used", device, None
        if invitation["expiresAt"] <= now:
            return "expired", device, None
        # Marked first, on the condition that the code is not spent: a token used meanwhile wins.
        marked = self.db.hub_invitations.update_one({"codeHash": token_hash(code), "usedAt": None},
                                                    {"$set": {"exchangedAt": now}})
        if marked.matched_count == 0:
            return "used", device, None
        token = new_token()
        self.db.hub_devices.update_one({"deviceId": device.device_id, "revokedAt": None},
                                       {"$set": {"tokenHash": token_hash(token)}})
        return "paired", device, token

    def note_used(self, device_id: str, now: float) -> None:
        self.db.hub_invitations.update_one({"deviceId": device_id, "usedAt": None, "exchangedAt": {"$ne": None}},
                                           {"$set": {"usedAt": now}})

    def invitations(self, user_id: str | None = None) -> dict[str, Invitation]:
        docs = self.db.hub_invitations.find({} if user_id is None else {"userId": user_id})
        return {d["deviceId"]: Invitation(d["deviceId"], d["expiresAt"], d.get("exchangedAt"), d.get("usedAt"))
                for d in docs}
