"""What a reader may step over: the one rule about sequence numbers that every store, the hub
and the sync engine follow. Pure: no I/O, no connector.

Each origin numbers its changes 1, 2, 3, ... with no gap, and a cursor (origin -> last seq seen)
says "I hold everything of this origin up to here". That is only true if nobody ever stores or
passes a change whose predecessor is missing. So:
- a store takes, per origin, only a run that starts at most one past its top (what it already
  holds is recognised, never stored twice); a batch that starts further on is refused from the
  gap on, and the sender is told where to resume (`admit`);
- a reader stops at the first missing number (`run_after`);
- a cursor moves only through numbers it got without a gap (`advance`).
A hub restored from a backup holds less than it acknowledged; `shortfall` names what it lacks.
History every device still served has pulled is the part a hub may compact (`retention_floor`).
A compacted origin keeps its floor, the newest seq it dropped: everything up to the floor is
held (a change there is never stored again, `held_below`), and a reader whose cursor is below
the floor cannot catch up by reading the log: it needs the records themselves (`behind`).
"""

from __future__ import annotations

from typing import Any, Iterable

Cursor = dict[str, int]  # origin -> last sequence number seen: the one definition (changes.py names it too)


def _slot(change: Any) -> tuple[str, int] | None:
    """(origin, seq) of a change that names them readably, else None (the door refuses it)."""
    if not isinstance(change, dict):
        return None
    origin, seq = change.get("origin"), change.get("seq")
    if isinstance(origin, str) and type(seq) is int and seq >= 1:
        return origin, seq
    return None


def admit(changes: list[Any], tops: Cursor) -> tuple[list[Any], Cursor]:
    """(the changes a store holding `tops` may take, origin -> top for each origin whose part of
    the batch starts past top + 1 or has a hole). Within an origin, changes are taken in seq
    order while each is at most one past the highest taken or held; from the first gap on that
    origin's changes are left out. Changes without a readable origin and seq pass through, for
    the door to refuse with its reason."""
    reach = dict(tops)
    stopped: Cursor = {}
    left_out: set[int] = set()
    slots = sorted((slot, n) for n, slot in enumerate(map(_slot, changes)) if slot is not None)
    for (origin, seq), n in slots:
        top = reach.get(origin, 0)
        if origin in stopped or seq > top + 1:
            stopped.setdefault(origin, top)
            left_out.add(n)
            continue
        reach[origin] = max(top, seq)
    # The batch keeps its own order (a store merges in the order it was sent).
    return [ch for n, ch in enumerate(changes) if n not in left_out], stopped


def run_after(after: int, seqs_and_items: Iterable[tuple[int, Any]]) -> list[Any]:
    """The items of one origin, given in seq order, from `after + 1` up to the first missing seq."""
    out = []
    expected = after + 1
    for seq, item in seqs_and_items:
        if seq != expected:
            break
        out.append(item)
        expected += 1
    return out


def advance(cursor: Cursor, batch: list[Any]) -> Cursor:
    """The cursor past this batch, moved per origin only through seqs that follow it without a
    gap. A change too broken to name its origin and seq cannot be passed by number."""
    moved = dict(cursor)
    for origin, seq in sorted(s for s in map(_slot, batch) if s is not None):
        if seq == moved.get(origin, 0) + 1:
            moved[origin] = seq
    return moved


def shortfall(acknowledged: Cursor, held: Cursor) -> Cursor:
    """origin -> what the store holds, for each origin where it holds less than it acknowledged."""
    return {o: held.get(o, 0) for o, seq in acknowledged.items() if held.get(o, 0) < seq}


def held_below(changes: list[Any], floors: Cursor) -> list[Any]:
    """The changes that are not at or below their origin's floor (compacted: held already, even
    though the log no longer has them). Changes without a readable origin and seq pass through."""
    out = []
    for ch in changes:
        slot = _slot(ch)
        if slot is None or slot[1] > floors.get(slot[0], 0):
            out.append(ch)
    return out


def behind(cursor: Cursor, floors: Cursor, but: str | None = None) -> Cursor:
    """origin -> floor, for each compacted origin (other than `but`) of which `cursor` lacks part
    of what was compacted: a reader there must be sent the records, not the log."""
    return {o: f for o, f in floors.items() if o != but and f > cursor.get(o, 0)}


def retention_floor(tops: Cursor, pulled: dict[str, Cursor], owners: dict[str, str]) -> Cursor:
    """origin -> the newest seq of it that every device still served holds, for each origin of
    `tops` (the hub's newest seq of each): what a hub may compact, from 1 up to the floor.
    `pulled` is device -> the cursor of its last pull, for the devices that hold history back (a
    device never seen, or not seen for longer than the retention, is served a snapshot instead);
    `owners` is origin -> its device, which holds all it wrote whatever its cursor says."""
    floor: Cursor = {}
    for origin, top in tops.items():
        held = [cursor.get(origin, 0) for device, cursor in pulled.items() if owners.get(origin) != device]
        floor[origin] = min([top, *held])
    return floor
