"""The SQLite store's two ledgers a person reads: the conflicts (values that lost a merge, and
how each was resolved) and the quarantine (changes refused at the door), on the store's pool."""

from __future__ import annotations

from typing import Any

from server.connectors.shared.backend import Backend, LedgerRows
from server.connectors.sqlite.atomic import atomic
from server.connectors.sqlite.pool import Connections
from server.connectors.sqlite.rows import compact_json, loads

# `status` of list_conflicts: which entries, by whether a person has resolved them.
WHERE_STATUS = {"all": "", "open": " AND json_extract(body, '$.resolution') IS NULL",
                "resolved": " AND json_extract(body, '$.resolution') IS NOT NULL"}


class SqlLedgers(LedgerRows):
    def __init__(self, backend: Backend, pool: Connections):
        self.backend, self.pool = backend, pool  # the SQLite backend it is part of, and its connections

    def list_conflicts(self, limit: int = 100, status: str = "all") -> list[dict[str, Any]]:
        rows = self.pool.get().execute(
            f"SELECT body FROM conflicts WHERE user_id = ?{WHERE_STATUS[status]} ORDER BY detected_at DESC, id LIMIT ?",
            (self.backend.user_id, limit),
        )
        return [{"resolution": None, **loads(r[0])} for r in rows]

    def count_conflicts(self) -> int:
        return self.pool.get().execute(f"SELECT COUNT(*) FROM conflicts WHERE user_id = ?{WHERE_STATUS['open']}",
                                    (self.backend.user_id,)).fetchone()[0]

    def get_conflict(self, conflict_id: str) -> dict[str, Any] | None:
        row = self.pool.get().execute("SELECT body FROM conflicts WHERE user_id = ? AND id = ?",
                                   (self.backend.user_id, conflict_id)).fetchone()
        return {"resolution": None, **loads(row[0])} if row else None

    def resolve_conflict(self, conflict_id: str, resolution: dict[str, Any]) -> dict[str, Any] | None:
        with atomic(self.pool.get, immediate=True) as conn:
            row = conn.execute("SELECT body FROM conflicts WHERE user_id = ? AND id = ?",
                               (self.backend.user_id, conflict_id)).fetchone()
            if row is None:
                return None
            entry = {"resolution": None, **loads(row[0])}
            if entry["resolution"] is None:
                entry["resolution"] = resolution
                conn.execute("UPDATE conflicts SET body = ? WHERE user_id = ? AND id = ?",
                             (compact_json(entry), self.backend.user_id, conflict_id))
            return entry

    def forget_resolved_conflicts(self, before: str) -> int:
        with atomic(self.pool.get, immediate=True) as conn:
            return conn.execute("DELETE FROM conflicts WHERE user_id = ? AND json_extract(body, '$.resolution.at') < ?",
                                (self.backend.user_id, before)).rowcount

    def list_quarantine(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.pool.get().execute(
            "SELECT body FROM quarantine WHERE user_id = ? ORDER BY received_at DESC, id LIMIT ?",
            (self.backend.user_id, limit))
        return [loads(r[0]) for r in rows]

    def release_quarantined(self, ids: list[str]) -> int:
        with atomic(self.pool.get, immediate=True) as conn:
            uid = self.backend.user_id
            return sum(conn.execute("DELETE FROM quarantine WHERE user_id = ? AND id = ?", (uid, i)).rowcount
                       for i in set(ids))

    def count_quarantine(self) -> int:
        query = "SELECT COUNT(*) FROM quarantine WHERE user_id = ?"
        return self.pool.get().execute(query, (self.backend.user_id,)).fetchone()[0]

    def quarantine_held(self) -> tuple[int, int]:
        rows, size = self.pool.get().execute(
            "SELECT COUNT(*), TOTAL(length(CAST(body AS BLOB))) FROM quarantine WHERE user_id = ?",
            (self.backend.user_id,)).fetchone()
        return rows, int(size)
