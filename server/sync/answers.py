"""What a hub answers to the calls of a round (the hub protocol's answers, as both kinds of hub
give them: a hub server's client after checking their shape, a hub store as its contract says),
typed as the round reads them."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from server.core.changes import Cursor


class Refused(TypedDict):
    """A change (or a record) the hub refused at its door: which one (origin and seq, when they
    could be read), why for people (`reason`), and from a hub with refusal codes the `code` with
    its fields beside it (core/changes.REFUSALS; sync/refusals.py reads them)."""

    origin: str | None
    seq: int | None
    reason: str
    code: NotRequired[str]


class PushAnswer(TypedDict):
    received: int
    applied: int  # changes the hub did not hold before
    conflicts: int
    quarantined: list[Refused]
    resume: Cursor  # origin -> the hub's top, where it holds less than the batch assumed
    owned: NotRequired[Cursor]  # origins of a relay that another device gives back itself
    unsupported: NotRequired[bool]  # an older hub server that takes no relay


class Finding(TypedDict):
    """A hub found holding less than it had acknowledged (a device's finding, kept at the hub)."""

    id: str
    at: float
    origins: int
    changes: int


class ShortfallAnswer(TypedDict):
    shortfall: Cursor  # origin -> what the hub holds, where that is less than the cursor asked about
    rollbacks: list[Finding]
    compacted: NotRequired[Cursor]  # origin -> floor, where the hub compacted past the cursor
    floors: NotRequired[Cursor]  # origin -> what every device the hub serves has pulled


class SnapshotPage(TypedDict):
    cursor: Cursor  # the hub's top of each origin, read before the records
    records: list[Any]  # merge states, each checked at the door when applied
    next: tuple[str, str] | None  # where the next page starts; None: the last page


class HealAnswer(TypedDict):
    received: int
    applied: int
    conflicts: int
    quarantined: list[Refused]
    held: Cursor
    logged: NotRequired[Cursor]  # {the heal origin: the newest seq logged}, when anything was
    skipped: NotRequired[list[str]]  # origins of writes not taken: their own devices give them back
    unsupported: NotRequired[bool]  # an older hub server that cannot be given records
