"""One sync round between a local store and a hub, through DatabaseConnector only.

The device keeps, per hub epoch, one cursor: origin -> the last sequence number the hub is known
to hold (because we pushed it and the hub acknowledged, or because we pulled it). Push sends
local changes after the cursor; pull fetches the hub's changes after it. The cursor moves only
after the other side took the batch; for a pull, in the same SQLite transaction as the apply.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from server.connectors.base import DatabaseConnector
from server.core.changes import Change, Cursor, is_slot_filler_of, quarantine_entry
from server.core.clock import is_stamp
from server.core.errors import AppError, HubRefused, StoreUnavailable
from server.core.sequences import advance
from server.core.times import iso_now, ms_from_iso
from server.sync.answers import Refused
from server.sync.bookmark import (
    Bookmark,
    Healer,
    Reset,
    Restart,
    Rollback,
    kept,
    load_bookmark,
    load_held,
    save_bookmark,
    save_held,
    stored_with,
)
from server.sync.catch_up import catch_up, needs_catch_up
from server.sync.heal import heal_if_due, keep_floors, trim
from server.sync.hub import Hub
from server.sync.refusals import held_refusal, refused_by_hub
from server.sync.relay import note_owned, skipped
from server.sync.report import RoundReport
from server.sync.sized import PUSH_BYTES, within_bytes

log = logging.getLogger("server.sync")
Progress = Callable[[str, int], None]  # (phase, changes moved so far in that phase)


def _keep_refused(local: DatabaseConnector, batch: list[Change], refused: list[Refused]) -> int:
    """The hub refused some of this device's own changes: keep them in the local quarantine,
    so the person can see them and the queue goes on without them. Returns how many of them were
    refused because this device's clock is ahead."""
    by_seq = {ch["seq"]: ch for ch in batch}
    now = iso_now()
    refusals = [(r, refused_by_hub(r)) for r in refused]
    entries = [quarantine_entry(by_seq.get(r.get("seq"), r), refusal, now) for r, refusal in refusals]
    local.quarantine(entries)
    dues = [d for d in map(due_at, entries) if d is not None]
    if dues:  # the earliest time a round looks at them again (_resend_held)
        held = load_held(local)
        was = held["due"] if held is not None else None
        save_held(local, min([*dues, *([was] if was is not None else [])]))
    return sum(refusal.code == "clock_ahead" for _, refusal in refusals)


HELD_LOOKED_AT = 1000  # quarantine entries looked at, newest first


def due_at(entry: dict) -> float | None:
    """When this device's own change, refused by the hub because its stamp was ahead of the
    hub's clock, is due to be written again (epoch seconds on this device's clock), or None for
    any other refusal. At the refusal the stamp was `ahead` seconds past the hub's clock and the
    hub takes at most `limit`: after `ahead - limit` seconds (on this device's clock, whose rate
    is right even where its time is not) the hub's clock has caught up. A clock still wrong is
    refused again, and due again after as long: the retry paces itself."""
    refusal = held_refusal(entry)
    if refusal is None or refusal.code != "clock_ahead":
        return None
    ahead, limit = refusal.detail.get("aheadSeconds"), refusal.detail.get("limitSeconds")
    if type(ahead) is not int or type(limit) is not int:  # a hub's answer of another shape: never due
        return None
    return ms_from_iso(entry["receivedAt"]) / 1000 + max(0, ahead - limit) + 1


def due_again(entry: dict, now_s: float) -> bool:
    due = due_at(entry)
    return due is not None and now_s >= due


def _resend_held(local: DatabaseConnector, report: RoundReport) -> None:
    """Own changes the hub refused as ahead of its clock, written again once they are due, so
    that the hub and the user's other devices get them: a refusal for time is not for good.
    The quarantine is read only when the earliest due time (kept as a bookmark) has come, or
    when no round has looked yet."""
    now = time.time()
    held = load_held(local)
    if held is not None and (held["due"] is None or now < held["due"]):
        return
    own = local.origin
    mine = [e for e in local.list_quarantine(HELD_LOOKED_AT)
            if e.get("origin") == own and type(e.get("seq")) is int and due_at(e) is not None]
    due = [e for e in mine if due_again(e, now)]
    if due:
        report.resent += local.resend_own([e["seq"] for e in due])
        local.release_quarantined([e["id"] for e in due])
    later = [d for d in map(due_at, mine) if d is not None and now < d]
    save_held(local, min(later) if later else None)


