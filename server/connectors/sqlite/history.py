"""The SQLite store's compacted history: each origin's floor in the origins table, dropping an
origin's oldest changes up to it, and the records page by page in key order for a snapshot."""

from __future__ import annotations

import sqlite3
from typing import Any

from server.connectors.shared.backend import Backend, HistoryRows
from server.connectors.sqlite.pool import Connections
from server.connectors.sqlite.rows import RECORD_COLS, origins_column, row_to_state
from server.core.changes import Change, Key


def own_top(conn: sqlite3.Connection, user_id: str, origin: str) -> int:
    """The store's own origin's newest seq, read from the log itself (the origins table lists
    foreign origins only, until the own origin is first compacted)."""
    row = conn.execute("SELECT MAX(seq) FROM changes WHERE user_id = ? AND origin = ?", (user_id, origin)).fetchone()
    return row[0] or 0


class SqlHistory(HistoryRows):
    def __init__(self, backend: Backend, pool: Connections):
        self.backend, self.pool = backend, pool  # the SQLite backend it is part of, and its connections

    def floors_of(self, origins: set[str] | None) -> dict[str, int]:
        conn = self.pool.get()
        if origins is None:
            return dict(conn.execute("SELECT origin, floor FROM origins WHERE user_id = ? AND floor > 0",
                                     (self.backend.user_id,)))
        return origins_column(conn, self.backend.user_id, "floor", origins)

    def compact_origin(self, origin: str, floor: int, limit: int) -> int:
        with self.backend.writer():
            conn = self.pool.get()
            if origin == self.backend.origin:  # the own origin has a row (its floor) once it is first compacted
                conn.execute("INSERT INTO origins (user_id, origin, max_seq) VALUES (?, ?, ?) ON CONFLICT (user_id, "
                             "origin) DO UPDATE SET max_seq = max(max_seq, excluded.max_seq)",
                             (self.backend.user_id, origin, own_top(conn, self.backend.user_id, origin)))
            # The floor first, never past the top: a reader below it is then sent the records,
            # never a log with a hole. Only what lies at or below the stored floor goes.
            conn.execute("UPDATE origins SET floor = max(floor, min(?, max_seq)) WHERE user_id = ? AND origin = ?",
                         (floor, self.backend.user_id, origin))
            row = conn.execute("SELECT floor, (SELECT MIN(seq) FROM changes WHERE user_id = ? AND origin = ?) "
                               "FROM origins WHERE user_id = ? AND origin = ?",
                               (self.backend.user_id, origin, self.backend.user_id, origin)).fetchone()
            if row is None or row[1] is None or row[1] > row[0]:
                return 0
            held, low = row
            return conn.execute("DELETE FROM changes WHERE user_id = ? AND origin = ? AND seq BETWEEN ? AND ?",
                                (self.backend.user_id, origin, low, min(held, low + limit - 1))).rowcount

    def records_after(self, after: Key | None, limit: int) -> list[dict[str, Any]]:
        kind, key = after or ("", "")
        rows = self.pool.get().execute(f"SELECT {RECORD_COLS} FROM records WHERE user_id = ? AND (kind, key) > (?, ?) "
                                       "ORDER BY kind, key LIMIT ?", (self.backend.user_id, kind, key, limit))
        return [row_to_state(r) for r in rows]

    def log_sizes(self) -> dict[str, int]:
        above, below = self.pool.get().execute("SELECT TOTAL(max_seq - floor), TOTAL(floor) FROM origins").fetchone()
        return {"changes": int(above), "compacted": int(below)}

    def hold(self, held: dict[str, int]) -> None:
        self.pool.get().executemany(
            "INSERT INTO origins (user_id, origin, max_seq, floor) VALUES (?, ?, ?, ?) ON CONFLICT (user_id, origin) "
            "DO UPDATE SET max_seq = max(max_seq, excluded.max_seq), floor = max(floor, excluded.floor)",
            [(self.backend.user_id, o, seq, seq) for o, seq in sorted(held.items())])

    def append(self, origin: str, changes: list[Change]) -> list[Change]:
        # Inside the writer's transaction (BEGIN IMMEDIATE): the top read here is the one written after.
        top = self.backend.tops_of({origin}).get(origin, 0)
        numbered = [{**c, "origin": origin, "seq": top + n} for n, c in enumerate(changes, 1)]
        self.backend.persist(numbered, [], [], own=False, bookmarks=None)
        return numbered
