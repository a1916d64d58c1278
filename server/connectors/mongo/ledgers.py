"""The MongoDB store's two ledgers a person reads: the conflicts (values that lost a merge, and
how each was resolved) and the quarantine (changes refused at the door), with the hub's cap on
what the quarantine keeps held without a transaction."""

from __future__ import annotations

from typing import Any, Sequence

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.database import Database

from server.connectors.shared.backend import Backend, LedgerRows, entry_bytes

CONFLICT_STATUS: dict[str, dict[str, Any]] = {
    "all": {}, "open": {"resolution": None}, "resolved": {"resolution": {"$ne": None}}}


class MongoLedgers(LedgerRows):
    def __init__(self, backend: Backend, db: Database):
        self.backend, self.db = backend, db  # the MongoDB backend it is part of, and its database

    def list_conflicts(self, limit: int = 100, status: str = "all") -> list[dict[str, Any]]:
        query = {"userId": self.backend.user_id, **CONFLICT_STATUS[status]}
        docs = self.db.conflicts.find(query, {"_id": 0, "userId": 0})
        newest = docs.sort([("detectedAt", DESCENDING), ("id", ASCENDING)]).limit(limit)
        return [{"resolution": None, **d} for d in newest]

    def get_conflict(self, conflict_id: str) -> dict[str, Any] | None:
        doc = self.db.conflicts.find_one({"userId": self.backend.user_id, "id": conflict_id}, {"_id": 0, "userId": 0})
        return {"resolution": None, **doc} if doc else None

    def resolve_conflict(self, conflict_id: str, resolution: dict[str, Any]) -> dict[str, Any] | None:
        self.db.conflicts.update_one({"userId": self.backend.user_id, "id": conflict_id, "resolution": None},
                                     {"$set": {"resolution": resolution}})
        return self.get_conflict(conflict_id)

    def forget_resolved_conflicts(self, before: str) -> int:
        query = {"userId": self.backend.user_id, "resolution.at": {"$lt": before}}
        return self.db.conflicts.delete_many(query).deleted_count

    def list_quarantine(self, limit: int = 100) -> list[dict[str, Any]]:
        docs = self.db.quarantine.find({"userId": self.backend.user_id}, {"_id": 0, "userId": 0, "size": 0})
        return list(docs.sort([("receivedAt", DESCENDING), ("id", ASCENDING)]).limit(limit))

    def release_quarantined(self, ids: list[str]) -> int:
        query = {"userId": self.backend.user_id, "id": {"$in": sorted(set(ids))}}
        return self.db.quarantine.delete_many(query).deleted_count

    def count_quarantine(self) -> int:
        return self.db.quarantine.count_documents({"userId": self.backend.user_id})

    def count_conflicts(self) -> int:
        return self.db.conflicts.count_documents({"userId": self.backend.user_id, "resolution": None})

    def keep(self, entries: Sequence[dict]) -> None:
        """Keep refused changes. A hub checked its cap before (the intake's `within_cap`), but without a
        transaction another request may have passed the same check at once: it counts again
        after storing, and takes back what this call stored if the two together went over (so
        the cap never overshoots; at worst both give way)."""
        uid = self.backend.user_id
        done = self.db.quarantine.bulk_write(
            [UpdateOne({"userId": uid, "id": q["id"]}, {"$setOnInsert": {**q, "userId": uid, "size": entry_bytes(q)}},
                       upsert=True) for q in entries], ordered=False)
        if self.backend.limits.quarantine_cap is None or not done.upserted_ids:
            return
        rows, size = self.quarantine_held()
        if self.backend.limits.over_cap(rows, size):
            self.db.quarantine.delete_many({"_id": {"$in": list(done.upserted_ids.values())}})

    def quarantine_held(self) -> tuple[int, int]:
        found = list(self.db.quarantine.aggregate([{"$match": {"userId": self.backend.user_id}},
                                                   {"$group": {"_id": None, "rows": {"$sum": 1},
                                                               "size": {"$sum": "$size"}}}]))
        return (found[0]["rows"], int(found[0]["size"])) if found else (0, 0)

