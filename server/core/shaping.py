"""How a stored record is answered: a merge state shaped as the API's JSON, and a course with
its lectures and assignments. Pure; both connectors answer through it."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from server.core.records import CHILD_KINDS, COURSE, EPOCH_START, KINDS, children_of

COURSE_CHILDREN = children_of(COURSE)
SHAPE_DEFAULTS = {kind: spec.defaults() for kind, spec in KINDS.items()}
SHAPE_KEYS = {kind: frozenset(spec.by_name) | {"createdAt", "updatedAt"} for kind, spec in KINDS.items()}


def shape(state: dict[str, Any]) -> dict[str, Any]:
    """The record as the API answers it: defaults for fields never written, no field this
    version does not know (written by a newer one), and both timestamps."""
    kind, fields = state["kind"], state["fields"]
    out: dict[str, Any] = {"id": state["id"], "courseId": state["courseId"]} if kind in CHILD_KINDS \
        else {"id": state["id"]}
    allowed = SHAPE_KEYS[kind]
    out.update(SHAPE_DEFAULTS[kind])
    out.update(fields if fields.keys() <= allowed else {k: v for k, v in fields.items() if k in allowed})
    if "tags" in out and "tags" not in fields:
        out["tags"] = []  # never share the default list between answers
    if "createdAt" not in out:
        out["createdAt"] = EPOCH_START
    if "updatedAt" not in out:
        out["updatedAt"] = out["createdAt"]
    return out


def course_tree(course: dict[str, Any], children: list[dict[str, Any]]) -> dict[str, Any]:
    """A course with its live children, each kind under its plural in the kind's order."""
    shaped = shape(course)
    for kind in COURSE_CHILDREN:
        rows = [shape(c) for c in children if c["kind"] == kind.name]
        shaped[kind.plural] = sorted(rows, key=itemgetter(*kind.order_by))
    return shaped
