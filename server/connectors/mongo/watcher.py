"""What a hub's watcher reads of a MongoDB hub: the waiting users' origins, by the index on
(userId, origin), never a scan per waiting device."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

MONGO_WATCH_SECONDS = 0.25  # an indexed query of the waiting users' origins
CHUNK = 500  # users per query


class MongoWatcher:
    interval = MONGO_WATCH_SECONDS

    def __init__(self, db: Database):
        self.db = db

    def marker(self) -> Any:
        return None  # no cheap signal on a standalone server: look every interval

    def tops(self, users: list[str]) -> dict[str, tuple]:
        out: dict[str, list] = {}
        for i in range(0, len(users), CHUNK):
            docs = self.db.origins.find({"userId": {"$in": users[i:i + CHUNK]}},
                                        {"_id": 0, "userId": 1, "origin": 1, "maxSeq": 1})
            for d in docs:
                out.setdefault(d.get("userId"), []).append((str(d.get("origin")), d.get("maxSeq")))
        return {u: tuple(sorted(v)) for u, v in out.items()}

    def close(self) -> None:
        pass
