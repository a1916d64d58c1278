"""Builds stores, device registries and watchers by backend: the only module outside the backend
folders that knows which backends exist (a test checks)."""

from __future__ import annotations

from server.connectors.base import DatabaseConnector, StoreWatcher
from server.connectors.hub_link import HubLink
from server.connectors.mongo.registry import MongoRegistry
from server.connectors.mongo.store import MongoConnector
from server.connectors.mongo.watcher import MongoWatcher
from server.connectors.registry import DeviceRegistry
from server.connectors.sqlite.hub_link import SqlHubLink
from server.connectors.sqlite.registry import SqlRegistry
from server.connectors.sqlite.store import SqlConnector
from server.connectors.sqlite.watcher import SqlWatcher
from server.core.config import Settings


def get_db_connector(kind: str, settings: Settings | None = None, **overrides) -> DatabaseConnector:
    """A new, not yet connected connector of `kind` ('sql' or 'mongo'), configured from
    `settings` (defaults when None); keyword overrides win (tests pass `client=` for Mongo)."""
    settings = settings or Settings()
    whose = {"user_id": settings.user_id, "origin": settings.origin}
    conn: SqlConnector | MongoConnector
    if kind == "sql":
        kw = {**whose, "synchronous": settings.sqlite_synchronous, **overrides}
        conn = SqlConnector(kw.pop("path", settings.sqlite_path), **kw)
    elif kind == "mongo":
        kw = {**whose, "timeout_ms": settings.hub_timeout_ms, **overrides}
        conn = MongoConnector(kw.pop("uri", settings.mongo_uri or "mongodb://127.0.0.1:27017"),
                              kw.pop("db_name", settings.mongo_db), **kw)
    else:
        raise ValueError(f"Unsupported database connector type: {kind}")
    conn.max_skew_ms = int(settings.max_clock_skew_seconds * 1000)
    return conn


def user_store(base: DatabaseConnector, settings: Settings, user_id: str) -> DatabaseConnector:
    """A new, not yet connected store of `user_id` on the same hub store as `base` (a hub's
    per-user stores): on SQLite sharing its pool of connections, so that open files grow with
    the server's threads and not with users times threads; on MongoDB its client."""
    if isinstance(base, SqlConnector):
        return get_db_connector("sql", settings, path=base.path, user_id=user_id, origin=None,
                                connections=base.pool)
    if isinstance(base, MongoConnector):
        return get_db_connector("mongo", settings, user_id=user_id, origin=None, client=base.client,
                                db_name=base.db_name)
    raise TypeError(f"not a hub store: {type(base).__name__}")


def registry_for(store: DatabaseConnector) -> DeviceRegistry:
    """The device registry kept in this (connected) hub store."""
    if isinstance(store, SqlConnector):
        return SqlRegistry(store.pool)
    if isinstance(store, MongoConnector):
        return MongoRegistry(store.db)
    raise TypeError(f"not a hub store: {type(store).__name__}")


def watcher_for(store: DatabaseConnector) -> StoreWatcher:
    """What a hub's watcher thread reads of this (connected) hub store."""
    if isinstance(store, SqlConnector):
        return SqlWatcher(store.pool)
    if isinstance(store, MongoConnector):
        return MongoWatcher(store.db)
    raise TypeError(f"not a hub store: {type(store).__name__}")


def hub_link_for(store: DatabaseConnector) -> HubLink | None:
    """Where this (connected) device store keeps the hub it was paired with; None for a store
    that keeps none (DB_CONNECTOR=mongo writes to the hub itself)."""
    return SqlHubLink(store) if isinstance(store, SqlConnector) else None
