"""The MongoDB store's compacted history: each origin's floor in its `origins` document,
dropping an origin's oldest changes up to it, and the records page by page in key order for a
snapshot. Each write is safe to repeat: a floor only rises, and it rises before anything goes."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from server.connectors.shared.backend import Backend, HistoryRows
from server.core.changes import STATE_KEYS, Change, Key
from server.core.errors import StateConflict

NO_ID = {"_id": False}


class MongoHistory(HistoryRows):
    def __init__(self, backend: Backend, db: Database):
        self.backend, self.db = backend, db  # the MongoDB backend it is part of, and its database

    def floors_of(self, origins: set[str] | None) -> dict[str, int]:
        query: dict[str, Any] = {"userId": self.backend.user_id, "floor": {"$gt": 0}}
        if origins is not None:
            query["origin"] = {"$in": sorted(origins)}
        looked = self.backend.looked()
        docs = self.db.origins.find(query, NO_ID) if looked is None else \
            [d for d in looked if (origins is None or d.get("origin") in origins) and type(d.get("floor")) is int
             and d["floor"] > 0]
        return {d["origin"]: d["floor"] for d in docs
                if isinstance(d.get("origin"), str) and type(d.get("floor")) is int}

    def compact_origin(self, origin: str, floor: int, limit: int) -> int:
        uid = self.backend.user_id
        # The floor first, never past the top: a reader below it is then sent the records,
        # never a log with a hole. Only what lies at or below the stored floor goes.
        doc = self.db.origins.find_one({"userId": uid, "origin": origin}, NO_ID)
        if doc is None or type(doc.get("maxSeq")) is not int:
            return 0
        held = max(min(floor, doc["maxSeq"]), doc.get("floor") or 0)
        self.db.origins.update_one({"userId": uid, "origin": origin}, {"$max": {"floor": held}})
        first = self.db.changes.find_one({"userId": uid, "origin": origin}, {"seq": 1}, sort=[("seq", ASCENDING)])
        if first is None or type(first.get("seq")) is not int or first["seq"] > held:
            return 0
        top = min(held, first["seq"] + limit - 1)
        return self.db.changes.delete_many({"userId": uid, "origin": origin, "seq": {"$lte": top}}).deleted_count

    def records_after(self, after: Key | None, limit: int) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"userId": self.backend.user_id}
        if after is not None:
            query["$or"] = [{"kind": after[0], "key": {"$gt": after[1]}}, {"kind": {"$gt": after[0]}}]
        docs = self.db.records.find(query, NO_ID).sort([("kind", ASCENDING), ("key", ASCENDING)]).limit(limit)
        return [{k: d.get(k) for k in STATE_KEYS} for d in docs]

    def log_sizes(self) -> dict[str, int]:
        totals = list(self.db.origins.aggregate([{"$group": {"_id": None, "top": {"$sum": "$maxSeq"},
                                                               "floor": {"$sum": "$floor"}}}]))
        top, floor = (totals[0]["top"], totals[0]["floor"]) if totals else (0, 0)
        return {"changes": max(0, int(top) - int(floor)), "compacted": int(floor)}

    def hold(self, held: dict[str, int]) -> None:
        if held:
            self.db.origins.bulk_write([UpdateOne({"userId": self.backend.user_id, "origin": o},
                                                  {"$max": {"maxSeq": seq, "floor": seq}}, upsert=True)
                                        for o, seq in sorted(held.items())], ordered=False)

    def append(self, origin: str, changes: list[Change]) -> list[Change]:
        # No transaction: each try numbers from the newest change logged, and a number another
        # process took first (the unique index) sends the rest round again from past it.
        uid, rest = self.backend.user_id, list(changes)
        logged: list[Change] = []
        for _ in range(20):
            last = self.db.changes.find_one({"userId": uid, "origin": origin}, {"seq": 1}, sort=[("seq", DESCENDING)])
            top = max(self.backend.tops_of({origin}).get(origin, 0), (last or {}).get("seq") or 0)
            numbered = [{**c, "origin": origin, "seq": top + n} for n, c in enumerate(rest, 1)]
            try:
                self.db.changes.insert_many([{**c, "userId": uid} for c in numbered], ordered=True)
                logged, rest = logged + numbered, []
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
                done = exc.details.get("nInserted", 0)
                logged, rest = logged + numbered[:done], rest[done:]
            if not rest:
                self.backend.complete(logged)
                return logged
        raise StateConflict("The hub kept numbering this heal's changes elsewhere; try again.", code="busy")
