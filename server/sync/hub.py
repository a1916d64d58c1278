"""Where a device's hub is and how to open it: one function for the server's process and for
the sync child, so both open the same hub the same way."""

from __future__ import annotations

from dataclasses import dataclass

from server.config import Settings
from server.connectors.base import DatabaseConnector
from server.connectors.factory import get_db_connector


@dataclass(frozen=True)
class HubSpec:
    """Picklable, so it can cross into the sync child. `mongo`: MONGO_URI from the settings;
    `sql`: a SQLite file at `path` (benches and tests sync to one)."""

    kind: str = "mongo"
    path: str | None = None


def open_hub(settings: Settings, user_id: str, spec: HubSpec = HubSpec()) -> DatabaseConnector:
    """A connected hub connector for `user_id`, with an origin of its own (it never writes)."""
    extra = {"path": spec.path} if spec.kind == "sql" else {}
    hub = get_db_connector(spec.kind, settings, user_id=user_id, device_id=None, **extra)
    try:
        hub.connect()
    except Exception:
        hub.close()  # a MongoClient left open keeps its monitor threads: one per failed round
        raise
    return hub
