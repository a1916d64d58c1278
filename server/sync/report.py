"""What one sync round did, as the round reports it (RoundReport, which the sync child sends
back whole) and as the API and the status say it (RoundSummary)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from server.sync.bookmark import Restart, Rollback


# What a round reports (POST /api/v1/sync, `lastRound` in the status), as RoundReport.as_dict says it.
class RoundSummary(TypedDict):
    pushed: int
    pushedSent: int
    pulled: int
    conflicts: int
    durationMs: float
    hubReset: bool
    originRestarted: bool
    hubRolledBack: bool
    relayed: int
    resent: int
    fromSnapshot: int
    settled: int
    healed: int
    trimmed: int
    quarantined: int
    error: str | None
    errorCode: str | None


@dataclass
class RoundReport:
    pushed: int = 0  # changes the hub did not have before
    pushed_sent: int = 0  # changes sent, including ones the hub already had
    pulled: int = 0
    conflicts: int = 0
    duration_ms: float = 0.0
    hub_reset: bool = False
    quarantined: int = 0  # changes refused at the door, on either side
    refused_for_clock: int = 0  # own changes the hub refused because this device's clock is ahead
    origin_restart: Restart | None = None  # this round moved the store to a new origin (a restored store)
    hub_rollback: Rollback | None = None  # the hub held less than it had acknowledged (restored from a backup)
    relayed: int = 0  # other origins' changes given back to a hub that had lost them
    resent: int = 0  # own changes refused for their stamps, written again now that they are due
    newest_pulled: str | None = None  # the newest stamp among the changes pulled
    from_snapshot: int = 0  # records taken from the hub's snapshot (its log no longer reached back here)
    settled: int = 0  # open conflicts settled because their field was written again or their record deleted
    healed: int = 0  # records given to a hub that lost history no log here still held
    trimmed: int = 0  # changes dropped from this store's log: the hub compacted them and every device pulled them
    error: str | None = None
    error_code: str | None = None

    def as_dict(self) -> RoundSummary:
        return {
            "pushed": self.pushed, "pushedSent": self.pushed_sent, "pulled": self.pulled,
            "conflicts": self.conflicts, "durationMs": round(self.duration_ms, 1),
            "hubReset": self.hub_reset, "originRestarted": self.origin_restart is not None,
            "hubRolledBack": self.hub_rollback is not None, "relayed": self.relayed,
            "resent": self.resent, "fromSnapshot": self.from_snapshot, "settled": self.settled,
            "healed": self.healed, "trimmed": self.trimmed,
            "quarantined": self.quarantined, "error": self.error, "errorCode": self.error_code,
        }
