"""Transactions on a SQLite connection: one class owns every BEGIN, COMMIT and ROLLBACK of the
store (a SAVEPOINT when already inside one), and `atomic()` makes one, as sqlite-utils'
`db.atomic()` does. Knows nothing of records or changes."""

from __future__ import annotations

import sqlite3
from typing import Callable, Protocol


class Lock(Protocol):
    """A lock of this process (threading.RLock, sql_pool.TurnLock)."""

    def acquire(self) -> bool: ...

    def release(self) -> None: ...


class Transaction:
    """The one owner of transactions: optionally a lock of this process, then `begin` ... COMMIT,
    or a SAVEPOINT when already inside one. Driver errors pass through untranslated: the
    connector's public methods translate them (DatabaseConnector.driver_errors).
    A class rather than a generator: the writer section is on every write's path."""

    __slots__ = ("connect", "begin", "lock", "conn", "nested")

    def __init__(self, connect: Callable[[], sqlite3.Connection], begin: str, lock: Lock | None = None):
        self.connect, self.begin, self.lock = connect, begin, lock

    def __enter__(self) -> sqlite3.Connection:
        if self.lock is not None:
            self.lock.acquire()
        try:
            self.conn = conn = self.connect()
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


def atomic(connect: Callable[[], sqlite3.Connection], *, immediate: bool = False,
           lock: Lock | None = None) -> Transaction:
    """A transaction on the connection `connect` gives: BEGIN IMMEDIATE (take the write lock at
    once) when `immediate` or when a process lock is held, else a deferred BEGIN."""
    return Transaction(connect, "BEGIN IMMEDIATE" if immediate or lock is not None else "BEGIN", lock)
