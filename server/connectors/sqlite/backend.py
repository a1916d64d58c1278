"""SQLite's backend: the device's own store (and an embedded hub). WAL, a busy timeout, one
connection per thread, one transaction class that owns every BEGIN and COMMIT, and schema steps
recorded in the database. A batch is one transaction: all of it, or none of it."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import uuid
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Sequence

from server.connectors.shared.backend import Backend, Limits
from server.connectors.sqlite.atomic import Transaction
from server.connectors.sqlite.atomic import atomic as transaction
from server.connectors.sqlite.files import check_store_file, describe, make_folder
from server.connectors.sqlite.history import SqlHistory, own_top
from server.connectors.sqlite.ledgers import SqlLedgers
from server.connectors.sqlite.pool import SYNCHRONOUS_MODES, Connections
from server.connectors.sqlite.rows import (
    CHANGE_COLS,
    CHILD_MARKS,
    LOAD_CHUNK,
    RECORD_COLS,
    compact_json,
    loads,
    origins_column,
    row_to_change,
    row_to_state,
)
from server.connectors.sqlite.schema import apply_schema_steps
from server.core.changes import Change, Cursor, Key, new_origin, seq_spans, state_key
from server.core.clock import ZERO, HybridClock
from server.core.errors import StoreUnavailable
from server.core.records import CHILD_KINDS, COURSE
from server.core.sequences import run_after

log = logging.getLogger("server.sync")
ORIGIN_KEY = "origin"  # the meta key of the store's own origin (schema step 7 renamed it from "device_id")


class SqlBackend(Backend):
    driver_errors = (sqlite3.Error, OSError)
    store_kind = "sql"

    def __init__(self, path: str, *, user_id: str | None = None, origin: str | None = None,
                 busy_timeout_ms: int = 10_000, synchronous: str = "FULL",
                 connections: Connections | None = None) -> None:
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        self.path = path
        self._want_user, self._want_origin = user_id, origin
        # Another connector's pool (a hub's per-user stores on one file) is shared, not owned.
        self._owns_pool = connections is None
        self.pool = connections or Connections(path, busy_timeout_ms=busy_timeout_ms, synchronous=synchronous)
        self._write_lock = self.pool.write_lock
        self.user_id = user_id or ""
        self.origin = origin or ""
        self.limits = Limits()
        self.history = SqlHistory(self, self.pool)
        self.ledgers = SqlLedgers(self, self.pool)

    # --- connection and transactions -----------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        return self.pool.get()

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        return describe(exc)

    def _atomic(self, immediate: bool = False) -> Transaction:
        """A transaction (BEGIN IMMEDIATE when `immediate`): `with store._atomic() as conn`."""
        return transaction(self.pool.get, immediate=immediate)

    def writer(self) -> Transaction:
        """The writer section: this process's write lock, then BEGIN IMMEDIATE."""
        return transaction(self.pool.get, lock=self._write_lock)

    def reader(self) -> AbstractContextManager[sqlite3.Connection]:
        # A read inside a write already sees one snapshot; only a bare read needs a transaction.
        conn = self._conn()
        return nullcontext(conn) if conn.in_transaction else self._atomic()

    def connect(self) -> list[Change]:
        try:
            return self._open()
        except self.driver_errors as exc:  # at start-up: with what to do
            raise describe(exc, opening=True) from exc

    def _open(self) -> list[Change]:
        if not self.pool.checked:  # once per file and process: a hub opens a store per user on it
            directory = os.path.dirname(os.path.abspath(self.path))
            make_folder(directory)
            check_store_file(self.path)  # before the first write (even switching to WAL writes)
            with self._write_lock:
                self.migrate()
            self.pool.checked = True
        with self._atomic() as conn:  # most opens write nothing, and then take no write lock
            if self._take_meta(conn, dict(conn.execute("SELECT key, value FROM meta").fetchall()), write=False):
                return []  # one transaction per write: nothing is ever left half done
        with self._write_lock, self._atomic(immediate=True) as conn:
            self._take_meta(conn, dict(conn.execute("SELECT key, value FROM meta").fetchall()), write=True)
        return []

    def _take_meta(self, conn: sqlite3.Connection, meta: dict, *, write: bool) -> bool:
        """This store's user, origin and clock from the file's meta; False (and nothing taken)
        when the meta must be written first and `write` is not allowed."""
        previous = json.loads(meta.get(ORIGIN_KEY, "null"))
        origin = self._want_origin or previous or new_origin(self.store_kind)
        if not write and (previous != origin or "epoch" not in meta):
            return False
        self.user_id = self._want_user or json.loads(meta.get("owner", "null")) or "me"
        # The newest stamp seen: own writes are in the change log, foreign ones in meta.
        last = json.loads(meta.get("hlc", '""'))
        if previous and previous != origin:
            # The old id's changes become foreign ones. The origins table lists foreign
            # origins only: without this row the part not yet pushed would never be.
            conn.execute(
                "INSERT INTO origins (user_id, origin, max_seq) SELECT user_id, origin, MAX(seq) FROM changes "
                "WHERE origin = ? GROUP BY user_id ON CONFLICT (user_id, origin) DO UPDATE SET "
                "max_seq = max(max_seq, excluded.max_seq)", (previous,))
            newest = conn.execute("SELECT MAX(hlc) FROM changes WHERE origin = ?", (previous,)).fetchone()[0]
            last = max(last, newest or "")
            self._set_meta(conn, "hlc", last)
        if previous != origin:
            self._set_meta(conn, ORIGIN_KEY, origin)
        if "epoch" not in meta:
            self._set_meta(conn, "epoch", uuid.uuid4().hex)
        self.origin = origin
        row = conn.execute("SELECT hlc FROM changes WHERE user_id = ? AND origin = ? ORDER BY seq DESC LIMIT 1",
                           (self.user_id, origin)).fetchone()
        self.clock = HybridClock(origin, max(last, row[0] if row else ZERO))
        return True

    def migrate(self) -> list[int]:
        """Apply the schema steps not yet recorded. Running it twice is harmless."""
        with self._atomic(immediate=True) as conn:
            return apply_schema_steps(conn)

    def close(self) -> None:
        """Close this thread's connection and those of threads that have ended (see
        Connections.close); a shared pool is left to its owner."""
        if self._owns_pool:
            self.pool.close()

    def ping(self) -> bool:
        try:
            self._conn().execute("SELECT 1").fetchone()
            return True
        except Exception:
            return False

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def set_owner(self, user_id: str) -> None:
        """Remember whose data this store holds (the seeder does), for a server without USER_ID."""
        with self.writer():
            self._set_meta(self._conn(), "owner", user_id)

    # --- primitives -----------------------------------------------------------------------
    @staticmethod
    def _load_sql(pairs: int) -> str:
        # The pairs as a subquery over VALUES: the planner then searches the primary key once per
        # pair. Written as a bare `IN (VALUES ...)` or as an OR of "kind = ? AND key = ?" terms, it
        # scans every record of the user instead (tests/connectors/test_sql.py checks the plan).
        return (f"SELECT {RECORD_COLS} FROM records WHERE user_id = ? AND (kind, key) IN "
                f"(SELECT column1, column2 FROM (VALUES {','.join(['(?,?)'] * pairs)}))")

    def load(self, keys: set[Key]) -> dict[Key, dict[str, Any]]:
        ordered = sorted(keys)
        out: dict[Key, dict[str, Any]] = {}
        conn = self._conn()
        for start in range(0, len(ordered), LOAD_CHUNK):
            chunk = ordered[start:start + LOAD_CHUNK]
            params = [self.user_id]
            for kind, key in chunk:
                params += (kind, key)
            rows = conn.execute(self._load_sql(len(chunk)), params)
            out.update({(r[0], r[9]): row_to_state(r) for r in rows})
        return out

    def load_children(self, course_ids: set[str]) -> dict[Key, dict[str, Any]]:
        rows = self._conn().execute(
            f"SELECT {RECORD_COLS} FROM records WHERE user_id = ? AND kind IN ({CHILD_MARKS}) AND "
            "course_id IN (SELECT value FROM json_each(?))",
            (self.user_id, *CHILD_KINDS, json.dumps(sorted(course_ids))),
        )
        return {(r[0], r[9]): row_to_state(r) for r in rows}

    def load_every_live_record(self) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT kind, id, course_id, fields FROM records WHERE user_id = ? AND deleted = 0 "
            f"AND kind IN (?, {CHILD_MARKS})",
            (self.user_id, COURSE, *CHILD_KINDS),
        )
        return [{"kind": r[0], "id": r[1], "courseId": r[2], "fields": loads(r[3])} for r in rows]

    def _follow_origin(self, conn: sqlite3.Connection) -> None:
        """Take on the origin that another process sharing this file moved the store to
        (restart_origin, run by the sync process): one primary-key read."""
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (ORIGIN_KEY,)).fetchone()
        stored = loads(row[0]) if row else None
        if stored and stored != self.origin:
            log.warning("this store's origin moved on from %s to %s", self.origin, stored)
            self._adopt_origin(stored)

    def _adopt_origin(self, origin: str) -> None:
        self.origin = origin
        self.clock = HybridClock(origin, self.clock.last)

    def refresh_origin(self) -> None:
        self._follow_origin(self._conn())

    def retire_tail(self, origin: str, first_seq: int, new: str, moved: list[Change], states: list[dict]) -> None:
        conn = self._conn()  # inside the writer's transaction: all of it, or none of it
        conn.execute("DELETE FROM changes WHERE user_id = ? AND origin = ? AND seq >= ?",
                     (self.user_id, origin, first_seq))
        if first_seq > 1:  # what is left of the old origin is a foreign origin's log now
            conn.execute("INSERT INTO origins (user_id, origin, max_seq) VALUES (?, ?, ?) "
                         "ON CONFLICT (user_id, origin) DO UPDATE SET max_seq = excluded.max_seq",
                         (self.user_id, origin, first_seq - 1))
        self._set_meta(conn, "hlc", self.clock.last)  # the old origin's stamps count as foreign ones
        self._set_meta(conn, ORIGIN_KEY, new)
        self._adopt_origin(new)
        self.persist(moved, states, [], own=True, bookmarks=None)

    def next_seq(self) -> int:
        # Read inside the writer's transaction from the change log itself (a primary-key probe, no
        # page written: the origins table lists foreign origins only, see _tops), with the newest
        # stamps other connections stored: a sync process pulling into this file, a CLI command.
        self._follow_origin(self._conn())
        foreign, seq, own = self._conn().execute(
            "SELECT (SELECT value FROM meta WHERE key = 'hlc'), c.seq, c.hlc FROM (SELECT 1) LEFT JOIN "
            "(SELECT seq, hlc FROM changes WHERE user_id = ? AND origin = ? ORDER BY seq DESC LIMIT 1) AS c",
            (self.user_id, self.origin)).fetchone()
        self.clock.observe(max(loads(foreign) if foreign else ZERO, own or ZERO))
        return (seq or 0) + 1

    def _tops(self, conn: sqlite3.Connection) -> list[tuple[str, int]]:
        """Every origin in the log with its newest sequence number, sorted by origin."""
        self._follow_origin(conn)
        tops = dict(conn.execute("SELECT origin, max_seq FROM origins WHERE user_id = ?", (self.user_id,)))
        own = own_top(conn, self.user_id, self.origin)
        if own:
            tops[self.origin] = own
        return sorted(tops.items())

    def tops_of(self, origins: set[str]) -> dict[str, int]:
        conn = self._conn()
        self._follow_origin(conn)
        tops = origins_column(conn, self.user_id, "max_seq", origins)
        if self.origin in origins:
            own = own_top(conn, self.user_id, self.origin)
            if own:
                tops[self.origin] = own
        return tops

    def known(self, changes: list[Change], whole: bool = False) -> dict[tuple[str, int], Any]:
        known: dict[tuple[str, int], Any] = {}
        conn = self._conn()
        cols = CHANGE_COLS if whole else "origin, seq, hlc"
        for origin, (low, high) in seq_spans(changes).items():  # one primary-key range each
            rows = conn.execute(f"SELECT {cols} FROM changes WHERE user_id = ? AND origin = ? AND seq BETWEEN ? AND ?",
                                (self.user_id, origin, low, high))
            known.update(((origin, r[1]), row_to_change(r) if whole else r[2]) for r in rows)
        return known

    def persist(self, changes: list[Change], states: list[dict], conflicts: list[dict], *, own: bool,
                bookmarks: dict[str, Any] | None, quarantined: Sequence[dict] = ()) -> None:
        conn = self._conn()
        uid = self.user_id
        conn.executemany(
            f"INSERT OR IGNORE INTO changes (user_id, {CHANGE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(uid, c["origin"], c["seq"], c["hlc"], c["kind"], c["id"], c.get("courseId"), c["op"],
              compact_json(c["fields"]), compact_json(c["bases"])) for c in changes],
        )
        if not own:  # our own origin's top is read from the change log (_next_seq)
            conn.executemany(
                "INSERT INTO origins (user_id, origin, max_seq) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id, origin) DO UPDATE SET max_seq = max(max_seq, excluded.max_seq)",
                [(uid, o, high) for o, (_, high) in seq_spans(changes).items()],
            )
        conn.executemany(
            f"INSERT INTO records (user_id, {RECORD_COLS}) VALUES (?,?,?,?,?,?,?,?,?,1,?) "
            "ON CONFLICT (user_id, kind, key) DO UPDATE SET "  # course_id is part of the key: never set again
            "fields = excluded.fields, clocks = excluded.clocks, "
            "deleted = excluded.deleted, dclock = excluded.dclock, dbase = excluded.dbase, v = v + 1",
            [(uid, s["kind"], s["id"], s.get("courseId"), compact_json(s["fields"]),
              compact_json({"c": s["clocks"], "b": s["bases"]}), int(s["deleted"]),
              s["dclock"], s["dbase"], state_key(s)[1]) for s in states],
        )
        if conflicts:
            conn.executemany(
                "INSERT OR IGNORE INTO conflicts VALUES (?, ?, ?, ?)",
                [(uid, c["id"], c["detectedAt"], compact_json(c)) for c in conflicts],
            )
        if quarantined:
            conn.executemany("INSERT OR IGNORE INTO quarantine VALUES (?, ?, ?, ?)",
                             [(uid, q["id"], q["receivedAt"], compact_json(q)) for q in quarantined])
        for key, value in (bookmarks or {}).items():
            self._put_bookmark(conn, key, value)
        if not own:  # own stamps are in the change log already; remember how far foreign ones went
            self._set_meta(conn, "hlc", self.clock.last)

    def batch(self) -> Transaction:
        return self.writer()

    # --- sync reads -----------------------------------------------------------------------
    def changes_since(self, cursor: Cursor, limit: int, *, exclude_origin: str | None = None,
                      only_origin: str | None = None) -> list[Change]:
        out: list[Change] = []
        with self.reader() as conn:
            for origin, top in self._tops(conn):
                after = cursor.get(origin, 0)
                if origin == exclude_origin or (only_origin and origin != only_origin) or top <= after \
                        or len(out) >= limit:
                    continue
                rows = conn.execute(
                    f"SELECT {CHANGE_COLS} FROM changes WHERE user_id = ? AND origin = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?", (self.user_id, origin, after, limit - len(out)),
                )
                out.extend(run_after(after, ((r[1], row_to_change(r)) for r in rows)))
        return out

    def pending_since(self, cursor: Cursor, origin: str | None = None) -> tuple[int, str | None]:
        count, oldest = 0, None
        with self.reader() as conn:
            for o, top in self._tops(conn):
                after = cursor.get(o, 0)
                if (origin and o != origin) or top <= after:
                    continue
                n, first = conn.execute(
                    "SELECT COUNT(*), MIN(hlc) FROM changes WHERE user_id = ? AND origin = ? AND seq > ?",
                    (self.user_id, o, after),
                ).fetchone()
                count += n
                oldest = first if oldest is None or (first and first < oldest) else oldest
        return count, oldest

    def get_bookmark(self, key: str) -> Any:
        row = self._conn().execute(
            "SELECT value FROM sync_state WHERE user_id = ? AND key = ?", (self.user_id, key)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def set_bookmark(self, key: str, value: Any) -> None:
        with self.writer() as conn:
            self._put_bookmark(conn, key, value)

    def _put_bookmark(self, conn: sqlite3.Connection, key: str, value: Any) -> None:
        conn.execute("INSERT OR REPLACE INTO sync_state VALUES (?, ?, ?)", (self.user_id, key, json.dumps(value)))

    def hub_epoch(self) -> str:
        row = self._conn().execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        return json.loads(row[0])

    # --- compacted history -----------------------------------------------------------------
    def every_top(self) -> dict[str, int]:
        return dict(self._tops(self._conn()))

    def dump_records(self) -> dict[Key, dict[str, Any]]:
        rows = self._conn().execute(f"SELECT {RECORD_COLS} FROM records WHERE user_id = ?", (self.user_id,))
        return {(r[0], r[9]): row_to_state(r) for r in rows}

    def is_empty(self) -> bool:
        conn = self._conn()
        return not any(conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() for t in ("records", "changes"))

    def wipe(self) -> dict[str, int]:
        removed: dict[str, int] = {}
        with self.writer():
            conn = self._conn()
            for table in ("records", "changes", "origins", "conflicts", "quarantine", "sync_state"):
                removed[table] = conn.execute(f"DELETE FROM {table}").rowcount
            conn.execute("DELETE FROM meta WHERE key IN ('owner', 'hlc')")
            self._set_meta(conn, "epoch", uuid.uuid4().hex)
            if not self._want_origin:
                # Sequence numbers restart at 1, so the device must not reuse its old origin.
                self._adopt_origin(new_origin(self.store_kind))
                self._set_meta(conn, ORIGIN_KEY, self.origin)
        return removed
