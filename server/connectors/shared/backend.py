"""The driver contract: what one backend (SQLite, MongoDB) implements so that one store
(store.py) can be built over it from collaborators written once (writes, intake, history,
conflicts). A backend speaks its driver and nothing more: it keeps records, the change log, each
origin's top and floor, meta and bookmarks, and the rows of the two ledgers; how to merge, what
to admit and what to settle is the collaborators'.

Three parts, each an abstract base so that a backend that misses a method cannot be built:
`Backend` (a writer section, records, the log, meta), and the two it holds, `HistoryRows` (floors,
compaction, pages of records) and `LedgerRows` (conflicts and the quarantine)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Sequence

import orjson

from server.core.changes import MAX_SKEW_MS, QUARANTINE_BODY_MAX, Change, Cursor, Key
from server.core.clock import HybridClock
from server.core.errors import StoreUnavailable


def entry_bytes(entry: dict[str, Any]) -> int:
    """What a quarantine entry takes as stored (its compact JSON), for the hub's cap in bytes."""
    return len(orjson.dumps(entry))


class RetryMerge(Exception):
    """A record changed under us between load and save (Mongo's optimistic check): redo."""


@dataclass
class Limits:
    """What a store takes and keeps, shared by the store and its backend (a hub sets them)."""
    max_skew_ms: int = MAX_SKEW_MS  # MAX_CLOCK_SKEW_SECONDS; the factory sets it from the settings
    quarantine_keep: int = QUARANTINE_BODY_MAX  # bytes of a refused change kept (a hub keeps 1 KB)
    quarantine_cap: int | None = None  # refused changes kept at most (a hub's quota), None: all
    quarantine_cap_bytes: int | None = None  # and the bytes they take as stored (entry_bytes), None: any

    def over_cap(self, rows: int, size: int) -> bool:
        """Would a quarantine of `rows` entries taking `size` bytes be over the cap?"""
        return self.quarantine_cap is not None and (rows > self.quarantine_cap or (
            self.quarantine_cap_bytes is not None and size > self.quarantine_cap_bytes))


