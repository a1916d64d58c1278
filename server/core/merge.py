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
  course, are dropped; two deletes of one record keep the newer clock and the larger base;
- a value that loses is reported as a conflict unless the winner's writer had seen it (its base
  is at least the loser's stamp: then it was an ordinary overwrite). Timestamps merge like other
  fields but are never reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.core.clock import ZERO
from server.core.records import META_FIELDS

DELETED = "<deleted>"


@dataclass
class Outcome:
    state: dict[str, Any]
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
    return max([state["dclock"], *state["clocks"].values()])


def _conflict(state, fname, local_value, local_hlc, remote_value, remote_hlc, winner, reason):
    return {
        "kind": state["kind"],
        "recordId": state["id"],
        "courseId": state["courseId"],
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
    state = _copy(state) if state is not None else new_state(change["kind"], change["id"], change["courseId"])
    if change["op"] == "delete":
        return _delete(state, change["hlc"], change["bases"]["*"])
    if parent is not None and parent["deleted"]:
        # A write under a deleted course: the course's delete reaches this record first.
        out = _delete(state, parent["dclock"], parent["dbase"])
        return Outcome(out.state, out.changed, out.conflicts + _dropped(out.state, change))
    if state["deleted"]:
        return Outcome(state, False, _dropped(state, change))
    return _upsert(state, change)


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "fields": dict(state["fields"]), "clocks": dict(state["clocks"]),
            "bases": dict(state["bases"])}


def _upsert(state: dict[str, Any], change: dict[str, Any]) -> Outcome:
    out = Outcome(state)
    hlc, bases = change["hlc"], change["bases"]
    for fname, value in change["fields"].items():
        if fname in state["clocks"]:
            local_hlc, local_value = state["clocks"][fname], state["fields"][fname]
            # A loss is a conflict when the winner's writer had not seen the loser's value.
            differs = fname not in META_FIELDS and local_value != value
            if hlc <= local_hlc:  # an older write, or this very one again: the local value stays
                if differs and state["bases"][fname] < hlc:
                    out.conflicts.append(_conflict(state, fname, local_value, local_hlc, value, hlc,
                                                   "local", "newer_write"))
                continue
            if differs and bases[fname] < local_hlc:
                out.conflicts.append(_conflict(state, fname, local_value, local_hlc, value, hlc,
                                               "remote", "newer_write"))
        state["fields"][fname] = value
        state["clocks"][fname] = hlc
        state["bases"][fname] = bases[fname]
        out.changed = True
    return out


def _dropped(tomb: dict[str, Any], change: dict[str, Any]) -> list[dict[str, Any]]:
    """An update that reached a tombstone is dropped; its values are conflicts unless a deleter
    had seen that write."""
    if change["hlc"] <= tomb["dbase"]:
        return []
    return [_conflict(tomb, fname, DELETED, tomb["dclock"], value, change["hlc"], "local", "deleted")
            for fname, value in change["fields"].items() if fname not in META_FIELDS]


def _delete(state: dict[str, Any], hlc: str, base: str) -> Outcome:
    if state["deleted"]:
        # Two deletes of one record: keep the newest clock and what either deleter had seen, so
        # that every replica ends with the same tombstone whatever order the deletes came in.
        tomb = (max(state["dclock"], hlc), max(state["dbase"], base))
        changed = tomb != (state["dclock"], state["dbase"])
        state["dclock"], state["dbase"] = tomb
        return Outcome(state, changed)
    out = Outcome(state, True)
    for fname, value in state["fields"].items():
        local_hlc = state["clocks"][fname]
        if fname not in META_FIELDS and local_hlc > base:
            out.conflicts.append(_conflict(state, fname, value, local_hlc, DELETED, hlc, "remote", "deleted"))
    # A tombstone keeps its id, clock and flag, nothing else.
    state.update(fields={}, clocks={}, bases={}, deleted=True, dclock=hlc, dbase=base)
    return out


def cascade_delete(child: dict[str, Any], course: dict[str, Any]) -> Outcome:
    """A deleted course's delete reaching one of its lectures or assignments."""
    return _delete(_copy(child), course["dclock"], course["dbase"])
