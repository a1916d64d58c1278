"""A live wake's page (feature "waitChanges"): the changes the hub answered a waiting device
with, applied as a pull's page when they follow on from the device's cursor, so that no round
has to run for news the hub already had in hand.

The page may be stale by the time it is applied: a round ran meanwhile, the hub was put back
from a backup, compacted, or re-seeded. So it is taken only as far as it is safe to take
without asking the hub again, and everything else is left to a round."""

from __future__ import annotations

from typing import Any

from server.connectors.base import DatabaseConnector
from server.core.changes import Cursor
from server.core.sequences import advance
from server.sync.bookmark import load_bookmark
from server.sync.engine import pull_batch
from server.sync.report import RoundReport


def apply_page(local: DatabaseConnector, news: dict[str, Any], batch_size: int, report: RoundReport) -> bool:
    """Apply the page in one transaction with the cursor. False when a round must run instead:
    no page, a full one (there may be more), another epoch, a catch-up under way, or a page that
    does not follow on from the cursor without a gap (the hub compacted or lost what lies between:
    a round catches up from its records, or gives back what it lost)."""
    changes = news.get("changes")
    if not isinstance(changes, list) or not changes or len(changes) >= batch_size:
        return False
    bookmark = load_bookmark(local)
    if bookmark.epoch != news.get("epoch") or bookmark.catch_up is not None:
        return False
    fresh = [ch for ch in changes if not held(bookmark.cursor, ch)]
    if not fresh:  # a round took them between the wait's asking and its answer
        return True
    passed = advance(bookmark.cursor, fresh)
    if sum(passed.values()) - sum(bookmark.cursor.get(o, 0) for o in passed) != len(fresh):
        return False  # a gap, a change twice, or one the cursor cannot pass: the round's to sort out
    return pull_batch(local, bookmark, fresh, report)


def held(cursor: Cursor, change: Any) -> bool:
    """A change the cursor has passed already (a live wake's page answered after a round pulled
    it); anything else, well formed or not, goes to the door."""
    if not isinstance(change, dict):
        return False
    origin, seq = change.get("origin"), change.get("seq")
    return isinstance(origin, str) and type(seq) is int and 0 < seq <= cursor.get(origin, 0)
