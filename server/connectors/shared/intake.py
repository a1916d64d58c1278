"""What comes into a store from elsewhere: a batch of changes checked at the door and merged,
the quarantine of what was refused, and moving a restored store's own edits to a new origin,
written once over a backend (backend.py) and the merger (merging.py)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from server.connectors.shared.backend import Backend, RetryMerge, entry_bytes
from server.connectors.shared.merging import Merger
from server.core.changes import (
    Change,
    at_the_door,
    change_key,
    check_change,
    is_heal_origin,
    moved_to,
    new_origin,
    quarantine_entry,
    record_refusal,
    refusal_answer,
    restamp_state,
    still_held,
    writes_of,
)
from server.core.clock import wall_ms
from server.core.errors import StateConflict
from server.core.sequences import admit, behind, held_below, shortfall
from server.core.times import iso_from_ms

log = logging.getLogger("server.sync")
# On a hub: the last times a device found it holding less than it had acknowledged (per user).
ROLLBACKS_KEY = "hub-rollbacks"


class Intake:
    """The store's calls for changes from elsewhere (and its own, written again or moved)."""

    def __init__(self, backend: Backend, merger: Merger):
        self.backend, self.merger = backend, merger

    def apply_changes(self, changes: list[Change], *, bookmarks: dict[str, Any] | None = None,
                      relayed: bool = False, from_hub: bool = False) -> dict[str, Any]:
        with self.backend.batch():
            return self._apply_changes(changes, bookmarks, relayed, from_hub)

    def relay_changes(self, changes: list[Change], *, owned: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
        named = {ch["origin"] for ch in changes if isinstance(ch, dict) and ch.get("origin") in owned}
        result = self.apply_changes([ch for ch in changes if not (isinstance(ch, dict) and ch.get("origin") in named)],
                                    relayed=True)
        tops = self.tops(named) if named else {}
        return {**result, "received": len(changes), "owned": {o: tops.get(o, 0) for o in sorted(named)}}

    def _apply_changes(self, changes: list[Change], bookmarks: dict[str, Any] | None, relayed: bool,
                       from_hub: bool) -> dict[str, Any]:
        good, refused, fillers, resume = self._through_the_door(changes, from_hub)
        for ch in good:  # only a change that passed may move the clock
            self.backend.clock.observe(ch["hlc"])
        # What a hub logged of a heal (changes.is_heal_origin) is merged, not logged: it is never
        # given back (the healer gives its records again), and the hub numbers it as it can.
        carried = [ch for ch in good if from_hub and is_heal_origin(ch["origin"])]
        good = [ch for ch in good if not (from_hub and is_heal_origin(ch["origin"]))] if carried else good
        fresh, applied = self._not_yet_held(good, fillers, relayed)
        stored_refusals = self.within_cap(refused)
        conflicts: list[dict] = []
        if fresh or carried or bookmarks or stored_refusals:
            order = {id(ch): n for n, ch in enumerate(changes)}  # merged in the order sent
            merged = sorted(fresh + carried, key=lambda ch: order.get(id(ch), -1))
            conflicts = self.merger.merge_and_persist(merged, own=False, bookmarks=bookmarks,
                                                quarantined=stored_refusals, logged=fresh)[1]
        return {"received": len(changes), "applied": applied + len(carried), "conflicts": len(conflicts),
                "resume": resume,
                "quarantined": [refusal_answer(q) for q in refused]}

    def _through_the_door(self, changes: list[Change], from_hub: bool) -> tuple[list, list, list, dict]:
        """(changes that passed, refusals, fillers for the refusals' slots, origin -> where the
        sender resumes): the door, then the sequence rule."""
        # What the hub took is applied though this clock may be behind the hub's: the hub's door
        # judged its stamp, and every device of the user must apply the same changes (one that
        # refused what another applied would disagree with it for good). The limit is doubled,
        # not dropped: the hub's clock may be up to one limit ahead of this one, and a stamp past
        # both was never taken by a hub's door (a hostile writer in the store behind it).
        skew = 2 * self.backend.limits.max_skew_ms if from_hub else self.backend.limits.max_skew_ms
        good, refused, fillers = at_the_door(changes, now_ms=wall_ms(), max_skew_ms=skew, user_id=self.backend.user_id,
                                             keep=self.backend.limits.quarantine_keep, carried=from_hub)
        for q in refused:
            log.warning("quarantined change %s#%s: %s", q["origin"], q["seq"], q["reason"])
        carried = [ch for ch in good if from_hub and is_heal_origin(ch["origin"])]  # not logged: no rule
        good = [ch for ch in good if not (from_hub and is_heal_origin(ch["origin"]))] if carried else good
        fillers = [f for f in fillers if not (from_hub and is_heal_origin(f["origin"]))]
        # Then the sequence rule, on what takes a slot (a refused change's filler too): a run
        # that starts past this store's top is not stored from the gap on, and the sender is
        # told where to resume, so that no reader can ever step over a hole.
        if not good and not fillers:
            return carried, refused, fillers, {}
        taken, resume = admit(good + fillers, self.backend.tops_of({ch["origin"] for ch in good + fillers}))
        admitted = {id(ch) for ch in taken}
        return ([c for c in good if id(c) in admitted] + carried, refused,
                [f for f in fillers if id(f) in admitted], resume)

    def _not_yet_held(self, good: list[Change], fillers: list[Change], relayed: bool) -> tuple[list[Change], int]:
        """(of the admitted changes and fillers, those this store does not hold yet; how many of
        them are changes that passed the door). One it holds under the same
        stamp was sent again (the first attempt may have stopped after logging it): it is
        finished, not stored twice. One it holds under another stamp is a reused origin (a relayed
        copy never overwrites what the store holds)."""
        if good or fillers:  # what the store compacted away it holds all the same
            floors = self.backend.history.floors_of({ch["origin"] for ch in good + fillers})
            good, fillers = held_below(good, floors), held_below(fillers, floors)
        known = self.backend.known(good + fillers) if good or fillers else {}
        # A filler goes in only where its slot is still empty (the same refused change again).
        fresh = [f for f in fillers if (f["origin"], f["seq"]) not in known]
        logged, applied = [], 0
        for ch in good:
            stored = known.get((ch["origin"], ch["seq"]))
            if stored is None:
                fresh.append(ch)
                applied += 1
            elif stored == ch["hlc"]:
                logged.append(ch)
            elif not relayed:
                raise _reused(ch)
        if logged:
            self._same_as_logged(logged, relayed)
            self.backend.complete(logged)
        return fresh, applied

    def tops(self, origins: set[str]) -> dict[str, int]:
        with self.backend.reader():
            return self.backend.tops_of(set(origins)) if origins else {}

    def shortfall(self, cursor: dict[str, int]) -> dict[str, Any]:
        with self.backend.reader():
            held = self.backend.tops_of(set(cursor)) if cursor else {}
            floors = self.backend.history.floors_of(None)
        compacted = behind(cursor, floors)
        floors = {o: f for o, f in floors.items() if o in cursor}
        short = shortfall(cursor, held)
        if not short:
            return {"shortfall": {}, "rollbacks": list(self.backend.get_bookmark(ROLLBACKS_KEY) or []),
                    "compacted": compacted, "floors": floors}
        with self.backend.writer():
            found = list(self.backend.get_bookmark(ROLLBACKS_KEY) or [])[-9:]
            found.append({"id": uuid.uuid4().hex[:16], "at": time.time(), "origins": len(short),
                          "changes": sum(cursor[o] - top for o, top in short.items())})
            self.backend.set_bookmark(ROLLBACKS_KEY, found)
        return {"shortfall": short, "rollbacks": found, "compacted": compacted, "floors": floors}

    def apply_snapshot(self, records: list[Any], *, bookmarks: dict[str, Any] | None = None,
                       held: dict[str, int] | None = None) -> dict[str, Any]:
        with self.backend.batch():
            return self._apply_snapshot(records, bookmarks, held)

    def _apply_snapshot(self, records: list[Any], bookmarks: dict[str, Any] | None,
                        held: dict[str, int] | None) -> dict[str, Any]:
        # A hub's records, checked at the door with the doubled limit on stamps, as for anything
        # the hub took.
        writes, refused = self.rebuilt(records, 2 * self.backend.limits.max_skew_ms, "a record of the hub's snapshot")
        # First (a store without transactions): a crash before the records leaves the last page
        # to be taken again, and the sequence rule then takes the log on from `held`.
        self.backend.history.hold({o: seq for o, seq in (held or {}).items() if o != self.backend.origin})
        states, conflicts = self.merger.merge_and_persist(writes, own=False, bookmarks=bookmarks, quarantined=refused,
                                                    log=False)
        return {"received": len(records), "applied": len(states), "conflicts": len(conflicts),
                "quarantined": [refusal_answer(q) for q in refused]}

    def within_cap(self, refused: list[dict]) -> list[dict]:
        """Of these refusals, those the quarantine keeps: a hub keeps so many, in so many bytes; the
        sender keeps its own. Called inside the writer that stores them (and a store without
        transactions checks again after storing, `_persist`), so two requests at once cannot
        both pass the cap."""
        if not refused or self.backend.limits.quarantine_cap is None:
            return refused
        rows, size = self.backend.ledgers.quarantine_held()
        kept = []
        for q in refused:
            rows, size = rows + 1, size + entry_bytes(q)
            if self.backend.limits.over_cap(rows, size):
                break
            kept.append(q)
        return kept

    def rebuilt(self, records: list[Any], skew_ms: int, what: str) -> tuple[list[Change], list[dict]]:
        """(the writes that rebuild these records, quarantine entries for the records that are not
        merge states or whose writes the door refuses); the writes' stamps move the clock."""
        now = wall_ms()
        writes, refused = [], []
        for state in records:
            rebuilt, problem = writes_of(state)
            problem = problem or next(filter(None, (check_change(w, now_ms=now, max_skew_ms=skew_ms)
                                                    for w in rebuilt)), None)
            if problem is None:
                writes += rebuilt
            else:
                keep = self.backend.limits.quarantine_keep
                refused.append(quarantine_entry(state, record_refusal(what, problem), iso_from_ms(now), keep))
        for write in writes:
            self.backend.clock.observe(write["hlc"])
        for q in refused:
            log.warning("quarantined %s", q["reason"])
        return writes, refused

    def restart_origin(self, origin: str, first_seq: int) -> tuple[str, int]:
        with self.backend.writer():
            self.backend.refresh_origin()
            if self.backend.origin != origin:
                return self.backend.origin, 0  # another round (or process) has done it already
            tail = self.backend.changes_since({origin: first_seq - 1}, 2**31 - 1, only_origin=origin)  # all of it
            new = new_origin(self.backend.store_kind)
            moved, stamps = moved_to(tail, new)
            for _ in range(20):
                states = [restamp_state(s, stamps) for s in self.backend.load({change_key(c) for c in tail}).values()]
                try:
                    self.backend.retire_tail(origin, first_seq, new, moved, states)
                    break
                except RetryMerge:
                    continue
            else:
                raise StateConflict("The store kept changing while its origin moved; try again.", code="busy")
        log.warning("origin %s moved on to %s from #%d: %d changes to send again", origin, self.backend.origin,
                    first_seq, len(moved))
        return self.backend.origin, len(moved)

    def resend_own(self, seqs: list[int]) -> int:
        with self.backend.writer():
            self.backend.refresh_origin()
            own = self.backend.origin
            logged = self.backend.known([{"origin": own, "seq": s} for s in seqs], whole=True) if seqs else {}
            held = [logged[(own, s)] for s in sorted(set(seqs)) if (own, s) in logged]
            states = self.backend.load({change_key(c) for c in held})
            maybe = [(ch, still_held(ch, states.get(change_key(ch)))) for ch in held]
            copies = [(ch, copy) for ch, copy in maybe if copy is not None]
            first = self.backend.next_seq() if copies else 0  # first: it may move the clock
            again = [{**copy, "seq": first + n, "hlc": self.backend.clock.now()} for n, (_, copy) in enumerate(copies)]
            if again:
                self.merger.merge_and_persist(again, own=True)
        for (ch, _), new in zip(copies, again):
            log.warning("own change %s#%s written again as #%s", own, ch["seq"], new["seq"])
        return len(again)

    def _same_as_logged(self, changes: list[Change], relayed: bool = False) -> None:
        """A change logged already under its (origin, seq, hlc) must be that very change: two copies
        of one store can stamp two writes alike (the sender then moves to a new origin). A relayed
        copy that differs is only not taken: it is not the relayer's to settle."""
        logged = self.backend.known(changes, whole=True)
        for ch in changes:
            if logged.get((ch["origin"], ch["seq"])) != ch and not relayed:
                raise _reused(ch)

    def quarantine(self, entries: list[dict[str, Any]]) -> None:
        if entries:
            with self.backend.writer():
                self.merger.merge_and_persist([], own=False, quarantined=entries)


def _reused(ch: Change) -> StateConflict:
    return StateConflict(f"Change {ch['origin']}#{ch['seq']} is already stored with other content: two stores are "
                    "using the same origin.", code="origin_reused")