def run_round(local: DatabaseConnector, hub: Hub, batch_size: int = 500,
              progress: Progress | None = None) -> RoundReport:
    """Push, then pull. A store error (StoreUnavailable for a lost hub) ends the round early
    and is reported in `error`; nothing half-done is recorded, so whatever was not acknowledged
    is simply sent again next time. Other exceptions propagate."""
    started = time.perf_counter()
    report = RoundReport()
    opening = getattr(hub, "open_round", None)  # one call for the round's opening (feature "round")
    try:
        if opening is not None:
            opening(load_bookmark(local).cursor, local.origin, batch_size)
        bookmark = _begin(local, hub, report)
        compacted = _check_acknowledged(local, hub, bookmark, report)
        _check_own_log(local, hub, bookmark, batch_size, report)
        report.healed = heal_if_due(local, hub, bookmark, batch_size)
        _catch_up(local, hub, bookmark, compacted, batch_size, report)
        _resend_held(local, report)
        _push(local, hub, bookmark, batch_size, report, progress)
        _pull(local, hub, bookmark, batch_size, report, progress)
        # A conflict settled elsewhere (restored on another device, edited since) is settled here.
        # Only a round that moved something can bring that news: an idle round (every live wake)
        # reads no ledger.
        if report.pulled or report.from_snapshot or report.pushed_sent:
            report.settled = local.settle_conflicts()
        report.trimmed = trim(local, bookmark)
    except AppError as exc:
        report.error, report.error_code = exc.message, exc.code
    finally:
        if opening is not None:  # what the opening answered is for this round only
            getattr(hub, "end_round")()
        report.duration_ms = (time.perf_counter() - started) * 1000
    return report


CATCH_UP_TRIES = 3  # catch-ups a round starts again after the hub lost history under one


def _catch_up(local: DatabaseConnector, hub: Hub, bookmark: Bookmark, compacted: Cursor, batch_size: int,
              report: RoundReport) -> None:
    """Catch up from the hub's records if its log no longer reaches back to the cursor. One given
    up because the hub lost history meanwhile (put back from a backup) starts again from what
    the hub now holds and acknowledges, a few times a round; then the next round goes on."""
    for _ in range(CATCH_UP_TRIES):
        if not needs_catch_up(local, bookmark, compacted):
            return
        caught = catch_up(local, hub, bookmark, batch_size)
        report.from_snapshot += caught.records
        report.conflicts += caught.conflicts
        report.quarantined += caught.quarantined
        if caught.whole:
            return
        compacted = _check_acknowledged(local, hub, bookmark, report)


def _begin(local: DatabaseConnector, hub: Hub, report: RoundReport) -> Bookmark:
    """The round's bookmark (where this device is in the hub's log): the stored one, or one with
    a fresh cursor when the hub's epoch changed."""
    epoch = hub.hub_epoch()
    bookmark = load_bookmark(local)
    # The floors are the hub's to say again this round (_check_acknowledged, before any trim).
    stored_epoch, bookmark.epoch, bookmark.hub_floors = bookmark.epoch, epoch, {}
    if stored_epoch != epoch:
        if stored_epoch is not None:
            # The hub was wiped or re-seeded: what it held is gone, so send it everything we
            # hold (our unsynced work included) and take everything it has now.
            report.hub_reset = True
            bookmark.resets = kept(bookmark.resets, Reset({"from": stored_epoch, "to": epoch, "at": time.time()}))
            log.warning("hub epoch changed (%s -> %s): full resync", stored_epoch, epoch)
        bookmark.cursor, bookmark.rollback_ids = {}, []
        bookmark.heal_due = True  # what this store's log no longer holds, the new hub gets from the records
        bookmark.catch_up = None  # a catch-up from the old hub's records: the new one's starts afresh
        bookmark.owned = {}  # the new hub's devices are not the old one's
        if bookmark.healer:  # nothing is logged under the heal origin at the new hub yet
            bookmark.healer = Healer(origin=bookmark.healer["origin"], top=0)
        save_bookmark(local, bookmark)
    return bookmark


