"""What both connectors share: the domain operations of the contract, written once on top of a
handful of storage primitives that each connector implements in its own store.

A local write is: inside the store's writer section, load the record, check it, build one change
(next sequence number, a new HLC, the fields written and the clocks they replace), then merge it
and persist it exactly as a foreign change would be. The same merge code (merge.py) decides for
both stores; each store makes the result atomic in its own way.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from abc import abstractmethod
from contextlib import AbstractContextManager
from typing import Any

import orjson

from server import merge
from server.changes import (
    MAX_SKEW_MS,
    Change,
    Key,
    change_key,
    record_key,
    state_key,
)
from server.clock import ZERO, HybridClock, stamp_ms
from server.connectors.base import DatabaseConnector
from server.connectors.intake import ChangeIntake, RetryMerge
from server.errors import NotFound, PreconditionFailed, StateConflict
from server.records import (
    CHILD_KINDS,
    COURSE,
    KINDS,
    USER,
    children_of,
    etag_matches,
    iso_now_from_ms,
)
from server.shaping import course_tree, shape

log = logging.getLogger("server.sync")


class MergingConnector(ChangeIntake, DatabaseConnector):
    clock: HybridClock
    max_skew_ms = MAX_SKEW_MS  # MAX_CLOCK_SKEW_SECONDS; the factory sets it from the settings

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

    @abstractmethod
    def _persist(self, changes: list[Change], states: list[dict], conflicts: list[dict],
                 *, own: bool, bookmarks: dict[str, Any] | None, quarantined: list[dict] = ()) -> None:
        """Store changes, merged records, conflicts (deduplicated by id), sync state and the
        clock, atomically or in a crash-safe order. Raise RetryMerge on a lost race."""

    # --- helpers --------------------------------------------------------------------------
    def _now_iso(self, hlc: str) -> str:
        return iso_now_from_ms(stamp_ms(hlc))

    def _existing(self, kind: str, record_id: str, course_id: str | None = None) -> dict[str, Any]:
        return self._existing_and_parent(kind, record_id, course_id)[0]

    def _existing_and_parent(self, kind: str, record_id: str, course_id: str | None = None) -> tuple[dict, dict]:
        """The live record and everything loaded with it (its course), for reuse by a write."""
        # Only plain strings ever reach a query: a dict here could be an operator like {"$ne": ...}.
        if course_id is not None and not isinstance(course_id, str):
            raise NotFound("No such course.", code=KINDS[COURSE].not_found_code)
        if not isinstance(record_id, str):
            raise NotFound(f"No such {kind}.", code=KINDS[kind].not_found_code)
        key = (kind, record_key(kind, course_id, record_id))
        wanted = {key} | ({(COURSE, course_id)} if course_id else set())
        found = self._load(wanted)
        if course_id:
            course = found.get((COURSE, course_id))
            if course is None or course["deleted"]:
                raise NotFound("No such course.", code=KINDS[COURSE].not_found_code)
        state = found.get(key)
        if state is None or state["deleted"]:
            raise NotFound(f"No such {kind}.", code=KINDS[kind].not_found_code)
        return state, found

    def _write(self, state: dict[str, Any] | None, kind: str, record_id: str,
               course_id: str | None, op: str, fields: dict[str, Any],
               delete_base: str = ZERO, preloaded: dict[Key, dict | None] | None = None) -> dict:
        """Write one change of this store's own; return the record's merged state."""
        seq = self._next_seq()  # first: it may move the clock past other processes' stamps
        hlc = self.clock.now()
        if op == "upsert":
            fields = {**fields, "updatedAt": self._now_iso(hlc)}
            if state is None or "createdAt" not in state["fields"]:
                fields.setdefault("createdAt", fields["updatedAt"])
            clocks = state["clocks"] if state else {}
            bases = {name: clocks.get(name, ZERO) for name in fields}
        else:
            bases = {"*": delete_base}
        change = {
            "origin": self.origin, "seq": seq, "hlc": hlc, "kind": kind,
            "id": record_id, "courseId": course_id, "op": op, "fields": fields, "bases": bases,
        }
        states, _ = self._merge_and_persist([change], own=True, preloaded=preloaded)
        key = (kind, record_key(kind, course_id, record_id))
        return next(s for s in states if state_key(s) == key)

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
            "detectedAt": iso_now_from_ms(stamp_ms(self.clock.now())),
        }

    def _merge_and_persist(self, changes: list[Change], *, own: bool, bookmarks: dict[str, Any] | None = None,
                           preloaded: dict[Key, dict | None] | None = None,
                           quarantined: list[dict] = ()) -> tuple[list[dict], list[dict]]:
        """Merge and store; returns (changed states, conflicts). What the caller loaded in the
        same writer section may be passed in; a retry after a lost race loads afresh."""
        for _ in range(20):
            states, conflicts = self._merge(changes, preloaded)
            preloaded = None
            try:
                self._persist(changes, states, conflicts, own=own, bookmarks=bookmarks, quarantined=quarantined)
                return states, conflicts
            except RetryMerge:
                continue
        raise StateConflict("The hub kept changing under this batch; try again.", code="busy")

    # --- reads ----------------------------------------------------------------------------
    def get_user(self) -> dict[str, Any]:
        with self._reader():
            state = self._load({(USER, self.user_id)}).get((USER, self.user_id))
            user = shape(state or merge.new_state(USER, self.user_id, None))
            focus = user.get("focusCourseId")
            if focus:
                course = self._load({(COURSE, focus)}).get((COURSE, focus))
                if course is None or course["deleted"]:
                    user["focusCourseId"] = None
        return user

    def get_courses(self) -> list[dict[str, Any]]:
        with self._reader():
            live = self._load_every_live_record()
        children: dict[str, list[dict]] = {}
        for s in live:
            if s["kind"] in CHILD_KINDS:
                children.setdefault(s["courseId"], []).append(s)
        courses = [course_tree(s, children.get(s["id"], [])) for s in live if s["kind"] == COURSE]
        return sorted(courses, key=lambda c: (c["createdAt"], c["id"]))

    def get_course(self, course_id: str) -> dict[str, Any]:
        with self._reader():
            course = self._existing(COURSE, course_id)
            children = self._load_children({course_id}).values()
        return course_tree(course, [c for c in children if not c["deleted"]])

    # --- writes ---------------------------------------------------------------------------
    def _write_user(self, fields: dict[str, Any], if_match: list[str] | None) -> dict[str, Any]:
        with self._writer():
            if fields.get("focusCourseId") is not None:
                self._existing(COURSE, fields["focusCourseId"])
            if if_match is not None:  # the current answer is built only when it is compared
                current = self.get_user()
                if not etag_matches(if_match, current):
                    raise PreconditionFailed("The user changed since it was read.", current=current)
            state = self._load({(USER, self.user_id)}).get((USER, self.user_id))
            self._write(state, USER, self.user_id, None, "upsert", fields,
                        preloaded={(USER, self.user_id): state})
        return self.get_user()

    def update_user_profile(self, display_name: str, *, if_match: list[str] | None = None) -> dict[str, Any]:
        return self._write_user({"displayName": display_name}, if_match)

    def set_focus_course(self, course_id: str | None, *, if_match: list[str] | None = None) -> dict[str, Any]:
        return self._write_user({"focusCourseId": course_id}, if_match)

    def _create(self, kind: str, course_id: str | None, new: dict[str, Any]) -> tuple[dict, bool]:
        fields = dict(new)
        record_id = fields.pop("id", None) or str(uuid.uuid4())
        with self._writer():
            key = (kind, record_key(kind, course_id, record_id))
            wanted = {key} | ({(COURSE, course_id)} if course_id else set())
            found: dict[Key, dict | None] = {k: None for k in wanted}
            found.update(self._load(wanted))
            if course_id and (found[(COURSE, course_id)] is None or found[(COURSE, course_id)]["deleted"]):
                raise NotFound("No such course.", code=KINDS[COURSE].not_found_code)
            existing = found[key]
            if existing is not None:
                current = shape(existing) if not existing["deleted"] else None
                if current and all(current.get(k) == v for k, v in fields.items()):
                    return self._answer(existing), False
                raise StateConflict(
                    f"A {kind} with id {record_id!r} already exists"
                    + (" and was deleted." if existing["deleted"] else " with other values."),
                    code="id_conflict",
                )
            return self._answer(self._write(None, kind, record_id, course_id, "upsert", fields, preloaded=found)), True

    def _answer(self, state: dict[str, Any]) -> dict[str, Any]:
        """The API answer for a record just written (a course with its lectures and assignments)."""
        if state["kind"] != COURSE:
            return shape(state)
        children = self._load_children({state["id"]}).values()
        return course_tree(state, [c for c in children if not c["deleted"]])

    def _check_if_match(self, kind: str, course_id: str | None, state: dict, if_match: list[str] | None) -> None:
        if if_match is not None and not etag_matches(if_match, shape(state)):
            raise PreconditionFailed(f"The {kind} changed since it was read.", current=self._answer(state))

    def _update(self, kind: str, course_id: str | None, record_id: str, updates: dict,
                if_match: list[str] | None = None) -> dict:
        with self._writer():
            state, found = self._existing_and_parent(kind, record_id, course_id)
            self._check_if_match(kind, course_id, state, if_match)
            if updates:
                state = self._write(state, kind, record_id, course_id, "upsert", updates, preloaded=found)
            return self._answer(state)

    def _delete(self, kind: str, course_id: str | None, record_id: str, if_match: list[str] | None = None) -> None:
        with self._writer():
            state, found = self._existing_and_parent(kind, record_id, course_id)
            self._check_if_match(kind, course_id, state, if_match)
            base = merge.max_clock(state)
            if children_of(kind):
                base = max([base, *map(merge.max_clock, self._load_children({record_id}).values())])
            self._write(state, kind, record_id, course_id, "delete", {}, delete_base=base, preloaded=found)

    def create(self, kind, parent_id, new):
        return self._create(_record_kind(kind, parent_id), parent_id, new)

    def update(self, kind, parent_id, record_id, updates, *, if_match=None):
        return self._update(_record_kind(kind, parent_id), parent_id, record_id, updates, if_match)

    def delete(self, kind, parent_id, record_id, *, if_match=None):
        self._delete(_record_kind(kind, parent_id), parent_id, record_id, if_match)

def _record_kind(kind: str, parent_id: str | None) -> str:
    """The kind, checked: a programming error (not bad input) when it is unknown, the user, or
    given a parent it does not have."""
    spec = KINDS.get(kind)
    if spec is None or kind == USER or (spec.parent is None) != (parent_id is None):
        raise ValueError(f"not a record kind with parent {parent_id!r}: {kind!r}")
    return kind


def compact_json(value: Any) -> str:
    """Compact JSON text for storage (key order is irrelevant: stored values are compared
    decoded). orjson: encoding is on every write's path and it is about ten times faster."""
    return orjson.dumps(value).decode()
