"""Seed files: validation of the whole file (every problem named by its path) and its
translation into changes. Both stores are seeded by applying the same changes, from an origin
named after the file's content, so two stores seeded from one file hold identical records and
identical change logs: a later sync between them finds nothing to do."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from server.core.changes import Change
from server.core.clock import encode
from server.core.records import CHILD_PLURALS, COURSE, EPOCH_START, KINDS, USER, check_fields, children_of
from server.core.times import ms_from_iso

TOP_KEYS = {"user", "courses"}


class SeedError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems[:20]))
        self.problems = problems


def _record(kind: str, raw: Any, path: str, problems: list[str]) -> dict[str, Any]:
    """One record of the file, checked as the API checks a stored record (records.check_fields);
    its children and its parent reference are the caller's."""
    if not isinstance(raw, dict):
        problems.append(f"{path}: must be an object")
        return {}
    nested = {k for k in raw if kind != USER and (k in CHILD_PLURALS or k == "courseId")}
    clean, found = check_fields(kind, {k: v for k, v in raw.items() if k not in nested}, "stored")
    problems.extend(f"{path}.{key}: {problem}" for key, problem in found.items())
    clean.setdefault("createdAt", clean.get("updatedAt", EPOCH_START))
    clean.setdefault("updatedAt", clean["createdAt"])
    return clean


def _children(course: dict[str, Any], raw: dict[str, Any], path: str, seen: dict[str, set[str]],
              problems: list[str]) -> None:
    """A course's nested lectures, assignments (every child kind) into `course`, checked."""
    for kind in children_of(COURSE):
        items = raw.get(kind.plural, [])
        if not isinstance(items, list):
            problems.append(f"{path}.{kind.plural}: must be a list")
            items = []
        course[kind.plural] = []
        for j, child_raw in enumerate(items):
            cpath = f"{path}.{kind.plural}[{j}]"
            child = _record(kind.name, child_raw, cpath, problems)
            if not child:
                continue
            if child_raw.get("courseId", course.get("id")) != course.get("id"):
                problems.append(f"{cpath}.courseId: must be the id of the course it is in")
            _unique(seen[kind.name], child.get("id"), f"{cpath}.id", problems)
            course[kind.plural].append(child)


def validate_seed(data: Any) -> dict[str, Any]:
    """The whole file checked; raises SeedError listing every problem by path."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise SeedError(["$: must be an object with 'user' and 'courses'"])
    for key in data:
        if key not in TOP_KEYS:
            problems.append(f"{key}: unknown field")
    user = _record(USER, data.get("user"), "user", problems) if "user" in data else {}
    if "user" not in data:
        problems.append("user: is required")
    courses_raw = data.get("courses", [])
    if not isinstance(courses_raw, list):
        problems.append("courses: must be a list")
        courses_raw = []
    seen: dict[str, set[str]] = {kind: set() for kind in KINDS}
    courses = []
    for i, raw in enumerate(courses_raw):
        path = f"courses[{i}]"
        course = _record(COURSE, raw, path, problems)
        if course:
            _unique(seen[COURSE], course.get("id"), f"{path}.id", problems)
            _children(course, raw, path, seen, problems)
            courses.append(course)
    focus = user.get("focusCourseId")
    if focus is not None and focus not in seen[COURSE]:
        problems.append("user.focusCourseId: must be null or the id of a course in this file")
    if problems:
        raise SeedError(problems)
    return {"user": user, "courses": courses}


def _unique(seen: set[str], value: Any, path: str, problems: list[str]) -> None:
    if isinstance(value, str):
        if value in seen:
            problems.append(f"{path}: duplicate id {value!r}")
        seen.add(value)


def seed_changes(seed: dict[str, Any]) -> tuple[str, list[Change]]:
    """(origin, changes) for a validated seed: one upsert per record, user first, each course
    before its lectures and assignments, stamped with the record's own updatedAt."""
    content = json.dumps(seed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    origin = "seed-" + hashlib.sha256(content.encode()).hexdigest()[:12]
    changes: list[Change] = []

    def add(kind: str, record: dict[str, Any], course_id: str | None) -> None:
        fields = {k: v for k, v in record.items() if k != "id" and k not in CHILD_PLURALS}
        hlc = encode(ms_from_iso(record["updatedAt"]), 0, origin)
        changes.append({
            "origin": origin, "seq": len(changes) + 1, "hlc": hlc, "kind": kind, "id": record["id"],
            "courseId": course_id, "op": "upsert", "fields": fields,
            "bases": {name: "" for name in fields},
        })

    add(USER, seed["user"], None)
    for course in seed["courses"]:
        add(COURSE, course, None)
        for kind in children_of(COURSE):
            for child in course[kind.plural]:
                add(kind.name, child, course["id"])
    return origin, changes