def _check_acknowledged(local: DatabaseConnector, hub: Hub, bookmark: Bookmark, report: RoundReport) -> Cursor:
    """Does the hub still hold everything it acknowledged to this device (its own origins' tops
    as pushed, the other origins as far as they were pulled)? A hub restored from a backup, a
    store file swapped under a hub server or a MongoDB restored from a snapshot keeps its epoch
    but holds less. Then the cursor goes back to what the hub holds, and this round gives back
    what the hub lost: this device's own changes by the push, other devices' by the relay.
    The hub keeps what each device found, so that a device whose losses another one gave back
    first still hears of it; one that joined after a finding does not. Returns what the hub
    compacted of the origins this cursor lacks part of (origin -> floor)."""
    cursor = bookmark.cursor
    answer = hub.shortfall(cursor)
    short, compacted = answer["shortfall"], answer.get("compacted") or {}
    keep_floors(bookmark, answer)
    known = set(bookmark.rollback_ids)
    fresh = [f for f in answer["rollbacks"] if f["id"] not in known]
    if not short and not fresh:
        return compacted
    bookmark.rollback_ids = [f["id"] for f in answer["rollbacks"]]
    if cursor:  # a device that starts from nothing has lost nothing and is told of nothing
        for n, found in enumerate(fresh, 1):
            here = bool(short) and n == len(fresh)  # this device's own finding is the newest
            rollback = Rollback(at=found["at"], origins=found["origins"], changes=found["changes"],
                                by="this device" if here else "another device")
            bookmark.rollbacks = kept(bookmark.rollbacks, rollback)
            report.hub_rollback = rollback
    if short:
        bookmark.cursor = {**cursor, **short}
        bookmark.heal_due = True  # what this store's log no longer holds of it, the hub gets from the records
        log.warning("the hub holds %d fewer changes than it acknowledged (in %d origins): it was restored from an "
                    "older copy; giving them back", sum(cursor[o] - top for o, top in short.items()), len(short))
    save_bookmark(local, bookmark)
    return compacted


def _check_own_log(local: DatabaseConnector, hub: Hub, bookmark: Bookmark, batch_size: int,
                   report: RoundReport) -> None:
    """Does the hub hold, under this device's origin, anything the store does not? Only this
    device writes its origin, so the hub's part of it past the cursor is normally nothing, or (a
    round that died after the hub took a batch) exactly what the store holds: then the cursor
    just moves. Anything else means this store is older than its own log on the hub, restored
    from a backup or copied to another machine that syncs too: its edits from the first change
    that differs go on under a new origin, and the hub's are pulled like another device's."""
    own = local.origin
    after = bookmark.cursor.get(own, 0)
    while batch := hub.changes_since({own: after}, batch_size, only_origin=own):
        ours = {ch["seq"]: ch for ch in local.changes_since({own: after}, len(batch), only_origin=own)}
        for ch in batch:
            if not isinstance(ch, dict) or ch.get("seq") != after + 1:
                log.warning("the hub answered its part of this device's log out of order; not compared")
                return
            mine = ours.get(ch["seq"])
            # The whole change, not only its stamp: two copies of one store can stamp two
            # different writes alike (the same clock state, the same millisecond).
            if mine is None or not (mine == ch or is_slot_filler_of(ch.get("hlc"), own)):
                _restart_origin(local, bookmark, own, ch["seq"], report)
                return
            after = ch["seq"]
        bookmark.cursor[own] = after
        save_bookmark(local, bookmark)


def _restart_origin(local: DatabaseConnector, bookmark: Bookmark, origin: str, first_seq: int,
                    report: RoundReport) -> None:
    new, moved = local.restart_origin(origin, first_seq)
    if new == origin:
        return
    restart = Restart({"from": origin, "to": new, "at": time.time(), "resent": moved})
    report.origin_restart = restart
    # The old origin is read from the hub from here on like any other: what the store still
    # holds of it is skipped as already known, and what it had lost comes back.
    bookmark.restarts = kept(bookmark.restarts, restart)
    save_bookmark(local, bookmark)
    log.warning("the hub holds changes of this device (%s) from #%d on that this store does not: "
                "a restored or copied store. %d edits go on as %s; the hub's are pulled back",
                origin, first_seq, moved, new)


