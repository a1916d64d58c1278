"""The SQLite store's schema and its transactions: numbered schema steps, the one class that
owns every BEGIN and COMMIT, and the words for SQLite's failures a person can act on."""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING

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
]

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
