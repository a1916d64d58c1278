"""A device's kept hub in its SQLite store (meta key "hub"), and the handover of a store that
has never synced to the invitation's user (hub_link.py says why)."""

from __future__ import annotations

import json

from server.connectors.hub_link import HubLink, KeptHub, StoreHoldsOthers
from server.connectors.sqlite.atomic import Transaction, atomic
from server.connectors.sqlite.store import SqlConnector
from server.core.records import USER

KEY = "hub"
# Every table whose rows are a user's (the primary keys all start with user_id).
USER_TABLES = ("records", "changes", "origins", "conflicts", "quarantine", "sync_state")


class SqlHubLink(HubLink):
    def __init__(self, store: SqlConnector):
        self.store = store  # connected

    def _writer(self) -> Transaction:
        # In the store's writer queue, as its own writes are.
        return atomic(self.store.pool.get, lock=self.store.pool.write_lock)

    def kept(self) -> KeptHub | None:
        row = self.store.pool.get().execute("SELECT value FROM meta WHERE key = ?", (KEY,)).fetchone()
        if row is None:
            return None
        kept = json.loads(row[0])
        return KeptHub(kept["url"], kept["token"], kept["userId"], kept["deviceId"], kept["pairedAt"])

    def synced_users(self) -> set[str]:
        return {r[0] for r in self.store.pool.get().execute("SELECT DISTINCT user_id FROM sync_state")}

    def keep(self, hub: KeptHub, move_from: str | None) -> dict[str, int]:
        moved: dict[str, int] = {}
        with self._writer() as conn:
            if move_from and move_from != hub.user_id:
                if conn.execute("SELECT 1 FROM changes WHERE user_id = ? LIMIT 1", (hub.user_id,)).fetchone():
                    raise StoreHoldsOthers(hub.user_id)
                old, new = move_from, hub.user_id
                # The profile is the record keyed by the user's id: it becomes the new user's.
                conn.execute("DELETE FROM records WHERE user_id = ? AND kind = ? AND key = ?", (new, USER, new))
                conn.execute("UPDATE records SET key = ?, id = ? WHERE user_id = ? AND kind = ? AND key = ?",
                             (new, new, old, USER, old))
                conn.execute("UPDATE changes SET record_id = ? WHERE user_id = ? AND kind = ? AND record_id = ?",
                             (new, old, USER, old))
                for table in USER_TABLES:
                    # The new user has no changes here (checked): what else is kept of it is a leftover.
                    conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (new,))
                    moved[table] = conn.execute(f"UPDATE {table} SET user_id = ? WHERE user_id = ?",
                                                (new, old)).rowcount
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('owner', ?)", (json.dumps(hub.user_id),))
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (KEY, json.dumps(hub.as_dict())))
        self.store.user_id = hub.user_id
        return moved

    def forget(self) -> KeptHub | None:
        kept = self.kept()
        with self._writer() as conn:
            conn.execute("DELETE FROM meta WHERE key = ?", (KEY,))
        return kept
