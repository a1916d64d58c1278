"""What a hub's watcher reads of a SQLite hub file, on a connection of the watcher's thread: a
marker that moves when another connection commits, and the waiting users' origins' tops."""

from __future__ import annotations

from typing import Any

from server.connectors.sqlite.pool import Connections

SQLITE_WATCH_SECONDS = 0.05  # a pragma read on a connection of its own: next to free
CHUNK = 500  # users per query


class SqlWatcher:
    interval = SQLITE_WATCH_SECONDS

    def __init__(self, pool: Connections):
        self.pool = pool

    def marker(self) -> Any:
        # Changes whenever another connection (another process, or another thread of this one)
        # has committed to the file since this connection last looked.
        return self.pool.get().execute("PRAGMA data_version").fetchone()[0]

    def tops(self, users: list[str]) -> dict[str, tuple]:
        conn, out = self.pool.get(), {}
        for i in range(0, len(users), CHUNK):
            part = users[i:i + CHUNK]
            rows = conn.execute(f"SELECT user_id, origin, max_seq FROM origins WHERE user_id IN "
                                f"({','.join('?' * len(part))}) ORDER BY user_id, origin", part)
            for user, origin, top in rows:
                out.setdefault(user, []).append((origin, top))
        return {u: tuple(v) for u, v in out.items()}

    def close(self) -> None:
        self.pool.close()  # the watcher thread's own connection
