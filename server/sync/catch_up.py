"""Catching up from the hub's records when its log no longer reaches back to this device's
cursor: the hub compacted history this device never pulled (it is new, was away longer than the
hub keeps history for it, or its store was restored). The log cannot be replayed across that,
so the device takes the hub's records page by page, each merged as the writes that made them
by the usual rule (its own unsynced edits stay, and are pushed as always), then goes on with
the log from the cursor the hub read before the first page."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from server.connectors.base import DatabaseConnector
from server.core.changes import Cursor
from server.core.errors import StoreUnavailable
from server.core.sequences import behind, shortfall
from server.sync.answers import SnapshotPage
from server.sync.bookmark import Bookmark, CatchUp, CatchUpRestart, kept, save_bookmark, stored_with
from server.sync.hub import Hub

log = logging.getLogger("server.sync")


@dataclass
class CaughtUp:
    records: int = 0  # records taken from the hub's snapshot
    conflicts: int = 0
    quarantined: int = 0
    whole: bool = True  # False: the hub lost history during it; given up, the cursor not taken


def needs_catch_up(local: DatabaseConnector, bookmark: Bookmark, compacted: dict[str, int]) -> bool:
    """A catch-up is under way, or the hub compacted part of an origin this device lacks (its
    own origin aside: the device holds all it wrote)."""
    return bookmark.catch_up is not None or bool(behind(bookmark.cursor, compacted, but=local.origin))


def catch_up(local: DatabaseConnector, hub: Hub, bookmark: Bookmark, batch_size: int) -> CaughtUp:
    """Take the hub's records, one transaction per page with the progress stored in it (a round
    that dies resumes at the next page), then move the cursor to what the first page's reading
    of the hub's log said, never back.

    That cursor is only true of a hub that still holds all of it: every page is read from a
    hub that holds at least as much of each origin (its own cursor, read before its records),
    and before the last page is taken the hub is asked again (the shortfall call, whose answer
    also lists the findings of a hub that lost history). A hub put back from a backup meanwhile
    fails one of those: the catch-up is given up (what was merged stays: merging it again
    changes nothing) and the cursor stays where it was, so that no cursor is taken from a hub
    state that was not read whole."""
    progress = bookmark.catch_up or CatchUp(after=None, cursor=None, rollbacks=list(bookmark.rollback_ids))
    done = CaughtUp()
    log.info("the hub compacted history this device lacks: catching up from its records")
    while True:
        after = (progress["after"][0], progress["after"][1]) if progress["after"] else None
        page = hub.snapshot_page(after, batch_size)
        cursor = progress["cursor"] if progress["cursor"] is not None else page["cursor"]
        lost = _lost(local, hub, cursor, page, progress)
        if lost:
            _give_up(local, bookmark, lost)
            done.whole = False
            return done
        if page["next"] is None:
            # Never back, and never this device's own origin: only the round's own-log check and
            # the hub's acknowledgements move that (a hub claiming more of it would hide edits).
            moved = bookmark.replace(catch_up=None, cursor={
                **bookmark.cursor, **{o: max(seq, bookmark.cursor.get(o, 0)) for o, seq in cursor.items()
                                      if o != local.origin}})
        else:
            if after is not None and tuple(page["next"]) <= after:
                raise StoreUnavailable("The hub's snapshot did not move on; the round stops here.")
            moved = bookmark.replace(catch_up=CatchUp(after=list(page["next"]), cursor=cursor,
                                                      rollbacks=progress["rollbacks"]))
        result = local.apply_snapshot(page["records"], bookmarks=stored_with(moved),
                                      held=cursor if page["next"] is None else None)
        done.records += len(page["records"])
        done.conflicts += result["conflicts"]
        done.quarantined += len(result["quarantined"])
        bookmark.cursor, bookmark.catch_up = moved.cursor, moved.catch_up  # the step is stored: taken
        if moved.catch_up is None:
            return done
        progress = moved.catch_up


def _lost(local: DatabaseConnector, hub: Hub, cursor: Cursor, page: SnapshotPage, progress: CatchUp) -> set[str]:
    """The origins of the catch-up's cursor (this device's own aside) that the hub no longer holds
    all of: read off the page, and for the last page asked of the hub again (a new finding of a
    hub that lost history puts every origin in doubt)."""
    wanted = {o: seq for o, seq in cursor.items() if o != local.origin}
    lost = set(shortfall(wanted, page["cursor"]))
    if lost or page["next"] is not None or not wanted:
        return lost
    answer = hub.shortfall(wanted)
    if {f["id"] for f in answer["rollbacks"]} - set(progress["rollbacks"]):
        return set(wanted)
    return set(answer["shortfall"])


def _give_up(local: DatabaseConnector, bookmark: Bookmark, lost: set[str]) -> None:
    log.warning("the hub lost history while this device caught up from its records (%d origins): the catch-up "
                "starts again, and its cursor is not taken", len(lost))
    bookmark.catch_up = None
    bookmark.catch_up_restarts = kept(bookmark.catch_up_restarts, CatchUpRestart(at=time.time(), origins=len(lost)))
    save_bookmark(local, bookmark)
