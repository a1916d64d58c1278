"""The pure types of sync, shared by the seeders, the sync engine and the connectors: a change,
a cursor, how a record is keyed, and the sequence spans of a batch. No I/O, no connector."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

import orjson

from server.core.clock import ZERO, decode, encode, is_stamp
from server.core.records import CHILD_KINDS, KINDS, check_fields, is_id
from server.core.sequences import Cursor as Cursor  # a cursor is the sequences' notion; named here for callers
from server.core.times import iso_from_ms

Change = dict[str, Any]  # {"origin", "seq", "hlc", "kind", "id", "courseId", "op", "fields", "bases"}
Key = tuple[str, str]  # (kind, record key)
CHANGE_KEYS = frozenset({"origin", "seq", "hlc", "kind", "id", "courseId", "op", "fields", "bases"})
# How far ahead of a receiver's wall clock a stamp may be. NTP keeps most devices within
# seconds, but a device whose time zone was set wrong (its local time right, so its UTC off by
# whole hours) can be up to 14 hours out, and its edits must still sync. A day takes all of
# those, while a stamp in the year 2100 (or one built to overflow the encoding) is refused and
# can never move a clock or win a merge.
MAX_SKEW_MS = 86_400_000


# Which kind of store made an origin, at a glance; "h": a hold a device made at a hub it healed
# from its records (sync/heal.py), which no change is ever logged under.
ORIGIN_LETTER = {"sql": "d", "mongo": "m", "heal": "h"}


# What new_origin("heal") makes: an origin a hub logs what a heal changed in its records under
# (sync/heal.py): each of its changes carries the stamp of the write it gives back, whoever's.
HEAL_ORIGIN = re.compile(r"h[0-9a-f]{12}")


def is_heal_origin(origin: Any) -> bool:
    return isinstance(origin, str) and HEAL_ORIGIN.fullmatch(origin) is not None


def new_origin(store: str) -> str:
    """A fresh origin, the one place one is made: a store's first, or the next one after a
    restore or a wipe (its sequence numbers restart, so the old origin is never reused). "d..."
    for a device's SQLite store, "m..." for a process writing to MongoDB directly."""
    return ORIGIN_LETTER[store] + uuid.uuid4().hex[:12]


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


@dataclass(frozen=True)
class Refusal:
    """Why a change or a record is refused at a door: a stable `code` with its fields (`detail`),
    which code reads, and a `message`, which people read and no code parses. REFUSALS names every
    code and its fields."""

    code: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """The code and its fields, flat, as they travel beside the message (its `reason`)."""
        return {"code": self.code, **self.detail}


# Every code of a refusal, and the fields it carries beside `code`, `reason` (the message) and,
# where a change was refused, its `origin` and `seq`. Codes are never renamed; new ones are added.
REFUSALS: dict[str, tuple[str, ...]] = {
    # a change (check_change)
    "not_an_object": (), "missing_keys": ("keys",), "unknown_keys": ("keys",), "bad_origin": (), "bad_seq": (),
    "unknown_kind": ("kind",), "bad_id": (), "bad_course_id": (), "bad_op": (), "bad_stamp": (),
    "foreign_stamp": (), "clock_ahead": ("aheadSeconds", "limitSeconds"), "bad_bases": (), "bad_base": ("field",),
    "bad_fields": (), "bad_delete": (), "bases_mismatch": (), "invalid_field": ("field",),
    # a record (writes_of), and a record refused (record_refusal: `problem` is one of the codes above)
    "record_shape": (), "record_fields": (), "tombstone_shape": (), "live_with_delete_stamp": (),
    "bad_clock": ("field",), "bad_record": ("problem", "kind", "keys", "field", "aheadSeconds", "limitSeconds"),
    # the hub's refusal of a device's change as the device keeps it, when the hub sent no code (an
    # older hub) and its sentence is none a device knows (server/sync/refusals.py)
    "unclassified": (),
}


def refusal_in(entry: Mapping[str, Any]) -> Refusal | None:
    """The refusal a quarantine entry or a refusal answer holds (`reason` its message), or None
    when it holds no code: one made before codes, or an older hub's."""
    code = entry.get("code")
    if not isinstance(code, str):
        return None
    return Refusal(code, str(entry.get("reason")), {k: entry[k] for k in REFUSALS.get(code, ()) if k in entry})