def _push(local: DatabaseConnector, hub: Hub, bookmark: Bookmark, batch_size: int,
          report: RoundReport, progress: Progress | None) -> None:
    # Push what was pending when the round began: a busy writer must not keep a round (and
    # its pull) waiting forever. Later writes go in the next round. This device's own origin
    # first; then, as a relay, whatever else the store holds past the cursor: the changes of
    # other origins a hub lost (reset, rolled back, or a retired device's that only this store
    # still has), and what is left of an origin this store moved on from.
    own = local.origin
    everything, _ = local.pending_since(bookmark.cursor)
    mine, _ = local.pending_since(bookmark.cursor, own)
    try:
        _push_origin(local, hub, bookmark, batch_size, report, progress, mine, only=own)
    except HubRefusedOrigin:
        # The hub gives this origin to another device: the store was copied or moved to a
        # machine with another token. What the hub has of it stays; the rest goes on anew.
        _restart_origin(local, bookmark, own, bookmark.cursor.get(own, 0) + 1, report)
        moved, _ = local.pending_since(bookmark.cursor, local.origin)
        _push_origin(local, hub, bookmark, batch_size, report, progress, moved, only=local.origin)
    if everything > mine:
        _push_origin(local, hub, bookmark, batch_size, report, progress, everything - mine, exclude=own)


class HubRefusedOrigin(Exception):
    """The hub answered 403 origin_not_yours to this device's own origin."""


def _push_origin(local: DatabaseConnector, hub: Hub, bookmark: Bookmark, batch_size: int,
                 report: RoundReport, progress: Progress | None, budget: int, *, only: str | None = None,
                 exclude: str | None = None) -> None:
    """Send `budget` changes after the cursor: `only` this device's origin, or (a relay) all the
    others but `exclude`."""
    relay = only is None
    resumes = 0
    while budget > 0:
        skip = skipped(local, bookmark) if relay else {}  # their own devices give them back
        batch = within_bytes(local.changes_since({**bookmark.cursor, **skip}, min(batch_size, budget),
                                                 only_origin=only, exclude_origin=exclude), PUSH_BYTES)
        if not batch:
            break
        budget -= len(batch)
        try:
            result = hub.relay_changes(batch) if relay else hub.apply_changes(batch)
        except AppError as exc:
            if isinstance(exc, HubRefused) and exc.reason == "origin_not_yours" and not relay:
                raise HubRefusedOrigin() from None
            raise
        if result.get("unsupported"):
            return  # an older hub server takes no relay: these wait, counted as pending
        if result.get("quarantined"):
            report.refused_for_clock += _keep_refused(local, batch, result["quarantined"])
            report.quarantined += len(result["quarantined"])
        owned = result.get("owned") or {}
        note_owned(bookmark, owned)
        cursor = {**advance(bookmark.cursor, batch), **{o: bookmark.cursor.get(o, 0) for o in owned}}
        for o, top in (result.get("resume") or {}).items():
            # The hub holds less of this origin than the batch assumed: send again from its top.
            if top < cursor.get(o, 0):
                budget += cursor[o] - top
                cursor[o] = top
                resumes += 1
        if resumes > 20:
            raise StoreUnavailable("The hub keeps asking for changes it was just sent; the round stops here.")
        bookmark.cursor = cursor
        save_bookmark(local, bookmark)
        if relay:
            report.relayed += result["applied"]
        else:
            report.pushed += result["applied"]
        report.pushed_sent += len(batch)
        if progress:
            progress("push", report.pushed_sent)


def _pull(local: DatabaseConnector, hub: Hub, bookmark: Bookmark, batch_size: int,
          report: RoundReport, progress: Progress | None) -> None:
    while True:
        batch = hub.changes_since(bookmark.cursor, batch_size, exclude_origin=local.origin)
        if not batch or not pull_batch(local, bookmark, batch, report, progress):
            break


def pull_batch(local: DatabaseConnector, bookmark: Bookmark, batch: list[Change], report: RoundReport,
               progress: Progress | None = None) -> bool:
    """Apply one page the hub answered (a pull's, or a live wake's) and move the cursor past it,
    in one transaction. False when nothing in it could be passed by number."""
    moved = bookmark.replace(cursor=advance(bookmark.cursor, batch))
    # The batch and the cursor that passes it are stored in one transaction.
    result = local.apply_changes(batch, bookmarks=stored_with(moved), from_hub=True)
    report.pulled += result["applied"]
    stamps = [ch["hlc"] for ch in batch if isinstance(ch, dict) and is_stamp(ch.get("hlc"))]
    report.newest_pulled = max([report.newest_pulled or "", *stamps]) or None
    report.conflicts += result["conflicts"]
    report.quarantined += len(result.get("quarantined", ()))
    if progress:
        progress("pull", report.pulled)
    if moved.cursor == bookmark.cursor:
        # Nothing in the batch could be passed by number (a hub answering garbage): asking
        # again would get the same answer forever.
        log.warning("the hub's batch named no change this device could move past; the pull stops here")
        return False
    bookmark.cursor = moved.cursor
    return True
