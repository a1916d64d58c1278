"""The SQLite connections of one store file in one process: one per thread, opened on first use
with the store's pragmas, and the process's write lock for that file.

Every connector on the file shares one pool (a hub server keeps a connector per user on one
file), so the open files grow with the threads that touch it, never with users times threads."""

from __future__ import annotations

import sqlite3
import threading
from collections import deque

# FULL: a write that answered 2xx survives a power cut (an fsync of the WAL per commit). NORMAL:
# faster, and safe against a crash of the program, but the last commits before a power cut can
# vanish (SQLite's documentation of WAL mode).
SYNCHRONOUS_MODES = ("FULL", "NORMAL")


class Connections:
    def __init__(self, path: str, *, busy_timeout_ms: int = 10_000, synchronous: str = "FULL") -> None:
        self.path, self.busy_timeout_ms, self.synchronous = path, busy_timeout_ms, synchronous
        self.write_lock = TurnLock()  # queue our own threads here, not in SQLite's busy loop
        self._local = threading.local()
        self._open: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self.checked = False  # the file checked at the door and its schema steps applied (SqlConnector)

    def get(self) -> sqlite3.Connection:
        """This thread's connection, opened now if it has none."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error:
                conn.close()
                raise
            self._local.conn = conn
            with self._lock:
                # A thread that has ended cannot use its connection again: close it now, so a
                # server whose threads come and go does not keep their files open.
                ended = [c for t, c in self._open if not t.is_alive()]
                self._open = [(t, c) for t, c in self._open if t.is_alive()]
                self._open.append((threading.current_thread(), conn))
            _close_all(ended)
        return conn

    def replace_mine(self, conn) -> None:
        """Put `conn` in place of this thread's connection (tests: a store that fails)."""
        self.get()
        self._local.conn = conn

    def close(self) -> None:
        """Close this thread's connection and those of threads that have ended. A connection
        another live thread may be using right now is left to be freed with that thread:
        closing it under a running statement can crash the interpreter."""
        me = threading.current_thread()
        with self._lock:
            closing = [c for t, c in self._open if t is me or not t.is_alive()]
            self._open = [(t, c) for t, c in self._open if not (t is me or not t.is_alive())]
        _close_all(closing)
        self._local.__dict__.pop("conn", None)


class TurnLock:
    """A reentrant lock handed over in the order it was asked for. A thread that releases it
    and asks again at once (a hub writing a large push in turns) goes behind whoever waits,
    where threading.RLock lets it take the lock again before a waiting thread even wakes."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._queue: deque[tuple[int, threading.Lock]] = deque()

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me or (self._owner is None and not self._queue):
                self._owner, self._depth = me, self._depth + 1
                return True
            handed = threading.Lock()
            handed.acquire()
            self._queue.append((me, handed))
        handed.acquire()  # released by the owner as it hands the lock over (release)
        return True

    def release(self) -> None:
        with self._mutex:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a TurnLock this thread does not hold")
            self._depth -= 1
            if self._depth:
                return
            if self._queue:
                self._owner, handed = self._queue.popleft()
                self._depth = 1
                handed.release()
            else:
                self._owner = None

    def queued(self) -> int:
        """How many threads wait for the lock."""
        with self._mutex:
            return len(self._queue)

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()


def _close_all(conns: list[sqlite3.Connection]) -> None:
    for conn in conns:
        try:
            conn.close()
        except sqlite3.Error:
            pass