class LedgerRows(ABC):
    """The rows of the two ledgers a person reads, scoped to the backend's user."""

    @abstractmethod
    def list_conflicts(self, limit: int = 100, status: str = "all") -> list[dict[str, Any]]: ...

    @abstractmethod
    def count_conflicts(self) -> int: ...

    @abstractmethod
    def get_conflict(self, conflict_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def resolve_conflict(self, conflict_id: str, resolution: dict[str, Any]) -> dict[str, Any] | None: ...

    @abstractmethod
    def forget_resolved_conflicts(self, before: str) -> int: ...

    @abstractmethod
    def list_quarantine(self, limit: int = 100) -> list[dict[str, Any]]: ...

    @abstractmethod
    def count_quarantine(self) -> int: ...

    @abstractmethod
    def release_quarantined(self, ids: list[str]) -> int: ...

    @abstractmethod
    def quarantine_held(self) -> tuple[int, int]:
        """(refused changes this user's quarantine holds, the bytes they take: entry_bytes of each)."""


class HistoryRows(ABC):
    """Compacted history (sequences.held_below, sequences.behind) and the records in key order."""

    @abstractmethod
    def floors_of(self, origins: set[str] | None) -> dict[str, int]:
        """origin -> its floor (the newest seq compacted out of the log), for those of `origins`
        (None: every origin) that have been compacted."""

    @abstractmethod
    def compact_origin(self, origin: str, floor: int, limit: int) -> int:
        """Raise the origin's floor to `floor` (never past its top), then drop at most `limit`
        of its oldest changes at or below the floor, in one short write; returns how many went."""

    @abstractmethod
    def log_sizes(self) -> dict[str, int]:
        """Every user's of this store: {"changes": in the logs above the floors, "compacted":
        at or below them}, from each origin's top and floor (no count of the log itself)."""

    @abstractmethod
    def hold(self, held: dict[str, int]) -> None:
        """Record that this store holds these origins up to these seqs without their changes (a
        snapshot's records brought them): each one's top and floor rise to it."""

    @abstractmethod
    def append(self, origin: str, changes: list[Change]) -> list[Change]:
        """Inside `writer`: log `changes` under `origin` (not this store's own) at the next
        numbers past its top, none taken twice however many processes append at once; returns
        them as logged."""

    @abstractmethod
    def records_after(self, after: Key | None, limit: int) -> list[dict[str, Any]]:
        """At most `limit` merge states (tombstones too) in (kind, key) order, after `after`."""


class Backend(ABC):
    store_kind: str  # "sql" or "mongo": the letter that starts the origins this store makes
    origin: str  # the origin stamped on this store's own changes
    user_id: str  # every read and write is scoped to this user
    clock: HybridClock  # stamps this store's own changes; set by connect()
    limits: Limits
    history: HistoryRows
    ledgers: LedgerRows
    driver_errors: tuple[type[BaseException], ...] = ()  # what the store translates (unavailable)

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The StoreUnavailable a driver exception becomes: a sentence with no secrets in it."""
        return StoreUnavailable(f"The store failed ({exc.__class__.__name__}).")

    # --- lifecycle ------------------------------------------------------------------------
    @abstractmethod
    def connect(self) -> list[Change]:
        """Open, create or upgrade the schema, load user, origin and clock. Returns this
        origin's changes that a writer which died may have logged without merging (MongoDB's
        newest own change; a store that logs in one transaction has none): the store merges them."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def ping(self) -> bool: ...

    @abstractmethod
    def set_owner(self, user_id: str) -> None:
        """Remember whose data this store holds (the seeder does), for a server without USER_ID."""

    # --- sections -------------------------------------------------------------------------
    @abstractmethod
    def writer(self) -> AbstractContextManager:
        """Exclusive section for this store's own writes (one writer per origin)."""

    @abstractmethod
    def reader(self) -> AbstractContextManager:
        """A consistent view for multi-query reads."""

    @abstractmethod
    def batch(self) -> AbstractContextManager:
        """The section a batch from elsewhere is taken in: SQLite's writer (one transaction);
        none on MongoDB, whose saves are checked record by record."""

    def one_look(self) -> AbstractContextManager:
        """A read-only section (a round's opening at a hub) in which the user's origins are read
        once, however many of its reads ask for them; nothing to do where that read is cheap."""
        return nullcontext()

    def looked(self) -> list[dict] | None:
        """Inside one_look, where it reads once: the user's origins as read. Otherwise None."""
        return None

    # --- records --------------------------------------------------------------------------
    @abstractmethod
    def load(self, keys: set[Key]) -> dict[Key, dict[str, Any]]:
        """Merge states of these records (tombstones too); missing ones are absent."""

    @abstractmethod
    def load_children(self, course_ids: set[str]) -> dict[Key, dict[str, Any]]:
        """Merge states of the lectures and assignments of these courses, tombstones too."""

    @abstractmethod
    def load_every_live_record(self) -> list[dict[str, Any]]:
        """Every live course, lecture and assignment of the user, as states that carry only what
        shaping an answer needs (kind, id, courseId, fields): the read path skips the clocks."""

    @abstractmethod
    def dump_records(self) -> dict[Key, dict[str, Any]]: ...

    # --- the log --------------------------------------------------------------------------
    @abstractmethod
    def next_seq(self) -> int:
        """The next sequence number of this store's own origin (inside `writer`). A store that
        other processes also write to first observes the newest stamp they stored, so that the
        stamp taken next sorts after everything already in the store."""

    def refresh_origin(self) -> None:
        """Take on the origin another process moved this store to (a store shared by processes)."""

    @abstractmethod
    def retire_tail(self, origin: str, first_seq: int, new: str, moved: list[Change], states: list[dict]) -> None:
        """Inside `writer`: drop `origin`'s changes from `first_seq` on, store `moved` (their
        copies under the new origin) and `states` (the records they wrote, restamped), and make
        the new origin this store's own. Raise RetryMerge on a lost race."""

    def complete(self, changes: list[Change]) -> None:
        """Finish what an earlier attempt to store these (already logged) changes may have left
        undone. A store that logs a batch in one transaction has nothing to finish."""

    @abstractmethod
    def tops_of(self, origins: set[str]) -> dict[str, int]:
        """origin -> the newest sequence number this store holds of it, for those of `origins` it
        holds anything of (the own origin included)."""

    @abstractmethod
    def every_top(self) -> dict[str, int]:
        """origin -> the newest sequence number this store holds of it, for every origin."""

    @abstractmethod
    def known(self, changes: list[Change], whole: bool = False) -> dict[tuple[str, int], Any]:
        """(origin, seq) -> hlc (or, `whole`, the stored change) for those of these changes already
        stored, whatever the origin's top says."""

    @abstractmethod
    def changes_since(self, cursor: Cursor, limit: int, *, exclude_origin: str | None = None,
                      only_origin: str | None = None) -> list[Change]: ...

    @abstractmethod
    def pending_since(self, cursor: Cursor, origin: str | None = None) -> tuple[int, str | None]: ...

    @abstractmethod
    def persist(self, changes: list[Change], states: list[dict], conflicts: list[dict],
                *, own: bool, bookmarks: dict[str, Any] | None, quarantined: Sequence[dict] = ()) -> None:
        """Store changes, merged records, conflicts (deduplicated by id), quarantine entries, sync
        state and the clock, atomically or in a crash-safe order. Raise RetryMerge on a lost race."""

    # --- meta -----------------------------------------------------------------------------
    @abstractmethod
    def get_bookmark(self, key: str) -> Any: ...

    @abstractmethod
    def set_bookmark(self, key: str, value: Any) -> None: ...

    @abstractmethod
    def hub_epoch(self) -> str: ...

    @abstractmethod
    def is_empty(self) -> bool: ...

    @abstractmethod
    def wipe(self) -> dict[str, int]: ...
