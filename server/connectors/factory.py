"""Builds a connector by kind. The only place that knows both classes."""

from __future__ import annotations

from server.connectors.base import DatabaseConnector
from server.core.config import Settings


def get_db_connector(kind: str, settings: Settings | None = None, **overrides) -> DatabaseConnector:
    """A new, not yet connected connector of `kind` ('sql' or 'mongo'), configured from
    `settings` (defaults when None); keyword overrides win (tests pass `client=` for Mongo)."""
    settings = settings or Settings()
    whose = {"user_id": settings.user_id, "origin": settings.origin}
    if kind == "sql":
        from server.connectors.sqlite.store import SqlConnector

        kw = {**whose, "synchronous": settings.sqlite_synchronous, **overrides}
        conn: DatabaseConnector = SqlConnector(kw.pop("path", settings.sqlite_path), **kw)
    elif kind == "mongo":
        from server.connectors.mongo.store import MongoConnector

        kw = {**whose, "timeout_ms": settings.hub_timeout_ms, **overrides}
        conn = MongoConnector(kw.pop("uri", settings.mongo_uri or "mongodb://127.0.0.1:27017"),
                              kw.pop("db_name", settings.mongo_db), **kw)
    else:
        raise ValueError(f"Unsupported database connector type: {kind}")
    conn.max_skew_ms = int(settings.max_clock_skew_seconds * 1000)
    return conn
