"""What of other devices' changes this device holds for a hub that lost them, and may not give
back itself: a hub server takes a relay only of origins no device could give back itself (one
it does not know, or a revoked device's). An origin another device owns is answered `owned`:
that device gives its own back by its push. Until it has, this device keeps those changes
(they are pending, and the status says whose they are), does not send them again for an hour
(the owner may since have been revoked: then the relay is taken), and pulls them once the
owner has given them back."""

from __future__ import annotations

import time
from typing import TypedDict

from server.connectors.base import DatabaseConnector
from server.core.changes import Cursor
from server.sync.bookmark import Bookmark

RETRY_SECONDS = 3600  # how long a relay of such an origin is not sent again


def skipped(local: DatabaseConnector, bookmark: Bookmark, now: float | None = None) -> Cursor:
    """origin -> this store's top of it, for the origins not to relay now (a hub answered that
    their own device gives them back, within the last hour and with changes still to pull)."""
    now = time.time() if now is None else now
    waiting = bookmark.owned
    tops = local.tops(set(waiting)) if waiting else {}
    cursor = bookmark.cursor
    bookmark.owned = {o: at for o, at in waiting.items()
                      if tops.get(o, 0) > cursor.get(o, 0) and now < at + RETRY_SECONDS}
    return {o: tops[o] for o in bookmark.owned}


def note_owned(bookmark: Bookmark, owned: dict[str, int], now: float | None = None) -> None:
    if owned:
        at = time.time() if now is None else now
        bookmark.owned = {**bookmark.owned, **dict.fromkeys(owned, at)}


class HeldForOther(TypedDict):
    origin: str
    changes: int  # of its changes this store holds that the hub lacks
    since: float  # when the hub said its own device gives them back (epoch seconds)


def held_for_others(local: DatabaseConnector, bookmark: Bookmark) -> list[HeldForOther]:
    """For the status: per origin a hub answered as its own device's, how many of its changes this
    store holds that the hub lacks, and since when it said so."""
    out: list[HeldForOther] = []
    for origin, at in sorted(bookmark.owned.items()):
        count, _ = local.pending_since(bookmark.cursor, origin)
        if count:
            out.append({"origin": origin, "changes": count, "since": at})
    return out
