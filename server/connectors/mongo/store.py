"""MongoConnector: the store (shared/store.py) over MongoDB's backend (backend.py)."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from server.connectors.mongo.backend import MongoBackend
from server.connectors.shared.store import Store


class MongoConnector(Store):
    backend: MongoBackend

    def __init__(self, uri: str = "mongodb://127.0.0.1:27017", db_name: str = "coursesync", *,
                 user_id: str | None = None, origin: str | None = None,
                 client: Any = None, timeout_ms: int = 3000) -> None:
        super().__init__(MongoBackend(uri, db_name, user_id=user_id, origin=origin, client=client,
                                      timeout_ms=timeout_ms))
        self.uri, self.db_name, self.timeout_ms = uri, db_name, timeout_ms

    @property
    def client(self) -> Any:
        """The driver's client (made by connect unless one was given): a hub's per-user stores share it."""
        return self.backend.client

    @client.setter
    def client(self, client: Any) -> None:
        self.backend.client = client

    @property
    def db(self) -> Database:
        """The connected database: the hub's device registry and watcher keep to it."""
        return self.backend.db

    @db.setter
    def db(self, db: Database) -> None:
        self.backend.use_database(db)
