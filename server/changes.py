"""The pure types of sync, shared by the seeders, the sync engine and the connectors: a change,
a cursor, how a record is keyed, and the sequence spans of a batch. No I/O, no connector."""

from __future__ import annotations

from typing import Any

from server.records import CHILD_KINDS

Change = dict[str, Any]  # {"origin", "seq", "hlc", "kind", "id", "courseId", "op", "fields", "bases"}
Cursor = dict[str, int]  # origin -> last sequence number seen
Key = tuple[str, str]  # (kind, record key)


def record_key(kind: str, course_id: str | None, record_id: str) -> str:
    """How stores key a record. A lecture or assignment is keyed within its course, so the same
    client-chosen id under two courses names two records, never one record with two parents."""
    return f"{course_id}/{record_id}" if kind in CHILD_KINDS else record_id


def state_key(state: dict[str, Any]) -> Key:
    return state["kind"], record_key(state["kind"], state.get("courseId"), state["id"])


def change_key(change: Change) -> Key:
    return change["kind"], record_key(change["kind"], change["courseId"], change["id"])


def seq_spans(changes: list[Change]) -> dict[str, tuple[int, int]]:
    """origin -> (lowest, highest) sequence number among these changes. A batch's numbers are a
    run per origin, so one index range per origin finds which of them a store already holds."""
    spans: dict[str, tuple[int, int]] = {}
    for c in changes:
        low, high = spans.get(c["origin"], (c["seq"], c["seq"]))
        spans[c["origin"]] = (min(low, c["seq"]), max(high, c["seq"]))
    return spans
