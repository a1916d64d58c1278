"""The SQLite store's schema and its transactions: numbered schema steps, the one class that
owns every BEGIN and COMMIT, the words for SQLite's failures a person can act on, and how rows
are read back as records and changes."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

import orjson

from server.changes import Change
from server.errors import StoreUnavailable
from server.records import CHILD_KINDS

if TYPE_CHECKING:
    from server.connectors.sql import SqlConnector

# Numbered, idempotent schema steps. Never edit a shipped step; append a new one.
SCHEMA_STEPS: list[tuple[int, str]] = [
    (1, """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS records (
            user_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL,
            course_id TEXT,
            fields TEXT NOT NULL, clocks TEXT NOT NULL,  -- clocks: {"c": field clocks, "b": bases}
            deleted INTEGER NOT NULL DEFAULT 0, dclock TEXT NOT NULL DEFAULT '',
            dbase TEXT NOT NULL DEFAULT '', v INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (user_id, kind, key)) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS records_by_course ON records (user_id, course_id, kind);
        CREATE INDEX IF NOT EXISTS records_live ON records (user_id, deleted, kind);
        CREATE TABLE IF NOT EXISTS changes (
            user_id TEXT NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL,
            hlc TEXT NOT NULL, kind TEXT NOT NULL, record_id TEXT NOT NULL, course_id TEXT,
            op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
            fields TEXT NOT NULL, bases TEXT NOT NULL,
            PRIMARY KEY (user_id, origin, seq)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS origins (
            user_id TEXT NOT NULL, origin TEXT NOT NULL, max_seq INTEGER NOT NULL,
            PRIMARY KEY (user_id, origin)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS conflicts (
            user_id TEXT NOT NULL, id TEXT NOT NULL, detected_at TEXT NOT NULL,
            body TEXT NOT NULL, PRIMARY KEY (user_id, id));
        CREATE INDEX IF NOT EXISTS conflicts_newest ON conflicts (user_id, detected_at);
        CREATE TABLE IF NOT EXISTS sync_state (
            user_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (user_id, key));
    """),
    # Every write rewrote this index's entry (one more page per commit) for one reader, the live
    # listing, which the primary key (user_id, kind, ...) serves as well.
    (2, "DROP INDEX IF EXISTS records_live;"),
    # Changes refused at the door (changes.check_change), kept with the reason for a person.
    (3, """
        CREATE TABLE IF NOT EXISTS quarantine (
            user_id TEXT NOT NULL, id TEXT NOT NULL, received_at TEXT NOT NULL,
            body TEXT NOT NULL, PRIMARY KEY (user_id, id));
        CREATE INDEX IF NOT EXISTS quarantine_newest ON quarantine (user_id, received_at);
    """),
    # A hub's devices: who may sync, as whom (a token's hash only), and which device owns which origin.
    (4, """
        CREATE TABLE IF NOT EXISTS hub_devices (
            device_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT);
        CREATE TABLE IF NOT EXISTS hub_origins (
            user_id TEXT NOT NULL, origin TEXT NOT NULL, device_id TEXT NOT NULL,
            PRIMARY KEY (user_id, origin)) WITHOUT ROWID;
    """),
]

def apply_schema_steps(conn: sqlite3.Connection) -> list[int]:
    """Inside a transaction: apply the steps not yet recorded; returns those applied."""
    applied: list[int] = []
    conn.execute("CREATE TABLE IF NOT EXISTS schema_steps (step INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT step FROM schema_steps")}
    for step, sql in SCHEMA_STEPS:
        if step in done:
            continue
        for statement in filter(str.strip, sql.split(";")):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_steps VALUES (?, datetime('now'))", (step,))
        applied.append(step)
    if applied:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {max(step for step, _ in SCHEMA_STEPS)}")
    return applied


class Transaction:
    """The one owner of transactions: optionally a lock of this process, then `begin` ... COMMIT,
    or a SAVEPOINT when already inside one. Driver errors pass through untranslated: the
    connector's public methods translate them (DatabaseConnector.driver_errors).
    A class rather than a generator: the writer section is on every write's path."""

    __slots__ = ("store", "begin", "lock", "conn", "nested")

    def __init__(self, store: SqlConnector, begin: str, lock: threading.RLock | None = None):
        self.store, self.begin, self.lock = store, begin, lock

    def __enter__(self) -> sqlite3.Connection:
        if self.lock is not None:
            self.lock.acquire()
        try:
            self.conn = conn = self.store._conn()
            self.nested = conn.in_transaction
            conn.execute("SAVEPOINT tx" if self.nested else self.begin)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise
        return conn

    def __exit__(self, exc_type, exc, tb) -> None:
        conn = self.conn
        try:
            if exc_type is None:
                conn.execute("RELEASE tx" if self.nested else "COMMIT")
            elif not conn.in_transaction:
                pass  # SQLite already rolled it back (a full disk, an I/O error): keep that error
            elif self.nested:
                conn.execute("ROLLBACK TO tx")
                conn.execute("RELEASE tx")
            else:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            if conn.in_transaction and not self.nested:
                conn.execute("ROLLBACK")
            raise
        finally:
            if self.lock is not None:
                self.lock.release()


# What a person can do something about, by SQLite's result code; the rest say only the class.
SQLITE_PROBLEMS = {
    "SQLITE_FULL": "the disk is full",
    "SQLITE_NOTADB": "the file is not a SQLite store",
    "SQLITE_CORRUPT": "the store file is damaged",
    "SQLITE_READONLY": "the store file is read-only",
    "SQLITE_CANTOPEN": "the store file cannot be opened",
    "SQLITE_IOERR": "the disk failed to read or write",
    "SQLITE_BUSY": "another program holds the store locked",
}


# Written into the file's header ("CoSy"), so another program's SQLite file is told apart
# before anything is written to it; user_version holds the newest schema step applied.
APPLICATION_ID = 0x436F5379
OUR_TABLES = {"meta", "records", "changes", "schema_steps"}
QUICK_CHECK_SECONDS = 2.0  # a big store is checked as far as this allows at start-up
log = logging.getLogger("server.store")


class StoreRefused(StoreUnavailable):
    """The store file is not one this code may open: refused before anything touches it."""

    code = "store_refused"


def check_store_file(path: str) -> None:
    """Refuse, with the file and the problem named, a file that is not a SQLite database, is
    another program's, has a schema newer than this code, or fails SQLite's quick check. Opens
    it read-only, so a refused file's bytes are unchanged. A missing or empty file passes."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return  # nothing yet, or not a file: opening it says what is wrong
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        problem = _file_problem(conn)
    except sqlite3.DatabaseError as exc:
        problem = f"is not a SQLite store this server can read ({exc})"
    finally:
        conn.close()
    if problem:
        raise StoreRefused(f"{path}: {problem}")


def _file_problem(conn: sqlite3.Connection) -> str | None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app_id not in (0, APPLICATION_ID):
        return f"belongs to another program (application_id {app_id:#x})"
    if app_id == 0 and tables and not OUR_TABLES <= tables:
        return "is another program's SQLite file (it has none of this server's tables)"
    newest = max((step for step, _ in SCHEMA_STEPS), default=0)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    stored = conn.execute("SELECT MAX(step) FROM schema_steps").fetchone()[0] if "schema_steps" in tables else 0
    if max(version, stored or 0) > newest:
        return f"has schema step {max(version, stored)}, newer than this server knows ({newest}): upgrade the server"
    return _quick_check(conn)


def _quick_check(conn: sqlite3.Connection) -> str | None:
    deadline = time.monotonic() + QUICK_CHECK_SECONDS
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.OperationalError:  # interrupted: a big file, checked only in part
        log.info("the store's quick check took over %.0f s and was cut short", QUICK_CHECK_SECONDS)
        return None
    finally:
        conn.set_progress_handler(None, 0)
    if result == "ok":
        return None
    # SQLite's report spans lines ("*** in database main ***", then the page): one line here.
    detail = " ".join(part for part in result.split() if part != "***")
    return f"is damaged (SQLite's quick check: {detail[:200]}); restore a backup or point SQLITE_PATH elsewhere"


loads = orjson.loads  # stored JSON is read on every request's path; orjson decodes it ~3x faster


# --- row layout ---------------------------------------------------------------------------
LOAD_CHUNK = 400  # keys per lookup query: 2 parameters each, well under SQLite's limit of 32,766
RECORD_COLS = "kind, id, course_id, fields, clocks, deleted, dclock, dbase, v, key"
CHANGE_COLS = "origin, seq, hlc, kind, record_id, course_id, op, fields, bases"
CHILD_MARKS = ", ".join("?" * len(CHILD_KINDS))  # one placeholder per kind of a course's children


def row_to_state(row: sqlite3.Row) -> dict[str, Any]:
    meta = loads(row[4])
    return {
        "kind": row[0], "id": row[1], "courseId": row[2], "fields": loads(row[3]),
        "clocks": meta["c"], "bases": meta["b"], "deleted": bool(row[5]),
        "dclock": row[6], "dbase": row[7], "v": row[8],
    }


def row_to_change(row: sqlite3.Row) -> Change:
    return {
        "origin": row[0], "seq": row[1], "hlc": row[2], "kind": row[3], "id": row[4],
        "courseId": row[5], "op": row[6], "fields": loads(row[7]), "bases": loads(row[8]),
    }


# FULL: a write that answered 2xx survives a power cut (an fsync of the WAL per commit). NORMAL:
# faster, and safe against a crash of the program, but the last commits before a power cut can
# vanish (SQLite's documentation of WAL mode).
SYNCHRONOUS_MODES = ("FULL", "NORMAL")
