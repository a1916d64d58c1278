"""The storage primitives: what each store (SQLite, MongoDB) implements so that the shared
operations (intake.py's door and merge of foreign changes, merging.py's reads and writes) can be
written once, and the one write path down to them: merge a batch with merge.py, then persist it.

Everything the shared operations use of a store is declared here, nothing else: a store adds
its own private helpers, the shared code never reaches for them. How sequence numbers may run
(what a reader may step over) is server/core/sequences.py's, not a store's."""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from contextlib import AbstractContextManager
from typing import Any

import orjson

from server.connectors.base import DatabaseConnector
from server.core import merge
from server.core.changes import MAX_SKEW_MS, QUARANTINE_BODY_MAX, Change, Key, change_key
from server.core.clock import HybridClock, stamp_ms
from server.core.errors import StateConflict
from server.core.records import CHILD_KINDS, COURSE
from server.core.times import iso_from_ms


def entry_bytes(entry: dict[str, Any]) -> int:
    """What a quarantine entry takes as stored (its compact JSON), for the hub's cap in bytes."""
    return len(orjson.dumps(entry))


class RetryMerge(Exception):
    """A record changed under us between load and save (Mongo's optimistic check): redo."""


class Storage(DatabaseConnector):
    clock: HybridClock  # stamps this store's own changes; set by connect()
    store_kind: str  # "sql" or "mongo": the letter that starts the origins this store makes
    max_skew_ms = MAX_SKEW_MS  # MAX_CLOCK_SKEW_SECONDS; the factory sets it from the settings
    quarantine_keep = QUARANTINE_BODY_MAX  # bytes of a refused change kept (a hub keeps 1 KB)
    quarantine_cap: int | None = None  # refused changes kept at most (a hub's quota), None: all
    quarantine_cap_bytes: int | None = None  # and the bytes they take as stored (entry_bytes), None: any

    # --- primitives each store implements -------------------------------------------------
    @abstractmethod
    def _writer(self) -> AbstractContextManager:
        """Exclusive section for this store's own writes (one writer per origin)."""

    @abstractmethod
    def _reader(self) -> AbstractContextManager:
        """A consistent view for multi-query reads."""

    @abstractmethod
    def _load(self, keys: set[Key]) -> dict[Key, dict[str, Any]]:
        """Merge states of these records (tombstones too); missing ones are absent."""

    @abstractmethod
    def _load_children(self, course_ids: set[str]) -> dict[Key, dict[str, Any]]:
        """Merge states of the lectures and assignments of these courses, tombstones too."""

    @abstractmethod
    def _load_every_live_record(self) -> list[dict[str, Any]]:
        """Every live course, lecture and assignment of the user, as states that carry only what
        shaping an answer needs (kind, id, courseId, fields): the read path skips the clocks."""

    @abstractmethod
    def _next_seq(self) -> int:
        """The next sequence number of this store's own origin (inside `_writer`). A store that
        other processes also write to first observes the newest stamp they stored, so that the
        stamp taken next sorts after everything already in the store."""

    def _refresh_origin(self) -> None:
        """Take on the origin another process moved this store to (a store shared by processes)."""

    @abstractmethod
    def _retire_tail(self, origin: str, first_seq: int, new: str, moved: list[Change], states: list[dict]) -> None:
        """Inside `_writer`: drop `origin`'s changes from `first_seq` on, store `moved` (their
        copies under the new origin) and `states` (the records they wrote, restamped), and make
        the new origin this store's own. Raise RetryMerge on a lost race."""

    def _complete(self, changes: list[Change]) -> None:
        """Finish what an earlier attempt to store these (already logged) changes may have left
        undone. A store that logs a batch in one transaction has nothing to finish."""

    @abstractmethod
    def _tops_of(self, origins: set[str]) -> dict[str, int]:
        """origin -> the newest sequence number this store holds of it, for those of `origins` it
        holds anything of (the own origin included)."""

    @abstractmethod
    def _known(self, changes: list[Change], whole: bool = False) -> dict[tuple[str, int], Any]:
        """(origin, seq) -> hlc (or, `whole`, the stored change) for those of these changes already
        stored, whatever the origin's top says."""

    # --- compacted history (sequences.held_below, sequences.behind) ---------------------------
    @abstractmethod
    def _every_top(self) -> dict[str, int]:
        """origin -> the newest sequence number this store holds of it, for every origin."""

    @abstractmethod
    def _floors_of(self, origins: set[str] | None) -> dict[str, int]:
        """origin -> its floor (the newest seq compacted out of the log), for those of `origins`
        (None: every origin) that have been compacted."""

    @abstractmethod
    def _compact_origin(self, origin: str, floor: int, limit: int) -> int:
        """Raise the origin's floor to `floor` (never past its top), then drop at most `limit`
        of its oldest changes at or below the floor, in one short write; returns how many went."""

    @abstractmethod
    def _log_sizes(self) -> dict[str, int]:
        """Every user's of this store: {"changes": in the logs above the floors, "compacted":
        at or below them}, from each origin's top and floor (no count of the log itself)."""

    @abstractmethod
    def _hold(self, held: dict[str, int]) -> None:
        """Record that this store holds these origins up to these seqs without their changes (a
        snapshot's records brought them): each one's top and floor rise to it."""

    @abstractmethod
    def _append(self, origin: str, changes: list[Change]) -> list[Change]:
        """Inside `_writer`: log `changes` under `origin` (not this store's own) at the next
        numbers past its top, none taken twice however many processes append at once; returns
        them as logged."""

    @abstractmethod
    def _records_after(self, after: Key | None, limit: int) -> list[dict[str, Any]]:
        """At most `limit` merge states (tombstones too) in (kind, key) order, after `after`."""

    @abstractmethod
    def _quarantine_held(self) -> tuple[int, int]:
        """(refused changes this user's quarantine holds, the bytes they take: entry_bytes of each)."""

    @abstractmethod
    def _persist(self, changes: list[Change], states: list[dict], conflicts: list[dict],
                 *, own: bool, bookmarks: dict[str, Any] | None, quarantined: list[dict] = ()) -> None:
        """Store changes, merged records, conflicts (deduplicated by id), sync state and the
        clock, atomically or in a crash-safe order. Raise RetryMerge on a lost race."""

    def _over_cap(self, rows: int, size: int) -> bool:
        """Would a quarantine of `rows` entries taking `size` bytes be over this store's cap?"""
        return self.quarantine_cap is not None and (rows > self.quarantine_cap or (
            self.quarantine_cap_bytes is not None and size > self.quarantine_cap_bytes))

    # --- the one write path: merge, then persist -------------------------------------------
    def _merge(self, changes: list[Change], preloaded: dict[Key, dict | None] | None = None,
               ) -> tuple[list[dict], list[dict]]:
        keys = {change_key(c) for c in changes}
        keys |= {(COURSE, c["courseId"]) for c in changes if c["kind"] in CHILD_KINDS and c["courseId"]}
        preloaded = preloaded or {}
        cache = {k: v for k, v in preloaded.items() if v is not None}
        cache.update(self._load(keys - preloaded.keys()))
        deleted_courses = {c["id"] for c in changes if c["kind"] == COURSE and c["op"] == "delete"}
        if deleted_courses:
            cache.update(self._load_children(deleted_courses))
        dirty: set[Key] = set()
        conflicts: list[dict] = []
        for ch in changes:
            key = change_key(ch)
            parent = cache.get((COURSE, ch["courseId"])) if ch["kind"] in CHILD_KINDS else None
            out = merge.apply_change(cache.get(key), ch, parent)
            conflicts += [self._stamp_conflict(c, ch) for c in out.conflicts]
            if out.changed:
                cache[key], _ = out.state, dirty.add(key)
            if ch["kind"] == COURSE and ch["op"] == "delete":
                course = cache[key]
                for ckey, child in list(cache.items()):
                    if ckey[0] in CHILD_KINDS and child.get("courseId") == ch["id"]:
                        sub = merge.cascade_delete(child, course)
                        conflicts += [self._stamp_conflict(c, ch) for c in sub.conflicts]
                        if sub.changed:
                            cache[ckey], _ = sub.state, dirty.add(ckey)
        return [cache[k] for k in dirty], conflicts

    def _stamp_conflict(self, conflict: dict, change: Change) -> dict:
        # One loss is one entry, whichever side it was seen from: a write re-merged after the
        # write that beat it (a repaired tail) finds the entry its first merge made.
        pair = sorted((conflict["localHlc"], conflict["remoteHlc"]))
        where = (conflict["kind"], conflict["courseId"], conflict["recordId"], conflict["field"])
        ident = "|".join(map(str, (*where, *pair)))
        return {
            **conflict,
            "id": hashlib.sha256(ident.encode()).hexdigest()[:24],
            "remoteOrigin": change["origin"],
            "detectedAt": iso_from_ms(stamp_ms(self.clock.now())),
        }

    def _merge_and_persist(self, changes: list[Change], *, own: bool, bookmarks: dict[str, Any] | None = None,
                           preloaded: dict[Key, dict | None] | None = None,
                           quarantined: list[dict] = (), log: bool = True, logged: list[Change] | None = None,
                           ) -> tuple[list[dict], list[dict]]:
        """Merge and store; returns (changed states, conflicts). What the caller loaded in the
        same writer section may be passed in; a retry after a lost race loads afresh. Without
        `log`, the changes are merged but not logged (writes rebuilt from a snapshot's records);
        `logged`: only those of them are logged."""
        for _ in range(20):
            states, conflicts = self._merge(changes, preloaded)
            preloaded = None
            try:
                self._persist((changes if logged is None else logged) if log else [], states, conflicts, own=own,
                              bookmarks=bookmarks, quarantined=quarantined)
                return states, conflicts
            except RetryMerge:
                continue
        raise StateConflict("The hub kept changing under this batch; try again.", code="busy")
