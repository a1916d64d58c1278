"""The records as the API reads and writes them, written once over a backend (backend.py):
reads shaped as answers, and a store's own writes.

A local write is: inside the store's writer section, load the record, check it, build one change
(next sequence number, a new HLC, the fields written and the clocks they replace), then merge it
and persist it exactly as a foreign change would be. The same merge code (merge.py) decides for
both stores; each store makes the result atomic in its own way.
"""

from __future__ import annotations

import uuid
from typing import Any

from server.connectors.shared.backend import Backend
from server.connectors.shared.merging import Merger, Preloaded
from server.core import merge
from server.core.changes import (
    Key,
    record_key,
    state_key,
)
from server.core.clock import ZERO, stamp_ms
from server.core.errors import NotFound, PreconditionFailed, StateConflict
from server.core.etags import etag_matches
from server.core.records import CHILD_KINDS, COURSE, KINDS, USER, children_of
from server.core.shaping import course_tree, shape
from server.core.times import iso_from_ms


class Writes:
    """What the device's routes do with records: read them, and write one change of the store's
    own per call, through the merger to the backend."""

    def __init__(self, backend: Backend, merger: Merger):
        self.backend, self.merger = backend, merger

    def _now_iso(self, hlc: str) -> str:
        return iso_from_ms(stamp_ms(hlc))

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
        found = self.backend.load(wanted)
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
               delete_base: str = ZERO, preloaded: Preloaded | None = None) -> dict:
        """Write one change of this store's own; return the record's merged state."""
        seq = self.backend.next_seq()  # first: it may move the clock past other processes' stamps
        hlc = self.backend.clock.now()
        if op == "upsert":
            fields = {**fields, "updatedAt": self._now_iso(hlc)}
            if state is None or "createdAt" not in state["fields"]:
                fields.setdefault("createdAt", fields["updatedAt"])
            clocks = state["clocks"] if state else {}
            bases = {name: clocks.get(name, ZERO) for name in fields}
        else:
            bases = {"*": delete_base}
        change = {
            "origin": self.backend.origin, "seq": seq, "hlc": hlc, "kind": kind,
            "id": record_id, "courseId": course_id, "op": op, "fields": fields, "bases": bases,
        }
        states, _ = self.merger.merge_and_persist([change], own=True, preloaded=preloaded)
        key = (kind, record_key(kind, course_id, record_id))
        return next(s for s in states if state_key(s) == key)

    # --- reads ----------------------------------------------------------------------------
    def get_user(self) -> dict[str, Any]:
        with self.backend.reader():
            state = self.backend.load({(USER, self.backend.user_id)}).get((USER, self.backend.user_id))
            user = shape(state or merge.new_state(USER, self.backend.user_id, None))
            focus = user.get("focusCourseId")
            if focus:
                course = self.backend.load({(COURSE, focus)}).get((COURSE, focus))
                if course is None or course["deleted"]:
                    user["focusCourseId"] = None
        return user

    def get_courses(self) -> list[dict[str, Any]]:
        with self.backend.reader():
            live = self.backend.load_every_live_record()
        children: dict[str, list[dict]] = {}
        for s in live:
            if s["kind"] in CHILD_KINDS:
                children.setdefault(s["courseId"], []).append(s)
        courses = [course_tree(s, children.get(s["id"], [])) for s in live if s["kind"] == COURSE]
        return sorted(courses, key=lambda c: (c["createdAt"], c["id"]))

    def get_course(self, course_id: str) -> dict[str, Any]:
        with self.backend.reader():
            course = self._existing(COURSE, course_id)
            children = self.backend.load_children({course_id}).values()
        return course_tree(course, [c for c in children if not c["deleted"]])

    # --- writes ---------------------------------------------------------------------------
    def _write_user(self, fields: dict[str, Any], if_match: list[str] | None) -> dict[str, Any]:
        with self.backend.writer():
            if fields.get("focusCourseId") is not None:
                self._existing(COURSE, fields["focusCourseId"])
            if if_match is not None:  # the current answer is built only when it is compared
                current = self.get_user()
                if not etag_matches(if_match, current):
                    raise PreconditionFailed("The user changed since it was read.", current=current)
            state = self.backend.load({(USER, self.backend.user_id)}).get((USER, self.backend.user_id))
            self._write(state, USER, self.backend.user_id, None, "upsert", fields,
                        preloaded={(USER, self.backend.user_id): state})
        return self.get_user()

    def update_user_profile(self, display_name: str, *, if_match: list[str] | None = None) -> dict[str, Any]:
        return self._write_user({"displayName": display_name}, if_match)

    def set_focus_course(self, course_id: str | None, *, if_match: list[str] | None = None) -> dict[str, Any]:
        return self._write_user({"focusCourseId": course_id}, if_match)

    def _create(self, kind: str, course_id: str | None, new: dict[str, Any]) -> tuple[dict, bool]:
        fields = dict(new)
        record_id = fields.pop("id", None) or str(uuid.uuid4())
        with self.backend.writer():
            key = (kind, record_key(kind, course_id, record_id))
            wanted = {key} | ({(COURSE, course_id)} if course_id else set())
            found: dict[Key, dict | None] = {k: None for k in wanted}
            found.update(self.backend.load(wanted))
            course = found[(COURSE, course_id)] if course_id else None
            if course_id and (course is None or course["deleted"]):
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
        children = self.backend.load_children({state["id"]}).values()
        return course_tree(state, [c for c in children if not c["deleted"]])

    def _check_if_match(self, kind: str, state: dict, if_match: list[str] | None) -> None:
        if if_match is not None and not etag_matches(if_match, shape(state)):
            raise PreconditionFailed(f"The {kind} changed since it was read.", current=self._answer(state))

    def _update(self, kind: str, course_id: str | None, record_id: str, updates: dict,
                if_match: list[str] | None = None) -> dict:
        with self.backend.writer():
            state, found = self._existing_and_parent(kind, record_id, course_id)
            self._check_if_match(kind, state, if_match)
            if updates:
                state = self._write(state, kind, record_id, course_id, "upsert", updates, preloaded=found)
            return self._answer(state)

    def _delete(self, kind: str, course_id: str | None, record_id: str, if_match: list[str] | None = None) -> None:
        with self.backend.writer():
            state, found = self._existing_and_parent(kind, record_id, course_id)
            self._check_if_match(kind, state, if_match)
            base = merge.max_clock(state)
            if children_of(kind):
                base = max([base, *map(merge.max_clock, self.backend.load_children({record_id}).values())])
            self._write(state, kind, record_id, course_id, "delete", {}, delete_base=base, preloaded=found)

    def create(self, kind: str, parent_id: str | None, new: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        return self._create(_record_kind(kind, parent_id), parent_id, new)

    def update(self, kind: str, parent_id: str | None, record_id: str, updates: dict[str, Any], *,
               if_match: list[str] | None = None) -> dict[str, Any]:
        return self._update(_record_kind(kind, parent_id), parent_id, record_id, updates, if_match)

    def delete(self, kind: str, parent_id: str | None, record_id: str, *, if_match: list[str] | None = None) -> None:
        self._delete(_record_kind(kind, parent_id), parent_id, record_id, if_match)


def _record_kind(kind: str, parent_id: str | None) -> str:
    """The kind, checked: a programming error (not bad input) when it is unknown, the user, or
    given a parent it does not have."""
    spec = KINDS.get(kind)
    if spec is None or kind == USER or (spec.parent is None) != (parent_id is None):
        raise ValueError(f"not a record kind with parent {parent_id!r}: {kind!r}")
    return kind

