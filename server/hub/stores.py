"""The hub server's per-user stores: a connected connector per user of the one hub store, kept
for reuse. On SQLite they share the file's pool of connections, on MongoDB the client."""

from __future__ import annotations

import threading
from collections import OrderedDict

from server.connectors.base import DatabaseConnector
from server.connectors.factory import user_store
from server.core.config import Settings


class HubStores:
    """A connected connector per user of one hub store, kept for reuse (the least recently used
    closed beyond `limit`). They hold no state the store does not: a cache, not a session."""

    # Each waiting device's wait opens its user's store again when its time is up (every 25 to
    # 60 s): kept for more users than a hub process holds waiting devices (12,000 connections),
    # at some 1.5 KB each, the waits find theirs open.
    def __init__(self, settings: Settings, base: DatabaseConnector, limit: int = 16_384):
        self.settings, self.base, self.limit = settings, base, limit
        self._stores: OrderedDict[str, DatabaseConnector] = OrderedDict()
        self._lock = threading.Lock()

    def for_user(self, user_id: str) -> DatabaseConnector:
        with self._lock:
            store = self._stores.get(user_id)
            if store is not None:
                self._stores.move_to_end(user_id)
                return store
        store = self._open(user_id)  # outside the lock: a slow store must not hold up other users
        with self._lock:
            already = self._stores.get(user_id)
            if already is None:
                self._stores[user_id] = already = store
                store = None
            while len(self._stores) > self.limit:
                self._stores.popitem(last=False)[1].close()
        if store is not None:  # another request of the same user opened one meanwhile
            store.close()
        return already

    def _open(self, user_id: str) -> DatabaseConnector:
        store = user_store(self.base, self.settings, user_id)
        store.connect()
        # A hub keeps of a refused change its start and digest, and so many per user: the
        # device that sent it keeps it whole in its own quarantine.
        store.quarantine_keep, store.quarantine_cap = 1024, self.settings.hub_max_quarantined
        store.quarantine_cap_bytes = self.settings.hub_max_quarantined_bytes
        return store

    def __len__(self) -> int:
        with self._lock:
            return len(self._stores)

    def close(self) -> None:
        with self._lock:
            stores, self._stores = list(self._stores.values()), OrderedDict()
        for store in stores:
            store.close()
