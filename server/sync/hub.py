"""What a device's sync asks of a hub, and where the hub is and how to open it.

`Hub` is all the round (engine.py) uses of a hub; `WaitingHub` adds what the live wait
(live.py) uses. Two kinds implement them: a hub server's client (http_hub.HubClient), and a hub
store a device opens itself (`StoreHub`: MongoDB with MONGO_URI, or a SQLite file in benches and
tests). A connector is a `Hub` as it is (its contract has these calls). `open_hub` is one
function for the server's process and for the sync child, so both open the same hub the same way."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

from server.connectors.base import DatabaseConnector
from server.connectors.factory import get_db_connector
from server.core.changes import Change, Cursor
from server.core.config import Settings
from server.core.sequences import behind
from server.sync.answers import HealAnswer, PushAnswer, ShortfallAnswer, SnapshotPage

POLL_SECONDS = 0.5  # how often a wait on a hub store looks for news
@runtime_checkable
class Hub(Protocol):
    def hub_epoch(self) -> str: ...

    def changes_since(self, cursor: Cursor, limit: int, *, exclude_origin: str | None = None,
                      only_origin: str | None = None) -> list[Change]: ...

    def apply_changes(self, changes: list[Change]) -> PushAnswer: ...

    def relay_changes(self, changes: list[Change], *, owned: frozenset[str] | set[str] = frozenset(),
                      ) -> PushAnswer: ...

    def shortfall(self, cursor: Cursor) -> ShortfallAnswer: ...

    def snapshot_page(self, after: tuple[str, str] | None, limit: int) -> SnapshotPage: ...

    def heal(self, records: list[Any], *, hold: Cursor | None = None, log_as: str | None = None) -> HealAnswer: ...

    def close(self) -> None: ...


@runtime_checkable
class WaitingHub(Hub, Protocol):
    def wait(self, cursor: Cursor, *, exclude_origin: str | None, seconds: float) -> bool | None:
        """True once the hub holds a change past `cursor` of an origin other than
        `exclude_origin`, False after `seconds` with none (or when interrupted), None if this hub
        cannot be waited on."""

    def interrupt(self) -> None:
        """End a wait in progress, and every later one, at once (the device is stopping)."""


class StoreHub:
    """A hub store opened directly, as a WaitingHub: its contract's calls, and a wait that is a
    short indexed poll for news every POLL_SECONDS (no hub server holds the request)."""

    def __init__(self, store: DatabaseConnector):
        self.store = store
        self._interrupted = threading.Event()

    def connect(self) -> None:
        self.store.connect()

    def hub_epoch(self) -> str:
        return self.store.hub_epoch()

    def changes_since(self, cursor: Cursor, limit: int, *, exclude_origin: str | None = None,
                      only_origin: str | None = None) -> list[Change]:
        return self.store.changes_since(cursor, limit, exclude_origin=exclude_origin, only_origin=only_origin)

    # The store's answers are the protocol's (its contract says so; connectors/base.py).
    def apply_changes(self, changes: list[Change]) -> PushAnswer:
        return cast(PushAnswer, self.store.apply_changes(changes))

    def relay_changes(self, changes: list[Change], *, owned: frozenset[str] | set[str] = frozenset(),
                      ) -> PushAnswer:
        return cast(PushAnswer, self.store.relay_changes(changes, owned=owned))

    def shortfall(self, cursor: Cursor) -> ShortfallAnswer:
        return cast(ShortfallAnswer, self.store.shortfall(cursor))

    def snapshot_page(self, after: tuple[str, str] | None, limit: int) -> SnapshotPage:
        page = self.store.snapshot_page(after, limit)
        return {"cursor": page["cursor"], "records": page["records"],
                "next": (page["next"][0], page["next"][1]) if page["next"] else None}

    def heal(self, records: list[Any], *, hold: Cursor | None = None, log_as: str | None = None) -> HealAnswer:
        return cast(HealAnswer, self.store.heal(records, hold=hold, log_as=log_as))

    def wait(self, cursor: Cursor, *, exclude_origin: str | None, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            if self.store.changes_since(cursor, 1, exclude_origin=exclude_origin) or \
                    behind(cursor, self.store.floors(), but=exclude_origin):
                return True  # a change to pull, or records to catch up from (a heal, a purge)
            left = deadline - time.monotonic()
            if left <= 0 or self._interrupted.wait(min(POLL_SECONDS, left)):
                return False

    def interrupt(self) -> None:
        self._interrupted.set()

    def close(self) -> None:
        self.store.close()


@dataclass(frozen=True)
class HubSpec:
    """Picklable, so it can cross into the sync child. `settings`: the hub the settings name
    (HUB_URL, else MONGO_URI); `sql`: a SQLite file at `path` (benches and tests sync to one)."""

    kind: str = "settings"
    path: str | None = None


def open_hub(settings: Settings, user_id: str, spec: HubSpec = HubSpec()) -> WaitingHub:
    """A connected hub for `user_id`: a hub server's client, or a store with an origin of its
    own (it never writes)."""
    hub: Any
    if spec.kind == "settings" and settings.hub_url:
        from server.sync.http_hub import HubClient

        hub = HubClient(settings.hub_url, settings.hub_token or "", timeout_ms=settings.hub_timeout_ms,
                        user_id=user_id)
    elif spec.kind == "sql":
        hub = StoreHub(get_db_connector("sql", settings, user_id=user_id, origin=None, path=spec.path))
    else:
        hub = StoreHub(get_db_connector("mongo", settings, user_id=user_id, origin=None))
    try:
        hub.connect()
    except Exception:
        hub.close()  # a MongoClient left open keeps its monitor threads: one per failed round
        raise
    return hub
