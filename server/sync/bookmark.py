"""The device's sync state between rounds: where it is in a hub's log, and what it has found out
about that hub. One type, `Bookmark`, owned here with its load and save; the engine, heal,
catch-up and relay read and write its attributes, never keys of a shared dict.

What is stored stays what it was before this type existed (one JSON object under the store's
bookmark "hub"): `to_stored` writes that form and `load_bookmark` reads it, so a store written by an
older version loads, and an older version can read what this one saves. Each step of a round
saves it once: alone (`save_bookmark`) or in the transaction that applies a batch (`stored_with`).

A dataclass rather than a TypedDict: the stored form's keys (camelCase, some absent when empty)
are not the names the code reads, absent keys need defaults rather than `.get(...) or {}` at
every use, and a step that stores a moved copy (`replace`) must not share the cursor it moves.
The entries it lists (resets, restarts, rollbacks) are TypedDicts: they are JSON as they are,
and go to the status as they are."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

from server.connectors.base import DatabaseConnector
from server.core.changes import Cursor

BOOKMARK_KEY = "hub"  # the store's bookmark this is kept under
HELD_KEY = "held-for-clock"  # another bookmark: {"due": when the earliest own refused-for-time change is due}
KEPT = 10  # entries of each history list kept (resets, restarts, rollbacks, catch-up restarts)


# The hub's epoch changed, from one to another: it was wiped or re-seeded (`at`: epoch seconds).
# Declared the functional way: "from" is a keyword.
Reset = TypedDict("Reset", {"from": str, "to": str, "at": float})
# This store moved from its origin to a new one: it was older than its own log at the hub.
Restart = TypedDict("Restart", {"from": str, "to": str, "at": float, "resent": int})


class Rollback(TypedDict):
    """A hub found holding less than it had acknowledged (restored from a backup)."""
    at: float
    origins: int
    changes: int
    by: NotRequired[str]  # "this device" or "another device"; absent from the oldest ones: this device


class CatchUpRestart(TypedDict):
    """A catch-up given up because the hub lost history under it."""
    at: float
    origins: int


class CatchUp(TypedDict):
    """A catch-up from the hub's records under way: the page to read after, the cursor the first
    page's reading of the hub's log gave (None before it), and the hub's findings then."""
    after: list[str] | None
    cursor: Cursor | None
    rollbacks: list[str]


class Healer(TypedDict):
    """This store's heal origin at the hub, and the newest seq held or logged there."""
    origin: str
    top: int


@dataclass
class Bookmark:
    epoch: str | None = None  # the hub's epoch this cursor is of; None before the first round
    cursor: Cursor = field(default_factory=dict)  # origin -> the last seq the hub is known to hold
    resets: list[Reset] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    rollbacks: list[Rollback] = field(default_factory=list)
    rollback_ids: list[str] = field(default_factory=list)  # the hub's findings this device has heard of
    heal_due: bool = False  # the hub was found holding less (a shortfall, a new epoch): heal.py looks
    hub_floors: Cursor = field(default_factory=dict)  # the last shortfall answer's floors (heal.trim)
    trimmed: Cursor = field(default_factory=dict)  # origin -> how far this log was dropped, all of it
    healer: Healer | None = None
    owned: dict[str, float] = field(default_factory=dict)  # origin -> when a hub said its own device gives it back
    catch_up: CatchUp | None = None
    catch_up_restarts: list[CatchUpRestart] = field(default_factory=list)

    def replace(self, **changes: Any) -> Bookmark:
        """A copy with `changes`, its cursor its own: what a step stores before it is taken."""
        return dataclasses.replace(self, **{"cursor": dict(self.cursor), **changes})

    def to_stored(self) -> dict[str, Any]:
        """The stored form: the six keys every bookmark has, then those set (as before types)."""
        stored: dict[str, Any] = {
            "epoch": self.epoch, "cursor": dict(self.cursor), "resets": list(self.resets),
            "restarts": list(self.restarts), "rollbacks": list(self.rollbacks), "rollbackIds": list(self.rollback_ids),
        }
        optional = ((STORED_CATCH_UP, self.catch_up), (STORED_HEAL_DUE, self.heal_due), (STORED_TRIMMED, self.trimmed),
                    (STORED_OWNED, self.owned), (STORED_CATCH_UP_RESTARTS, self.catch_up_restarts),
                    (STORED_HEALER, self.healer), (STORED_HUB_FLOORS, self.hub_floors))
        stored.update({key: value for key, value in optional if value})
        return stored

    @classmethod
    def from_stored(cls, value: Any) -> Bookmark:
        """What `to_stored` wrote, or what any earlier version wrote (the same keys); None or
        anything not an object: a bookmark before the first round."""
        if not isinstance(value, dict):
            return cls()
        return cls(epoch=value.get("epoch"), cursor=dict(value.get("cursor") or {}),
                   resets=list(value.get("resets") or []), restarts=list(value.get("restarts") or []),
                   rollbacks=list(value.get("rollbacks") or []), rollback_ids=list(value.get("rollbackIds") or []),
                   heal_due=bool(value.get(STORED_HEAL_DUE)), hub_floors=dict(value.get(STORED_HUB_FLOORS) or {}),
                   trimmed=dict(value.get(STORED_TRIMMED) or {}), healer=value.get(STORED_HEALER) or None,
                   owned=dict(value.get(STORED_OWNED) or {}), catch_up=value.get(STORED_CATCH_UP) or None,
                   catch_up_restarts=list(value.get(STORED_CATCH_UP_RESTARTS) or []))


# The stored form's names of the keys a bookmark holds only when set.
STORED_CATCH_UP = "snapshot"
STORED_HEAL_DUE = "heal"
STORED_TRIMMED = "trimmed"
STORED_OWNED = "owned"
STORED_CATCH_UP_RESTARTS = "catchUpRestarts"
STORED_HEALER = "healer"
STORED_HUB_FLOORS = "hubFloors"


def load_bookmark(local: DatabaseConnector) -> Bookmark:
    """What the last step of a round stored, or an empty bookmark before the first."""
    return Bookmark.from_stored(local.get_bookmark(BOOKMARK_KEY))


def save_bookmark(local: DatabaseConnector, bookmark: Bookmark) -> None:
    """Store it alone (one write: one transaction)."""
    local.set_bookmark(BOOKMARK_KEY, bookmark.to_stored())


def stored_with(bookmark: Bookmark) -> dict[str, Any]:
    """The `bookmarks` argument of a store call that saves it in the transaction of its write."""
    return {BOOKMARK_KEY: bookmark.to_stored()}


def kept(entries: list[Any], entry: Any) -> list[Any]:
    """A history list with one more entry, the oldest going past KEPT."""
    return [*entries[-(KEPT - 1):], entry]


class Held(TypedDict):
    due: float | None  # when the earliest own change refused for its stamp is due; None: none held


def load_held(local: DatabaseConnector) -> Held | None:
    """None until a round has looked at the quarantine for own changes refused for time."""
    value = local.get_bookmark(HELD_KEY)
    return {"due": value.get("due")} if isinstance(value, dict) else None


def save_held(local: DatabaseConnector, due: float | None) -> None:
    local.set_bookmark(HELD_KEY, {"due": due})
