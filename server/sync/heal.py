"""A device's log bounded below what the hub compacted, and a hub healed from the records when it
then loses history that no log holds any more.

Trimming: the shortfall answer names, per origin of the cursor, the hub's floor: what every
device the hub serves has pulled, and the hub holds in its records. Below that (and below this
device's cursor) the device drops its copy of the log too, its own origin included, bar the
own changes the hub refused, which may be written again from the log (`trim`).

Healing: a hub restored from a backup older than what was dropped (or wiped: a new epoch) lacks
changes that no log anywhere holds; their effects live on in the devices' records. A device that
finds the hub holding less of an origin than its own log can give back (its cursor, moved back to
what the hub holds, is below that origin's floor here) gives the hub its records, page by page,
merged there by the usual rule, and with the last page holds two origins at the hub:
- a fresh one, at 1: every device whose cursor lacks it (every other device, new ones too) is sent
  the records once, so that none is left without what they brought back;
- this device's own, up to its log's floor, so that the rest of its log is pushed from there.
What it held of other origins past their gap can never be relayed (a reader stops at a hole): it
is in the records the hub now has, and goes from the log."""

from __future__ import annotations

import logging

from server.connectors.base import DatabaseConnector
from server.core.changes import Cursor, new_origin, state_key
from server.core.errors import HubRefused
from server.sync.answers import ShortfallAnswer
from server.sync.bookmark import Bookmark, Healer, save_bookmark
from server.sync.hub import Hub
from server.sync.sized import PUSH_BYTES, within_bytes

log = logging.getLogger("server.sync")
TRIM_LIMIT = 5000  # changes dropped from the log per round at most
REFUSED_LOOKED_AT = 1000  # quarantine entries looked at for own changes that must stay in the log


def heal_if_due(local: DatabaseConnector, hub: Hub, bookmark: Bookmark, batch_size: int) -> int:
    """Give the hub this device's records if it was found holding less of an origin than this
    device's log can give back (`bookmark.heal_due`). Returns how many records were given (0:
    none needed)."""
    if not bookmark.heal_due:
        return 0
    cursor = bookmark.cursor
    gaps = {o: f for o, f in local.floors().items() if cursor.get(o, 0) < f}
    given = _give_back(local, hub, bookmark, gaps, batch_size) if gaps else 0
    bookmark.heal_due = False
    save_bookmark(local, bookmark)
    return given


def _give_back(local: DatabaseConnector, hub: Hub, bookmark: Bookmark, gaps: Cursor, batch_size: int) -> int:
    own = local.origin
    was = bookmark.healer
    healer = Healer(origin=was["origin"], top=was["top"]) if was else Healer(origin=new_origin("heal"), top=0)
    hold = _hold(hub, bookmark, healer, gaps, own)
    log.warning("the hub lacks changes of %d origins that this device's log no longer holds (%s): giving it the "
                "records", len(gaps), ", ".join(sorted(gaps)))
    after, given, skipped = None, 0, set()
    while True:
        page = local.snapshot_page(after, batch_size)
        records = within_bytes(page["records"], PUSH_BYTES)
        last = page["next"] is None and len(records) == len(page["records"])
        try:
            result = hub.heal(records, hold=hold if last else None, log_as=healer["origin"] if _logs(hub) else None)
        except HubRefused as exc:
            if exc.reason == "origin_not_yours":  # a copied store's: the next round heals under a new one
                bookmark.healer = {"origin": new_origin("heal"), "top": 0}
            raise
        if result.get("unsupported"):
            log.warning("this hub server cannot be given records (an older one): what it lost stays lost to it")
            return given
        healer["top"] = max(healer["top"], hold.get(healer["origin"], 0), *result.get("logged", {}).values())
        given += len(records)
        skipped |= set(result.get("skipped") or ())
        if last:
            break
        after = state_key(records[-1])
    cursor = bookmark.cursor
    bookmark.healer = healer  # one heal origin for as long as this store heals this hub: no quota spent
    cursor[healer["origin"]] = max(cursor.get(healer["origin"], 0), healer["top"])  # its own records' changes
    if own in gaps:
        cursor[own] = max(cursor.get(own, 0), gaps[own])
    tails = local.tops({o for o in gaps if o != own})
    if tails:  # past a hole at the hub: never relayed, and in the records the hub now has
        local.compact(tails, 2**31 - 1)
    if skipped:
        log.warning("the hub took no writes of %s: their own devices give them back", ", ".join(sorted(skipped)))
    return given


def _logs(hub: Hub) -> bool:
    """Does this hub log what a heal changes? A store does; a hub server says so ("healLog")."""
    return "healLog" in getattr(hub, "features", ("healLog",))


def _hold(hub: Hub, bookmark: Bookmark, healer: Healer, gaps: Cursor, own: str) -> Cursor:
    """What the last page holds at the hub: this device's own origin up to where its log starts;
    and its heal origin where the hub lost part of what it logged there (the records now hold
    it), or, at a hub that logs nothing of a heal, one past the last hold: every other device
    then takes the records once."""
    hold = {own: gaps[own]} if own in gaps else {}
    origin, top = healer["origin"], healer["top"]
    if not _logs(hub):
        hold[origin] = top + 1
    elif bookmark.cursor.get(origin, 0) < top:
        hold[origin] = top
    return hold


def trim(local: DatabaseConnector, bookmark: Bookmark) -> int:
    """Drop what of the log the hub compacted and this device passed (at most TRIM_LIMIT
    changes). Returns how many went. What was asked and done is kept in the bookmark, so an idle
    round writes nothing."""
    cursor, hub_floors, done = bookmark.cursor, bookmark.hub_floors, bookmark.trimmed
    want = {o: min(f, cursor.get(o, 0)) for o, f in hub_floors.items()}
    want = {o: f for o, f in want.items() if f > done.get(o, 0)}
    if not want:
        return 0
    own = local.origin
    if own in want and local.count_quarantine():
        refused = [e["seq"] for e in local.list_quarantine(REFUSED_LOOKED_AT)
                   if e.get("origin") == own and type(e.get("seq")) is int]
        if refused:
            want[own] = min(want[own], min(refused) - 1)
    dropped = local.compact(want, TRIM_LIMIT)
    if dropped < TRIM_LIMIT:  # all of it: not asked again until a floor rises
        bookmark.trimmed = {**done, **want}
        save_bookmark(local, bookmark)
    return dropped


def keep_floors(bookmark: Bookmark, answer: ShortfallAnswer) -> None:
    bookmark.hub_floors = dict(answer.get("floors") or {})
