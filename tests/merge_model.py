"""An independent model of the merge rule, used as the property test's oracle.

It knows nothing of server/core/merge.py: it is written from the rule as docs/merge-rule.md states it, with
one predicate for every conflict ("the winner's writer had not seen the loser": the winner's
base is older than the loser's stamp). Each replica (a device, or the hub) is fed the changes it
committed, in the order it committed them, and the model says what that replica must hold and
which losses its conflict ledger must list, entry for entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ZERO = ""
META = frozenset({"createdAt", "updatedAt"})
CHILDREN = frozenset({"lecture", "assignment"})
GONE = "<deleted>"


@dataclass
class Value:
    value: object
    hlc: str
    base: str  # what the writer of this value had seen in this field


@dataclass
class Record:
    kind: str
    id: str
    course_id: str | None
    values: dict[str, Value] = field(default_factory=dict)
    deleted: bool = False
    dclock: str = ZERO
    dbase: str = ZERO

    def newest(self) -> str:
        return max([self.dclock, *(v.hlc for v in self.values.values())])


def key_of(kind: str, course_id: str | None, record_id: str) -> tuple[str, str]:
    return kind, (f"{course_id}/{record_id}" if kind in CHILDREN else record_id)


class Replica:
    def __init__(self, name: str) -> None:
        self.name = name
        self.records: dict[tuple[str, str], Record] = {}
        self.ledger: dict[tuple, tuple] = {}  # one entry per loss, first detection kept
        self.seen = ZERO  # the newest stamp this replica issued or took in

    # --- what a local write must look like ------------------------------------------------
    def expected_bases(self, kind: str, course_id: str | None, record_id: str, op: str,
                       fields: dict) -> dict[str, str]:
        rec = self.records.get(key_of(kind, course_id, record_id))
        if op == "delete":
            newest = rec.newest() if rec else ZERO
            if kind == "course":
                newest = max([newest, *(c.newest() for c in self.children(record_id))])
            return {"*": newest}
        return {f: (rec.values[f].hlc if rec and f in rec.values else ZERO) for f in fields}

    def children(self, course_id: str) -> list[Record]:
        return [r for r in self.records.values() if r.kind in CHILDREN and r.course_id == course_id]

    # --- applying one committed change ----------------------------------------------------
    def apply(self, change: dict) -> None:
        self.seen = max(self.seen, change["hlc"])
        kind, cid, rid = change["kind"], change["courseId"], change["id"]
        key = key_of(kind, cid, rid)
        rec = self.records.setdefault(key, Record(kind, rid, cid))
        if change["op"] == "delete":
            self._tombstone(rec, change["hlc"], change["bases"].get("*", ZERO), change["origin"])
            if kind == "course":
                for child in self.children(rid):
                    self._tombstone(child, rec.dclock, rec.dbase, change["origin"])
            return
        parent = self.records.get(("course", cid)) if kind in CHILDREN else None
        if parent is not None and parent.deleted:
            self._tombstone(rec, parent.dclock, parent.dbase, change["origin"])
        if rec.deleted:
            if rec.dbase < change["hlc"]:  # no deleter had seen this write
                for f, v in change["fields"].items():
                    if f not in META:
                        self._lost(rec, f, GONE, rec.dclock, v, change["hlc"], "local", "deleted", change)
            return
        self._upsert(rec, change)

    def _upsert(self, rec: Record, change: dict) -> None:
        for f, v in change["fields"].items():
            incoming = Value(v, change["hlc"], change["bases"].get(f, ZERO))
            current = rec.values.get(f)
            if current is None:
                rec.values[f] = incoming
                continue
            if current.hlc == incoming.hlc:
                continue
            winner, loser = (incoming, current) if incoming.hlc > current.hlc else (current, incoming)
            if f not in META and winner.value != loser.value and winner.base < loser.hlc:
                who = "remote" if winner is incoming else "local"
                self._lost(rec, f, current.value, current.hlc, v, incoming.hlc, who, "newer_write", change)
            rec.values[f] = winner

    def _tombstone(self, rec: Record, hlc: str, base: str, origin: str) -> None:
        if rec.deleted:
            rec.dclock, rec.dbase = max(rec.dclock, hlc), max(rec.dbase, base)
            return
        for f, v in rec.values.items():
            if f not in META and v.hlc > base:  # the deleter had not seen this value
                self._lost(rec, f, v.value, v.hlc, GONE, hlc, "remote", "deleted", {"origin": origin})
        rec.values, rec.deleted, rec.dclock, rec.dbase = {}, True, hlc, base

    def _lost(self, rec, f, local, local_hlc, remote, remote_hlc, winner, reason, change) -> None:
        entry = (rec.kind, rec.course_id, rec.id, f, _freeze(local), local_hlc, _freeze(remote),
                 remote_hlc, winner, reason, change["origin"])
        self.ledger.setdefault(loss_id(entry), entry)

    # --- what the real store must then hold ------------------------------------------------
    def expected_records(self) -> dict[tuple[str, str], dict]:
        return {k: {"fields": {f: v.value for f, v in r.values.items()},
                    "clocks": {f: v.hlc for f, v in r.values.items()},
                    "bases": {f: v.base for f, v in r.values.items()},
                    "deleted": r.deleted, "dclock": r.dclock, "dbase": r.dbase}
                for k, r in self.records.items()}


def _freeze(value):
    return tuple(value) if isinstance(value, list) else value


def actual_records(dump: dict) -> dict[tuple[str, str], dict]:
    return {k: {name: s[name] for name in ("fields", "clocks", "bases", "deleted", "dclock", "dbase")}
            for k, s in dump.items()}


def loss_id(entry: tuple) -> tuple:
    """A loss is the pair of writes, in either order, on one field of one record."""
    kind, course_id, record_id, f, _, local_hlc, _, remote_hlc = entry[:8]
    return kind, course_id, record_id, f, frozenset((local_hlc, remote_hlc))


def actual_ledger(conflicts: list[dict]) -> dict[tuple, tuple]:
    entries = [(c["kind"], c["courseId"], c["recordId"], c["field"], _freeze(c["localValue"]), c["localHlc"],
                _freeze(c["remoteValue"]), c["remoteHlc"], c["winner"], c["reason"], c["remoteOrigin"])
               for c in conflicts]
    ledger = {loss_id(e): e for e in entries}
    assert len(ledger) == len(entries), "one loss listed twice"
    return ledger