def refusal_answer(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What a store's answer says of a change it quarantined: its origin and seq, the reason, and
    the refusal's code and fields (when the entry has them)."""
    refusal = refusal_in(entry)
    return {"origin": entry["origin"], "seq": entry["seq"], "reason": entry["reason"],
            **(refusal.fields() if refusal else {})}


def check_change(change: Any, *, now_ms: int, max_skew_ms: int | None = MAX_SKEW_MS,
                 carried: bool = False) -> Refusal | None:
    """Why a change from someone else cannot be applied, or None when it can: the same field
    definitions as the API (kinds, ids, field names, types, values), the op, the shape of the
    stamps and bases, and the bound on clock skew (none when `max_skew_ms` is None: a change the
    hub took, whose door judged its stamp). Its stamp must be its origin's, but with `carried`
    (a change pulled from a hub) one of a heal origin carries another's (the hub logged it)."""
    if not isinstance(change, dict):
        return Refusal("not_an_object", "not an object")
    if change.keys() != CHANGE_KEYS:
        extra, missing = sorted(map(str, change.keys() - CHANGE_KEYS)), sorted(CHANGE_KEYS - change.keys())
        return _unknown_keys(extra) if extra else Refusal("missing_keys", f"missing keys {missing}", {"keys": missing})
    return _envelope_problem(change) or _stamp_problem(change, now_ms, max_skew_ms, carried) or _body_problem(change)


KEYS_NAMED = 5  # unknown keys a reason names at most, each cut to 40 characters: the sender chose them


def _unknown_keys(extra: list[str]) -> Refusal:
    more = f" and {len(extra) - KEYS_NAMED} more" if len(extra) > KEYS_NAMED else ""
    named = [key[:40] for key in extra[:KEYS_NAMED]]
    return Refusal("unknown_keys", f"unknown keys {named}{more}", {"keys": [_named(key) for key in named]})


def _named(chosen: Any) -> str:
    """What a sender chose (a key, a kind), as a refusal's field names it: its first 40
    characters, a lone surrogate kept as its escape (no store can hold it)."""
    return str(chosen)[:40].encode(errors="backslashreplace").decode()


def _envelope_problem(change: dict) -> Refusal | None:
    if not is_id(change["origin"]):
        return Refusal("bad_origin", "origin is not a device id")
    seq = change["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq < 2**53:
        return Refusal("bad_seq", "seq is not a positive integer")
    kind = change["kind"]
    if kind not in KINDS:
        return Refusal("unknown_kind", f"unknown kind {str(kind)[:40]!r}", {"kind": _named(kind)})
    if not is_id(change["id"]):
        return Refusal("bad_id", "id is not a record id")
    if (kind in CHILD_KINDS) != is_id(change["courseId"]) or (kind not in CHILD_KINDS and change["courseId"]):
        return Refusal("bad_course_id", "courseId does not fit the kind")
    if change["op"] not in ("upsert", "delete"):
        return Refusal("bad_op", "op is neither upsert nor delete")
    return None


def _stamp_problem(change: dict, now_ms: int, max_skew_ms: int | None, carried: bool) -> Refusal | None:
    hlc = change["hlc"]
    if not is_stamp(hlc):
        return Refusal("bad_stamp", "hlc is not a clock stamp")
    ms, _, device = decode(hlc)
    if device != change["origin"] and not (carried and is_heal_origin(change["origin"])):
        return Refusal("foreign_stamp", "hlc was not stamped by its origin")
    if max_skew_ms is not None and ms > now_ms + max_skew_ms:
        return clock_ahead(round((ms - now_ms) / 1000), max_skew_ms // 1000)
    bases = change["bases"]
    if not isinstance(bases, dict):
        return Refusal("bad_bases", "bases is not an object")
    for name, base in bases.items():
        if base != ZERO and not (is_stamp(base) and base < hlc):
            return Refusal("bad_base", f"base of {str(name)[:40]!r} is not a stamp before hlc", {"field": _named(name)})
    return None


def clock_ahead(ahead_s: int, limit_s: int) -> Refusal:
    """A stamp `ahead_s` seconds past this clock, which takes `limit_s` at most."""
    return Refusal("clock_ahead", f"hlc is {ahead_s} s ahead of this clock (the limit is {limit_s} s)",
                   {"aheadSeconds": ahead_s, "limitSeconds": limit_s})


def _body_problem(change: dict) -> Refusal | None:
    fields, bases = change["fields"], change["bases"]
    if not isinstance(fields, dict):
        return Refusal("bad_fields", "fields is not an object")
    if change["op"] == "delete":
        return None if fields == {} and bases.keys() == {"*"} else \
            Refusal("bad_delete", "a delete carries no fields and one base, *")
    if bases.keys() != fields.keys():
        return Refusal("bases_mismatch", "bases do not name the fields written")
    _, problems = check_fields(change["kind"], fields, "change")
    if problems:
        key, problem = next(iter(problems.items()))
        return Refusal("invalid_field", f"fields.{key}: {problem}", {"field": _named(key)})
    return None


def record_refusal(what: str, problem: Refusal) -> Refusal:
    """A record refused (`what` says whose: a snapshot's, one a device gave back) for `problem`,
    which is of the record (writes_of) or of one of the writes that would rebuild it."""
    return Refusal("bad_record", f"{what}: {problem.message}", {"problem": problem.code, **problem.detail})


QUARANTINE_BODY_MAX = 20_000  # bytes of a refused change kept for a person to read
REASON_MAX = 300  # bytes of a refusal's reason kept: a reason may quote what the sender chose


def quarantine_entry(change: Any, why: Refusal | str, received_at: str,
                     keep: int = QUARANTINE_BODY_MAX) -> dict[str, Any]:
    """What is kept of a refused change: its origin and seq when they are readable, the reason
    (the message, its first REASON_MAX bytes) with the refusal's code and fields (a Refusal; a
    plain sentence has none), and the change itself as JSON text (whatever it held; past `keep`
    bytes, the start and the SHA-256 of the whole): so much a row, whatever was sent."""
    reason, coded = (why.message, why.fields()) if isinstance(why, Refusal) else (why, {})
    try:
        body = orjson.dumps(change, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # text no UTF-8 can hold (a lone surrogate): kept escaped
        body = json.dumps(change, default=repr, separators=(",", ":"))
    whole = body.encode()  # both encoders above give text UTF-8 can hold
    if len(whole) > keep:
        body = f"{whole[:keep].decode(errors='ignore')}... ({len(whole)} bytes in all, sha256 " \
               f"{hashlib.sha256(whole).hexdigest()})"
    # A lone surrogate (a hub's answer may hold one) is kept as its escape: no store can hold it.
    said = reason.encode(errors="backslashreplace")
    reason = said.decode() if len(said) <= REASON_MAX else said[:REASON_MAX].decode(errors="ignore") + "..."
    origin = change.get("origin") if isinstance(change, dict) and is_id(change.get("origin")) else None
    seq = change.get("seq") if isinstance(change, dict) and type(change.get("seq")) is int else None
    ident = f"{origin}#{seq}" if origin is not None and seq is not None else body
    return {"id": hashlib.sha256(ident.encode()).hexdigest()[:24], "origin": origin, "seq": seq,
            "reason": reason, "receivedAt": received_at, "change": body, **coded}


def slot_filler(refused: Any, user_id: str) -> Change | None:
    """A change that changes nothing, to stand in the log where a refused change of a readable
    origin and seq would have been. Readers go through an origin's log in sequence order (and
    the Mongo hub stops at a gap, which may be a slot another writer is still filling), so a
    refused change must not leave a gap: without the filler nothing its origin wrote after it
    would ever be pulled. Stamped at millisecond 0, so it can move no clock."""
    if not isinstance(refused, dict) or not is_id(refused.get("origin")):
        return None
    seq = refused.get("seq")
    if type(seq) is not int or not 1 <= seq < 2**53:
        return None
    return {"origin": refused["origin"], "seq": seq, "hlc": encode(0, 0, refused["origin"]), "kind": "user",
            "id": user_id, "courseId": None, "op": "upsert", "fields": {}, "bases": {}}


def at_the_door(changes: list[Any], *, now_ms: int, max_skew_ms: int | None, user_id: str,
                keep: int = QUARANTINE_BODY_MAX, carried: bool = False,
                ) -> tuple[list[Change], list[dict[str, Any]], list[Change]]:
    """(the changes that passed, quarantine entries for the others, slot fillers for those of
    them whose origin and seq can be read); `carried` as check_change."""
    good, refused, fillers = [], [], []
    received_at = iso_from_ms(now_ms)
    for ch in changes:
        refusal = check_change(ch, now_ms=now_ms, max_skew_ms=max_skew_ms, carried=carried)
        if refusal is None:
            good.append(ch)
            continue
        refused.append(quarantine_entry(ch, refusal, received_at, keep))
        filler = slot_filler(ch, user_id)
        if filler is not None:
            fillers.append(filler)
    return good, refused, fillers


def moved_to(tail: list[Change], origin: str) -> tuple[list[Change], dict[str, str]]:
    """This store's own changes from some sequence number on, as they are under a new `origin`:
    numbered from 1 in the same order, and stamped by the new origin (the same millisecond and
    counter, so each keeps its place among every other write). Returns (the moved changes,
    old stamp -> new stamp), which restamp_state applies to the records those changes wrote."""
    stamps = {}
    for ch in tail:
        ms, counter, _ = decode(ch["hlc"])
        stamps[ch["hlc"]] = encode(ms, counter, origin)
    moved = [{**ch, "origin": origin, "seq": seq, "hlc": stamps[ch["hlc"]],
              "bases": {name: stamps.get(base, base) for name, base in ch["bases"].items()}}
             for seq, ch in enumerate(tail, 1)]
    return moved, stamps


def restamp_state(state: dict[str, Any], stamps: dict[str, str]) -> dict[str, Any]:
    """A record's merge state with every stamp in `stamps` replaced (see moved_to)."""
    return {**state,
            "clocks": {name: stamps.get(c, c) for name, c in state["clocks"].items()},
            "bases": {name: stamps.get(b, b) for name, b in state["bases"].items()},
            "dclock": stamps.get(state["dclock"], state["dclock"]),
            "dbase": stamps.get(state["dbase"], state["dbase"])}


def still_held(change: Change, state: dict[str, Any] | None) -> Change | None:
    """What of this store's own `change` its record still holds as that change wrote it (the
    fields whose clock is still its stamp, or its delete), as a change to write again under a
    new seq and stamp with the same bases; None when later writes have replaced all of it."""
    if state is None:
        return None
    hlc = change["hlc"]
    if change["op"] == "delete":
        return dict(change) if state["deleted"] and state["dclock"] == hlc else None
    if state["deleted"]:
        return None
    names = [name for name in change["fields"] if state["clocks"].get(name) == hlc]
    if not names:
        return None
    return {**change, "fields": {n: change["fields"][n] for n in names},
            "bases": {n: change["bases"][n] for n in names}}


def is_slot_filler_of(hlc: Any, origin: str) -> bool:
    """True for the stamp of a slot filler written for a refused change of `origin`."""
    return hlc == encode(0, 0, origin)


STATE_KEYS = ("kind", "id", "courseId", "fields", "clocks", "bases", "deleted", "dclock", "dbase")
SNAPSHOT_SEQ = 1  # stands in a write rebuilt from a record: never logged, never compared


def writes_of(state: Any) -> tuple[list[Change], Refusal | None]:
    """The writes that rebuild a record's merge state by the merge rule (a hub's snapshot sends
    records, not the log that made them): one upsert per stamp its fields carry, with the fields
    that stamp still holds and their bases, or the delete of a tombstone. Each is a change of
    the stamp's origin (seq SNAPSHOT_SEQ, a placeholder) that the door checks like any other.
    Returns (the writes, None), or ([], why the state cannot be read as writes)."""
    if not isinstance(state, dict) or sorted(state) != sorted(STATE_KEYS):
        return [], Refusal("record_shape", "a record is an object with exactly " + ", ".join(STATE_KEYS))
    fields, clocks, bases = state["fields"], state["clocks"], state["bases"]
    if not all(isinstance(d, dict) for d in (fields, clocks, bases)) or not fields.keys() == clocks.keys() == \
            bases.keys() or type(state["deleted"]) is not bool:
        return [], Refusal("record_fields", "fields, clocks and bases name the same fields; deleted is true or false")
    head = {"kind": state["kind"], "id": state["id"], "courseId": state["courseId"]}
    if state["deleted"]:
        if fields or not is_stamp(state["dclock"]):
            return [], Refusal("tombstone_shape", "a tombstone keeps no fields and has the stamp of its delete")
        return [{**head, "origin": decode(state["dclock"])[2], "seq": SNAPSHOT_SEQ, "hlc": state["dclock"],
                 "op": "delete", "fields": {}, "bases": {"*": state["dbase"]}}], None
    if state["dclock"] != ZERO or state["dbase"] != ZERO:
        return [], Refusal("live_with_delete_stamp", "a live record has no delete stamp")
    by_stamp: dict[str, list[str]] = {}
    for name, hlc in clocks.items():
        if not is_stamp(hlc):
            return [], Refusal("bad_clock", f"clock of {str(name)[:40]!r} is not a stamp", {"field": _named(name)})
        by_stamp.setdefault(hlc, []).append(name)
    return [{**head, "origin": decode(hlc)[2], "seq": SNAPSHOT_SEQ, "hlc": hlc, "op": "upsert",
             "fields": {n: fields[n] for n in names}, "bases": {n: bases[n] for n in names}}
            for hlc, names in sorted(by_stamp.items())], None
