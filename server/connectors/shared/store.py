"""One store, composed: a backend (backend.py: SQLite's or MongoDB's driver code) and the
collaborators written once over it. Each public method hands its call to the one collaborator
whose job it is, which goes down to the backend, never back up:

    route -> Store.update -> Writes.update -> Merger.merge_and_persist -> Backend.persist

- `writes` (writes.py): the records as the API reads and writes them;
- `intake` (intake.py): changes from elsewhere, the door and the quarantine, a moved origin;
- `history` (history.py): snapshots, heals, floors and compaction;
- `conflicts` (conflicts.py): the ledger settled from the records, and conflicts' names;
- the backend's own rows (its log, bookmarks, ledgers) where there is nothing to add to them.

Driver errors leave every public method only as the backend's `unavailable(exc)`."""

from __future__ import annotations

import functools
import inspect
from contextlib import AbstractContextManager
from typing import Any, Callable

from server.connectors.shared.backend import Backend, Limits
from server.connectors.shared.conflicts import Conflicts
from server.connectors.shared.history import History
from server.connectors.shared.intake import Intake
from server.connectors.shared.merging import Merger
from server.connectors.shared.writes import Writes
from server.core.changes import Change, Cursor, Key
from server.core.clock import HybridClock


def _translating(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def translated(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except self.backend.driver_errors as exc:
            raise self.backend.unavailable(exc) from exc
    translated.translates_driver_errors = True  # type: ignore[attr-defined]  # a marker on a function
    return translated


def _translate_public_methods(cls: type) -> None:
    """Wrap every public method `cls` defines so that the backend's driver errors leave it
    translated: a method added later is covered without a list of names to keep in step."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member) \
                and not getattr(member, "translates_driver_errors", False):
            setattr(cls, name, _translating(member))


class Store:
    def __init__(self, backend: Backend):
        self.backend = backend
        self.merger = Merger(backend)
        self.writes = Writes(backend, self.merger)
        self.intake = Intake(backend, self.merger)
        self.history = History(backend, self.merger, self.intake)
        self.conflicts = Conflicts(backend)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _translate_public_methods(cls)

    # --- who, and what it takes -------------------------------------------------------------
    @property
    def origin(self) -> str:
        return self.backend.origin

    @property
    def user_id(self) -> str:
        return self.backend.user_id

    @user_id.setter
    def user_id(self, value: str) -> None:
        self.backend.user_id = value

    @property
    def store_kind(self) -> str:
        return self.backend.store_kind

    @property
    def clock(self) -> HybridClock:
        return self.backend.clock

    @property
    def limits(self) -> Limits:
        return self.backend.limits

    @property
    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return self.backend.driver_errors

    @property
    def max_skew_ms(self) -> int:
        return self.backend.limits.max_skew_ms

    @max_skew_ms.setter
    def max_skew_ms(self, value: int) -> None:
        self.backend.limits.max_skew_ms = value

    @property
    def quarantine_keep(self) -> int:
        return self.backend.limits.quarantine_keep

    @quarantine_keep.setter
    def quarantine_keep(self, value: int) -> None:
        self.backend.limits.quarantine_keep = value

    @property
    def quarantine_cap(self) -> int | None:
        return self.backend.limits.quarantine_cap

    @quarantine_cap.setter
    def quarantine_cap(self, value: int | None) -> None:
        self.backend.limits.quarantine_cap = value

    @property
    def quarantine_cap_bytes(self) -> int | None:
        return self.backend.limits.quarantine_cap_bytes

    @quarantine_cap_bytes.setter
    def quarantine_cap_bytes(self, value: int | None) -> None:
        self.backend.limits.quarantine_cap_bytes = value

    def guarded(self, call: Callable[..., Any], *args: Any) -> Any:
        """`call(*args)`, a call on this store's driver made elsewhere (the hub's device registry
        keeps its tables in the same store), with the driver's failures translated as this
        store's own (503 store_unavailable, no secrets)."""
        return call(*args)

    # --- lifecycle --------------------------------------------------------------------------
    def connect(self) -> None:
        unfinished = self.backend.connect()
        if unfinished:  # a writer that died left its newest change logged but not merged
            with self.backend.writer():
                self.merger.merge_and_persist(unfinished, own=False)

    def close(self) -> None:
        self.backend.close()

    def ping(self) -> bool:
        return self.backend.ping()

    def set_owner(self, user_id: str) -> None:
        self.backend.set_owner(user_id)

    # --- records (the device's routes) ------------------------------------------------------
    def get_user(self) -> dict[str, Any]:
        return self.writes.get_user()

    def get_courses(self) -> list[dict[str, Any]]:
        return self.writes.get_courses()

    def get_course(self, course_id: str) -> dict[str, Any]:
        return self.writes.get_course(course_id)

    def update_user_profile(self, display_name: str, *, if_match: list[str] | None = None) -> dict[str, Any]:
        return self.writes.update_user_profile(display_name, if_match=if_match)

    def set_focus_course(self, course_id: str | None, *, if_match: list[str] | None = None) -> dict[str, Any]:
        return self.writes.set_focus_course(course_id, if_match=if_match)

    def create(self, kind: str, parent_id: str | None, new: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        return self.writes.create(kind, parent_id, new)

    def update(self, kind: str, parent_id: str | None, record_id: str, updates: dict[str, Any], *,
               if_match: list[str] | None = None) -> dict[str, Any]:
        return self.writes.update(kind, parent_id, record_id, updates, if_match=if_match)

    def delete(self, kind: str, parent_id: str | None, record_id: str, *, if_match: list[str] | None = None) -> None:
        self.writes.delete(kind, parent_id, record_id, if_match=if_match)

    # --- changes (the sync engine, the hub) ------------------------------------------------
    def changes_since(self, cursor: Cursor, limit: int, *, exclude_origin: str | None = None,
                      only_origin: str | None = None) -> list[Change]:
        return self.backend.changes_since(cursor, limit, exclude_origin=exclude_origin, only_origin=only_origin)

    def pending_since(self, cursor: Cursor, origin: str | None = None) -> tuple[int, str | None]:
        return self.backend.pending_since(cursor, origin)

    def apply_changes(self, changes: list[Change], *, bookmarks: dict[str, Any] | None = None,
                      relayed: bool = False, from_hub: bool = False) -> dict[str, Any]:
        return self.intake.apply_changes(changes, bookmarks=bookmarks, relayed=relayed, from_hub=from_hub)

    def relay_changes(self, changes: list[Change], *, owned: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
        return self.intake.relay_changes(changes, owned=owned)

    def tops(self, origins: set[str]) -> Cursor:
        return self.intake.tops(origins)

    def shortfall(self, cursor: Cursor) -> dict[str, Any]:
        return self.intake.shortfall(cursor)

    def apply_snapshot(self, records: list[Any], *, bookmarks: dict[str, Any] | None = None,
                       held: Cursor | None = None) -> dict[str, Any]:
        return self.intake.apply_snapshot(records, bookmarks=bookmarks, held=held)

    def restart_origin(self, origin: str, first_seq: int) -> tuple[str, int]:
        return self.intake.restart_origin(origin, first_seq)

    def resend_own(self, seqs: list[int]) -> int:
        return self.intake.resend_own(seqs)

    def quarantine(self, entries: list[dict[str, Any]]) -> None:
        self.intake.quarantine(entries)

    def snapshot_page(self, after: Key | None, limit: int) -> dict[str, Any]:
        return self.history.snapshot_page(after, limit)

    def heal(self, records: list[Any], *, hold: Cursor | None = None, log_as: str | None = None,
             not_from: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
        return self.history.heal(records, hold=hold, log_as=log_as, not_from=not_from)

    def floors(self) -> Cursor:
        return self.history.floors()

    def one_look(self) -> AbstractContextManager:
        """A read-only section whose reads of the user's origins read them once (Backend.one_look)."""
        return self.backend.one_look()

    def log_sizes(self) -> dict[str, int]:
        return self.history.log_sizes()

    def compact(self, floors: Cursor, limit: int) -> int:
        return self.history.compact(floors, limit)

    # --- the ledgers --------------------------------------------------------------------------
    def list_conflicts(self, limit: int = 100, status: str = "all") -> list[dict[str, Any]]:
        return self.backend.ledgers.list_conflicts(limit, status)

    def get_conflict(self, conflict_id: str) -> dict[str, Any] | None:
        return self.backend.ledgers.get_conflict(conflict_id)

    def resolve_conflict(self, conflict_id: str, resolution: dict[str, Any]) -> dict[str, Any] | None:
        return self.backend.ledgers.resolve_conflict(conflict_id, resolution)

    def count_conflicts(self) -> int:
        return self.backend.ledgers.count_conflicts()

    def forget_resolved_conflicts(self, before: str) -> int:
        return self.backend.ledgers.forget_resolved_conflicts(before)

    def settle_conflicts(self) -> int:
        return self.conflicts.settle_conflicts()

    def conflict_names(self, conflicts: list[dict[str, Any]]) -> dict[str, dict[str, str | None]]:
        return self.conflicts.conflict_names(conflicts)

    def list_quarantine(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.backend.ledgers.list_quarantine(limit)

    def count_quarantine(self) -> int:
        return self.backend.ledgers.count_quarantine()

    def release_quarantined(self, ids: list[str]) -> int:
        return self.backend.ledgers.release_quarantined(ids)

    # --- bookmarks and the store as a whole -------------------------------------------------
    def get_bookmark(self, key: str) -> Any:
        return self.backend.get_bookmark(key)

    def set_bookmark(self, key: str, value: Any) -> None:
        self.backend.set_bookmark(key, value)

    def hub_epoch(self) -> str:
        return self.backend.hub_epoch()

    def dump_records(self) -> dict[Key, dict[str, Any]]:
        return self.backend.dump_records()

    def is_empty(self) -> bool:
        return self.backend.is_empty()

    def wipe(self) -> dict[str, int]:
        return self.backend.wipe()


_translate_public_methods(Store)
