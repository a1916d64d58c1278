"""The merge rule, as one pure function both connectors call, so both decide alike.

A record's state: {"kind", "id", "courseId", "fields", "clocks", "bases", "deleted", "dclock",
"dbase"}. `clocks[f]` is the HLC of the write that set field f; `bases[f]` is the clock of the
value that write replaced on its own device (what its writer had seen). A change: {"origin",
"seq", "hlc", "kind", "id", "courseId", "op", "fields", "bases"}; a delete carries in
`bases["*"]` the newest clock its writer had seen in the record (and, for a course, in its
lectures and assignments).

The rule:
- per field, the higher HLC wins (stamps end in the device id, so there are no ties);
- delete wins: a tombstone stays a tombstone, and updates to it, or to a child of a deleted
  course, are dropped;
- a value that loses is reported as a conflict unless its loser had been seen by the winner's
  writer (then it was an ordinary overwrite, not a conflict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.clock import ZERO
from server.records import META_FIELDS

DELETED = "<deleted>"


@dataclass
class Outcome:
    state: dict[str, Any] | None
    changed: bool = False
    conflicts: list[dict[str, Any]] = field(default_factory=list)


def new_state(kind: str, record_id: str, course_id: str | None) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": record_id,
        "courseId": course_id,
        "fields": {},
        "clocks": {},
        "bases": {},
        "deleted": False,
        "dclock": ZERO,
        "dbase": ZERO,
    }


def max_clock(state: dict[str, Any]) -> str:
    return max([state.get("dclock") or ZERO, *state["clocks"].values()], default=ZERO)


def _conflict(state, fname, local_value, local_hlc, remote_value, remote_hlc, winner, reason):
    return {
        "kind": state["kind"],
        "recordId": state["id"],
        "courseId": state.get("courseId"),
        "field": fname,
        "localValue": local_value,
        "localHlc": local_hlc,
        "remoteValue": remote_value,
        "remoteHlc": remote_hlc,
        "winner": winner,
        "reason": reason,
    }


def apply_change(
    state: dict[str, Any] | None,
    change: dict[str, Any],
    parent: dict[str, Any] | None = None,
) -> Outcome:
    """Merge one change into one record's state. `parent` is the course state for a lecture or
    assignment, when the store has it. Returns the new state, whether it differs, and conflicts.
    Applying the same change twice changes nothing the second time."""
    if state is None:
        state = new_state(change["kind"], change["id"], change.get("courseId"))
    else:
        state = {
            **state,
            "fields": dict(state["fields"]),
            "clocks": dict(state["clocks"]),
            "bases": dict(state["bases"]),
        }
    if change["op"] == "delete":
        return _delete(state, change["hlc"], change.get("bases", {}).get("*", ZERO))
    if parent is not None and parent.get("deleted"):
        # A write under a deleted course: the course's delete wins, the child becomes a tombstone.
        out = _drop_update(state, change, parent["dbase"])
        tomb = _delete(out.state, parent["dclock"], parent["dbase"], report=False)
        return Outcome(tomb.state, out.changed or tomb.changed, out.conflicts)
    if state["deleted"]:
        return _drop_update(state, change, state["dbase"])
    return _upsert(state, change)


def _upsert(state: dict[str, Any], change: dict[str, Any]) -> Outcome:
    out = Outcome(state)
    hlc = change["hlc"]
    bases = change.get("bases", {})
    if state.get("courseId") is None and change.get("courseId"):
        state["courseId"] = change["courseId"]
    for fname, value in change["fields"].items():
        local_hlc = state["clocks"].get(fname, ZERO)
        if hlc == local_hlc:
            continue  # the same write, already applied
        local_value = state["fields"].get(fname)
        reportable = fname not in META_FIELDS and local_value != value and local_hlc != ZERO
        if hlc > local_hlc:
            if reportable and bases.get(fname, ZERO) < local_hlc:
                out.conflicts.append(
                    _conflict(state, fname, local_value, local_hlc, value, hlc, "remote", "newer_write")
                )
            state["fields"][fname] = value
            state["clocks"][fname] = hlc
            state["bases"][fname] = bases.get(fname, ZERO)
            out.changed = True
        elif reportable and state["bases"].get(fname, ZERO) < hlc:
            out.conflicts.append(
                _conflict(state, fname, local_value, local_hlc, value, hlc, "local", "newer_write")
            )
    return out


def _drop_update(state: dict[str, Any], change: dict[str, Any], delete_base: str) -> Outcome:
    out = Outcome(state)
    if change["hlc"] <= delete_base:
        return out  # the deleter had seen this write: nothing was lost without a trace
    for fname, value in change["fields"].items():
        if fname in META_FIELDS:
            continue
        out.conflicts.append(
            _conflict(state, fname, DELETED, state.get("dclock") or ZERO, value, change["hlc"],
                      "local", "deleted")
        )
    return out


def _delete(state: dict[str, Any], hlc: str, base: str, report: bool = True) -> Outcome:
    out = Outcome(state)
    if state["deleted"]:
        if hlc > state["dclock"]:
            state["dclock"], state["dbase"] = hlc, max(base, state["dbase"])
            out.changed = True
        return out
    if report:
        for fname, value in state["fields"].items():
            local_hlc = state["clocks"].get(fname, ZERO)
            if fname not in META_FIELDS and local_hlc > base:
                out.conflicts.append(
                    _conflict(state, fname, value, local_hlc, DELETED, hlc, "remote", "deleted")
                )
    # A tombstone keeps its id, clock and flag, nothing else.
    state.update(fields={}, clocks={}, bases={}, deleted=True, dclock=hlc, dbase=base)
    out.changed = True
    return out


def cascade_delete(child: dict[str, Any], course: dict[str, Any]) -> Outcome:
    """A course's delete reaching one of its lectures or assignments."""
    if not course.get("deleted"):
        return Outcome(child)
    child = {**child, "fields": dict(child["fields"]), "clocks": dict(child["clocks"])}
    return _delete(child, course["dclock"], course["dbase"])
