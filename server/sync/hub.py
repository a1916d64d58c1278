"""Where a device's hub is and how to open it: one function for the server's process and for
the sync child, so both open the same hub the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.config import Settings
from server.connectors.base import DatabaseConnector
from server.connectors.factory import get_db_connector


@dataclass(frozen=True)
class HubSpec:
    """Picklable, so it can cross into the sync child. `settings`: the hub the settings name
    (HUB_URL, else MONGO_URI); `sql`: a SQLite file at `path` (benches and tests sync to one)."""

    kind: str = "settings"
    path: str | None = None


def open_hub(settings: Settings, user_id: str, spec: HubSpec = HubSpec()) -> DatabaseConnector:
    """A connected hub for `user_id`: a hub server's client, or a connector with an origin of
    its own (it never writes)."""
    if spec.kind == "settings" and settings.hub_url:
        from server.sync.http_hub import HubClient

        hub: Any = HubClient(settings.hub_url, settings.hub_token or "", timeout_ms=settings.hub_timeout_ms,
                             user_id=user_id)
    elif spec.kind == "sql":
        hub = get_db_connector("sql", settings, user_id=user_id, origin=None, path=spec.path)
    else:
        hub = get_db_connector("mongo", settings, user_id=user_id, origin=None)
    try:
        hub.connect()
    except Exception:
        hub.close()  # a MongoClient left open keeps its monitor threads: one per failed round
        raise
    return hub
