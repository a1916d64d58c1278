"""What a store gives out and drops of its history: the records themselves, page by page, for
a device whose cursor is below what was compacted (a snapshot), and compaction, which drops an
origin's changes up to a floor in short writes. Written once over a backend (backend.py);
which floor is safe is retention.py's, what a floor means is sequences.py's."""

from __future__ import annotations

import time
from typing import Any

from server.connectors.shared.backend import Backend
from server.connectors.shared.intake import Intake
from server.connectors.shared.merging import Merger
from server.core.changes import STATE_KEYS, Change, Cursor, Key, change_key, refusal_answer, state_key

COMPACT_STEP = 500  # changes dropped per write: a push or pull waits at most for one such write
HEAL_DROP = 5000  # changes below a heal's hold dropped in its request (the hub's job drops any more)


class History:
    """What the store gives out of its history and drops of it; a heal's records come in here too
    (checked at the intake's door)."""

    def __init__(self, backend: Backend, merger: Merger, intake: Intake):
        self.backend, self.merger, self.intake = backend, merger, intake

    def snapshot_page(self, after: Key | None, limit: int) -> dict[str, Any]:
        with self.backend.reader():
            # The cursor first: every record read after it is at least as new, and whatever
            # lands later is pulled from the log past it (merging it twice changes nothing).
            cursor = self.backend.every_top()
            states = self.backend.history.records_after(after, limit)
        return {"cursor": cursor, "records": [{k: s[k] for k in STATE_KEYS} for s in states],
                "next": list(state_key(states[-1])) if len(states) == limit else None}

    def heal(self, records: list[Any], *, hold: dict[str, int] | None = None, log_as: str | None = None,
             not_from: frozenset[str] | set[str] = frozenset()) -> dict:
        held = {o: seq for o, seq in (hold or {}).items() if o != self.backend.origin}
        with self.backend.writer():  # one writer: the quarantine's cap is counted where it is stored
            # A device's records, checked at the door as its own pushes are (the single limit).
            skew = self.backend.limits.max_skew_ms
            writes, refused = self.intake.rebuilt(records, skew, "a record a device gave back")
            # Writes stamped by an origin another device still owns are that device's to give back.
            taken = [w for w in writes if w["origin"] not in not_from]
            before = self.backend.load({change_key(w) for w in taken}) if log_as and taken else {}
            states, conflicts = self.merger.merge_and_persist(taken, own=False, log=False,
                                                              quarantined=self.intake.within_cap(refused))
            # After the records, never before: a reader sent to the records by the hold must find
            # them there (a store without transactions may stop between the two: the device then
            # heals again, and merging the same records twice changes nothing).
            if held:
                self.backend.history.hold(held)
            # What the heal changed is logged under the healer's heal origin, which every device
            # pulls: none is left with records the hub changed unheard.
            changed = carried(taken, before, states) if log_as and states else []
            logged = self.backend.history.append(log_as, changed) if changed and log_as else []
        if held:
            # A hold is a compaction: what the log still holds at or below it goes too (the hub
            # restored from a backup kept part of it), the first HEAL_DROP here and the rest by
            # the next compaction, so that the log goes on from just past each floor.
            self.compact(held, HEAL_DROP)
        return {"received": len(records), "applied": len(states), "conflicts": len(conflicts), "held": held,
                "logged": {log_as: logged[-1]["seq"]} if logged else {},
                "skipped": sorted({w["origin"] for w in writes} - {w["origin"] for w in taken}),
                "quarantined": [refusal_answer(q) for q in refused]}

    def floors(self) -> Cursor:
        with self.backend.reader():
            return self.backend.history.floors_of(None)

    def log_sizes(self) -> dict[str, int]:
        with self.backend.reader():
            return self.backend.history.log_sizes()

    def compact(self, floors: Cursor, limit: int) -> int:
        dropped = 0
        if self.backend.origin in floors:
            # This store's own origin keeps its newest change: its next seq is read from it.
            own = self.backend.origin
            floors = {**floors, own: min(floors[own], self.intake.tops({own}).get(own, 0) - 1)}
        for origin, floor in sorted(floors.items()):
            while floor > 0 and dropped < limit:
                started = time.perf_counter()
                step = self.backend.history.compact_origin(origin, floor, min(COMPACT_STEP, limit - dropped))
                if not step:
                    break
                dropped += step
                # Leave the store alone for as long as the step held it: a writer waiting on the
                # lock (SQLite's busy handler backs off ever longer) gets in between two steps,
                # instead of losing to one step after another.
                time.sleep(time.perf_counter() - started)
        return dropped


def carried(writes: list[Change], before: dict[Key, dict], after: list[dict]) -> list[Change]:
    """Of a heal's writes, what they changed in the records: per write, the fields whose stamp the
    record holds after the merge and did not before (a delete: the tombstone it made), as a
    change to log (numbered by the backend's `append`)."""
    now = {state_key(s): s for s in after}
    out = []
    for w in writes:
        new, old = now.get(change_key(w)), before.get(change_key(w)) or {}
        if new is None:
            continue
        if w["op"] == "delete":
            if new["deleted"] and new["dclock"] == w["hlc"] and not (old.get("deleted") and old["dclock"] == w["hlc"]):
                out.append(w)
            continue
        names = [f for f in w["fields"] if new["clocks"].get(f) == w["hlc"] != (old.get("clocks") or {}).get(f)]
        if names:
            out.append({**w, "fields": {f: w["fields"][f] for f in names}, "bases": {f: w["bases"][f] for f in names}})
    return out
