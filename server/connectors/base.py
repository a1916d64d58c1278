"""The contract every store implements. The API and the sync engine see stores only through it.

Records are returned in the API's shape (API.md): camelCase fields, `createdAt`/`updatedAt`
as ISO-8601 UTC with `Z`. Every method that writes says so, and every such write appends a
change (see `changes_since`) atomically with the write: either both happen or neither.

Errors: `NotFound` (with a code such as `course_not_found`), `StateConflict` (409), and
`StoreUnavailable` when the store cannot be reached. Driver exceptions never escape.

Every update and delete takes `if_match`: None, or the entity tags of RFC 9110's If-Match
(`records.etag_of`); when the record's current tag is not among them the method raises
`PreconditionFailed` carrying the current record, and writes nothing. The check and the write
happen in one writer section, so two clients holding the same tag cannot both win.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from typing import Any, Callable, Protocol

from server.core.changes import Change, Cursor
from server.core.errors import StoreUnavailable

__all__ = ["Change", "Cursor", "DatabaseConnector", "StoreWatcher"]  # the contract speaks of changes and cursors


def _translating(method):
    @functools.wraps(method)
    def translated(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except self.driver_errors as exc:
            raise self._unavailable(exc) from exc
    translated.translates_driver_errors = True
    return translated


class DatabaseConnector(ABC):
    origin: str  # the origin stamped on this store's own changes
    user_id: str  # every read and write is scoped to this user
    # The driver's exceptions. A connector that names them gets every public method, its own and
    # inherited, wrapped so that they leave it only as `_unavailable(exc)`: one place per store,
    # and a method added later is covered without a list of names to keep in step.
    driver_errors: tuple[type[BaseException], ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.driver_errors:
            return
        for name in dir(cls):
            member = inspect.getattr_static(cls, name)
            if name.startswith("_") or not inspect.isfunction(member):
                continue
            if not getattr(member, "translates_driver_errors", False):
                setattr(cls, name, _translating(member))

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The StoreUnavailable a driver exception becomes: a sentence with no secrets in it."""
        return StoreUnavailable(f"The store failed ({exc.__class__.__name__}).")

    def guarded(self, call: Callable[..., Any], *args: Any) -> Any:
        """`call(*args)`, a call on this store's driver made elsewhere (the hub's device registry
        keeps its tables in the same store), with the driver's failures translated as this
        connector's own (503 store_unavailable, no secrets)."""
        return call(*args)

    @abstractmethod
    def connect(self) -> None:
        """Open the store, create or upgrade its schema/indexes (idempotent), load the clock.
        Raises StoreUnavailable if the store cannot be reached."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. Safe to call twice; never raises, even when the store is gone."""

    @abstractmethod
    def ping(self) -> bool:
        """True when the store answers a trivial query; False otherwise. Never raises."""

    # --- reads -----------------------------------------------------------------------------
    @abstractmethod
    def get_user(self) -> dict[str, Any]:
        """The user record. A user never written yet reads as defaults (no change is written).
        `focusCourseId` reads as null when it names a course that no longer exists."""

    @abstractmethod
    def get_courses(self) -> list[dict[str, Any]]:
        """Every live course, oldest first, each with its live `lectures` (by `order`) and
        `assignments` (by `createdAt`)."""

    @abstractmethod
    def get_course(self, course_id: str) -> dict[str, Any]:
        """One live course with its lectures and assignments. NotFound(course_not_found)."""

    # --- writes (each appends one change) ------------------------------------------------
    @abstractmethod
    def update_user_profile(self, display_name: str, *, if_match: list[str] | None = None) -> dict[str, Any]:
        """Set `displayName`. Writes a change. Returns the user."""

    @abstractmethod
    def set_focus_course(self, course_id: str | None, *, if_match: list[str] | None = None) -> dict[str, Any]:
        """Set or clear `focusCourseId`. NotFound(course_not_found) for an unknown or deleted
        course. Writes a change. Returns the user."""

    @abstractmethod
    def create(self, kind: str, parent_id: str | None, new: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create a record of `kind` (records.KINDS, not the user) from validated fields, with an
        optional client `id`. `parent_id` is None for a course and the id of a live course for a
        kind whose parent is the course (else NotFound(course_not_found)). Returns (record,
        created); a course comes with its children. The same id with the same fields again
        returns (existing, False) and writes nothing; the same id with other fields, or the id of
        a deleted record: StateConflict(id_conflict). Otherwise writes one change."""

    @abstractmethod
    def update(self, kind: str, parent_id: str | None, record_id: str, updates: dict[str, Any], *,
               if_match: list[str] | None = None) -> dict[str, Any]:
        """Apply validated updates. NotFound with the parent's or the kind's code, also for a
        child looked up under another course. Writes a change unless `updates` is empty.
        Returns the record (a course with its children)."""

    @abstractmethod
    def delete(self, kind: str, parent_id: str | None, record_id: str, *,
               if_match: list[str] | None = None) -> None:
        """Tombstone the record (a course: with its children); one change. NotFound as update,
        also when already deleted."""

    # --- sync primitives ------------------------------------------------------------------
    @abstractmethod
    def changes_since(
        self, cursor: Cursor, limit: int, *, exclude_origin: str | None = None,
        only_origin: str | None = None,
    ) -> list[Change]:
        """Changes of this user with `seq > cursor.get(origin, 0)`, tombstones included,
        ordered by (origin, seq), at most `limit`; none of `exclude_origin`, only those of
        `only_origin` when given. Within each origin the result is a gapless
        run starting right after the cursor, so a reader can move its cursor to the last seq it
        got per origin. A change: {origin, seq, hlc, kind, id, courseId, op: upsert|delete,
        fields: {name: value}, bases: {name: clock}}."""

    @abstractmethod
    def apply_changes(
        self, changes: list[Change], *, bookmarks: dict[str, Any] | None = None, relayed: bool = False,
        from_hub: bool = False,
    ) -> dict[str, Any]:
        """Merge foreign changes by the merge rule (merge.py), store them so they can be
        exported again, record every losing value as a conflict, and advance the clock past
        them. Idempotent: a change already stored (same origin, seq and hlc) is not applied
        again. `bookmarks` (key -> JSON value, see get_bookmark) are saved atomically with the
        batch where the store allows it (SQLite: same transaction). Every change is checked
        first (changes.check_change): one that fails is not applied, does not move the clock
        and does not stop the others; it goes to the quarantine with its reason, and the
        answer's "quarantined" lists {"origin", "seq", "reason"} for each.
        The sequence rule (sequences.admit) comes before: per origin, only a run that starts at
        most one past the store's top is taken; from a gap on nothing of that origin is, and
        "resume" maps such an origin to the top to send again from. `relayed`: a change stored
        under its slot with other content is left as it is instead of raising StateConflict.
        `from_hub`: changes pulled from the hub, whose door judged their stamps against its own
        clock: here a stamp may be up to twice the skew limit ahead (the hub's clock may be ahead
        of this one by one limit), so that every device applies what the hub took.
        Returns {"received", "applied", "conflicts", "resume", "quarantined"}."""

    def relay_changes(self, changes: list[Change], *, owned: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
        """Hand this store changes of the user's other origins that it may have lost (a hub
        restored from a backup or recreated): as apply_changes with `relayed=True`, which takes
        only what the store does not hold and never overwrites a change it holds. Nothing of an
        origin in `owned` (another device's, which gives its own back) is taken, checked or
        kept: the answer's "owned" maps each of those the batch named to this store's top."""
        named = {ch["origin"] for ch in changes if isinstance(ch, dict) and ch.get("origin") in owned}
        result = self.apply_changes([ch for ch in changes if not (isinstance(ch, dict) and ch.get("origin") in named)],
                                    relayed=True)
        tops = self.tops(named) if named else {}
        return {**result, "received": len(changes), "owned": {o: tops.get(o, 0) for o in sorted(named)}}

    @abstractmethod
    def tops(self, origins: set[str]) -> Cursor:
        """origin -> the newest sequence number this store holds of it, for those of `origins` it
        holds anything of."""

    @abstractmethod
    def shortfall(self, cursor: Cursor) -> dict[str, Any]:
        """{"shortfall": origin -> the newest seq this store holds, for each origin of `cursor`
        of which it holds less than the cursor says (a hub that acknowledged more than it now has;
        {} when it holds all of it), "rollbacks": the user's last ten such findings, oldest first,
        each {"id", "at" (epoch seconds), "origins", "changes" (how many were missing)}}. A
        shortfall is recorded as a finding first, so that every device of the user hears of it.
        "compacted": origin -> floor, for every compacted origin of which the cursor lacks part
        of what compaction dropped (sequences.behind): that reader needs `snapshot_page`;
        "floors": origin -> floor, for the compacted origins of the cursor (what every device this
        store serves has pulled: a device may drop its own copy of that part of its log)}."""

    @abstractmethod
    def snapshot_page(self, after: tuple[str, str] | None, limit: int) -> dict[str, Any]:
        """{"cursor": origin -> this store's newest seq of each, read before the records;
        "records": at most `limit` merge states (tombstones too: {kind, id, courseId, fields,
        clocks, bases, deleted, dclock, dbase}) in (kind, key) order after `after`; "next": the
        (kind, key) to ask after for the next page, None after the last}. The records with the
        log past the first page's cursor hold all the store holds, however much was compacted."""

    @abstractmethod
    def apply_snapshot(self, records: list[Any], *, bookmarks: dict[str, Any] | None = None,
                       held: Cursor | None = None) -> dict[str, Any]:
        """Merge a page of another store's records (snapshot_page) as the writes that made them
        (changes.writes_of), each checked at the door; a record that fails is quarantined with
        the reason. Nothing is logged: the writes are other origins' and already compacted away.
        `bookmarks` are stored in the same transaction; `held` (with the last page: the first
        page's cursor) is how far the records hold each origin, from which this store takes the
        log on (its own origin aside). Returns {"received", "applied" (records changed),
        "conflicts", "quarantined"}."""

    @abstractmethod
    def heal(self, records: list[Any], *, hold: Cursor | None = None, log_as: str | None = None,
             not_from: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
        """Merge a page of a device's records (as apply_snapshot does, checked at the door with
        the limit on stamps of a device's own pushes): a hub that lost history the devices no
        longer hold in their logs gets its effects back from their records. Writes stamped by an
        origin in `not_from` (another device's, which gives its own back) are not taken. With
        `log_as` (the healer's heal origin, changes.is_heal_origin), what the page changed in
        the records (per write, the fields it now holds) is logged under it, numbered past its
        top, so that every device pulls it; without, nothing is logged. With the last page,
        `hold` (origin -> seq) is how far the records now hold those origins: each one's top and
        floor rise to it after the records are merged, so that a reader below is sent the
        records. Returns {"received", "applied", "conflicts", "quarantined", "held", "logged":
        {log_as: the top logged} when anything was, "skipped": the origins of writes not taken}."""

    @abstractmethod
    def floors(self) -> Cursor:
        """origin -> its floor: the newest seq compacted out of the log (held all the same)."""

    @abstractmethod
    def log_sizes(self) -> dict[str, int]:
        """Every user's of this store (a hub's figures): {"changes": in the logs above the floors,
        "compacted": at or below them}."""

    @abstractmethod
    def compact(self, floors: Cursor, limit: int) -> int:
        """Drop, per origin, the changes up to `floors[origin]` (never past what the store holds),
        at most `limit` in all and in short writes, raising each origin's floor first so that no
        reader ever meets a hole. Returns how many were dropped: 0 when there is nothing left."""

    @abstractmethod
    def restart_origin(self, origin: str, first_seq: int) -> tuple[str, int]:
        """This store's own log from `first_seq` on is not what the hub holds under `origin`
        (the store was restored from a backup, or a copy of it syncs too). Unless this store's
        origin has already moved on from `origin`: in one step, move those changes, in order, to a
        new origin that numbers them from 1 and stamps them anew (changes.moved_to, the records
        they wrote too), make it this store's origin, and leave the changes before `first_seq`
        under `origin` as a foreign origin. Returns (this store's origin now, changes moved)."""

    @abstractmethod
    def pending_since(self, cursor: Cursor, origin: str | None = None) -> tuple[int, str | None]:
        """(count, oldest hlc) of changes after the cursor (only `origin`'s when given)."""

    @abstractmethod
    def list_conflicts(self, limit: int = 100, status: str = "all") -> list[dict[str, Any]]:
        """Recorded conflicts, newest first: `all`, the `open` ones or the `resolved` ones. Each
        has a `resolution`: null while open, else {"action": "restored"|"dismissed", "at", ...}."""

    @abstractmethod
    def get_conflict(self, conflict_id: str) -> dict[str, Any] | None:
        """One conflict (as list_conflicts gives it), or None."""

    @abstractmethod
    def resolve_conflict(self, conflict_id: str, resolution: dict[str, Any]) -> dict[str, Any] | None:
        """Record how a person resolved an open conflict (an already resolved one keeps its first
        resolution). Returns the conflict as it is now, or None when there is no such conflict."""

    @abstractmethod
    def settle_conflicts(self) -> int:
        """Resolve as `superseded` each open conflict whose field was written again since (a
        restore on another device, a later edit: `by` "edited") or whose record was deleted since
        (`by` "deleted"); how many. A round calls it, so a conflict settled on one device shows
        settled on all of them."""

    @abstractmethod
    def conflict_names(self, conflicts: list[dict[str, Any]]) -> dict[str, dict[str, str | None]]:
        """conflict id -> {"title": the record's title, "courseTitle": its course's}, each None
        when there is none (the user, a record never seen here)."""

    @abstractmethod
    def forget_resolved_conflicts(self, before: str) -> int:
        """Drop the conflicts a person resolved before `before` (an ISO time as `resolution.at`
        gives it); the open ones stay whatever their age. Returns how many went."""

    @abstractmethod
    def list_quarantine(self, limit: int = 100) -> list[dict[str, Any]]:
        """Changes refused at the door, newest first: {"id", "origin", "seq", "reason",
        "receivedAt", "change"} (the change as JSON text)."""

    @abstractmethod
    def count_quarantine(self) -> int:
        """How many changes are in the quarantine."""

    @abstractmethod
    def quarantine(self, entries: list[dict[str, Any]]) -> None:
        """Keep entries (changes.quarantine_entry) in the quarantine, once each by id: a device
        keeps there its own changes that the hub refused."""

    @abstractmethod
    def release_quarantined(self, ids: list[str]) -> int:
        """Take these entries out of the quarantine (a device's own refused change that it has
        written again); returns how many there were."""

    @abstractmethod
    def resend_own(self, seqs: list[int]) -> int:
        """Write again, as new changes of this store's own origin (next seqs, fresh stamps, the
        same bases), what of its own changes `seqs` its records still hold as those changes wrote
        it (changes.still_held): changes the hub refused because their stamps were ahead of its
        clock, once that clock has caught up. Returns how many changes were written."""

    @abstractmethod
    def count_conflicts(self) -> int:
        """How many conflicts are open (not resolved by a person)."""

    @abstractmethod
    def get_bookmark(self, key: str) -> Any:
        """A small JSON value the sync engine keeps: where this store is in a hub's log (the
        hub's epoch, the cursor, past resets). None when unset."""

    @abstractmethod
    def set_bookmark(self, key: str, value: Any) -> None:
        """Store a bookmark (see get_bookmark)."""

    @abstractmethod
    def hub_epoch(self) -> str:
        """An id that changes whenever this store is wiped and re-seeded."""

    @abstractmethod
    def dump_records(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every record of the user, tombstones included, as merge states keyed by (kind, id):
        what convergence checks compare."""

    @abstractmethod
    def is_empty(self) -> bool:
        """True when the store holds no record and no change of any user."""

    @abstractmethod
    def wipe(self) -> dict[str, int]:
        """Remove all records, changes, conflicts and sync state of every user, and start a new
        epoch. Returns counts removed per collection/table. Used by the seeders' reset."""


class StoreWatcher(Protocol):
    """What a hub's watcher reads of its store to wake the devices waiting there (the factory
    makes the backend's: connectors/sqlite/watcher.py, connectors/mongo/watcher.py)."""

    interval: float  # seconds between two looks

    def marker(self) -> Any:
        """A value that changes when the store may have changed since the last look; None when
        the backend has no cheap one (then every look reads the tops)."""

    def tops(self, users: list[str]) -> dict[str, tuple]:
        """user -> ((origin, top), ...) sorted, for those of `users` that hold any change."""

    def close(self) -> None:
        """Release what the watcher's thread opened."""
