"""SqlConnector: the store (shared/store.py) over SQLite's backend (backend.py)."""

from __future__ import annotations

from server.connectors.shared.store import Store
from server.connectors.sqlite.backend import SqlBackend
from server.connectors.sqlite.pool import Connections


class SqlConnector(Store):
    backend: SqlBackend

    def __init__(self, path: str, *, user_id: str | None = None, origin: str | None = None,
                 busy_timeout_ms: int = 10_000, synchronous: str = "FULL",
                 connections: Connections | None = None) -> None:
        super().__init__(SqlBackend(path, user_id=user_id, origin=origin, busy_timeout_ms=busy_timeout_ms,
                                    synchronous=synchronous, connections=connections))
        self.path = path
        self.pool = self.backend.pool  # a hub's per-user stores and its registry share it

    def migrate(self) -> list[int]:
        """Apply the schema steps not yet recorded. Running it twice is harmless."""
        return self.backend.migrate()
