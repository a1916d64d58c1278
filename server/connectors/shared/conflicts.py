"""What the conflict ledger learns from the records, written once over a backend (backend.py): an
open conflict whose field has been written again since (its value restored on another device,
or edited later anywhere) or whose record has been deleted since is settled, on every device,
by the round that brings that news; and the names a person knows a conflict's record by."""

from __future__ import annotations

from typing import Any

from server.connectors.shared.backend import Backend
from server.core.changes import Key, record_key
from server.core.records import COURSE, USER
from server.core.times import iso_now

OPEN_CHECKED = 10_000  # open conflicts looked at per call, newest first


def _key(c: dict[str, Any]) -> tuple[str, str]:
    """The store key of a conflict's record."""
    return c["kind"], record_key(c["kind"], c["courseId"], c["recordId"])


class Conflicts:
    """The ledger of values that lost a merge: its rows are the backend's (`ledgers`), what it
    learns from the records is written here."""

    def __init__(self, backend: Backend):
        self.backend = backend

    def _states_of(self, conflicts: list[dict[str, Any]], with_courses: bool = False) -> dict[Key, dict]:
        keys = {_key(c) for c in conflicts}
        if with_courses:
            keys |= {(COURSE, c["courseId"]) for c in conflicts if c.get("courseId")}
        with self.backend.reader():
            return self.backend.load(keys)

    def settle_conflicts(self) -> int:
        conflicts = self.backend.ledgers.list_conflicts(OPEN_CHECKED, status="open")
        if not conflicts:
            return 0
        states = self._states_of(conflicts)
        settled = 0
        for c in conflicts:
            state = states.get(_key(c))
            if state is None:
                continue
            seen = max([h for h in (c.get("localHlc"), c.get("remoteHlc")) if isinstance(h, str)], default="")
            if state["clocks"].get(c["field"], "") > seen:
                how = "edited"
            elif state["deleted"] and c["reason"] != "deleted" and (state.get("dclock") or "") > seen:
                how = "deleted"
            else:
                continue
            done = self.backend.ledgers.resolve_conflict(c["id"], {"action": "superseded", "at": iso_now(), "by": how})
            settled += bool(done and done["resolution"]["action"] == "superseded")
        return settled

    def conflict_names(self, conflicts: list[dict[str, Any]]) -> dict[str, dict[str, str | None]]:
        states = self._states_of([c for c in conflicts if c["kind"] != USER], with_courses=True)

        def title(key: tuple[str, str]) -> str | None:
            value = (states.get(key) or {}).get("fields", {}).get("title")
            return value if isinstance(value, str) and value.strip() else None

        return {c["id"]: {"title": None if c["kind"] == USER else title(_key(c)),
                          "courseTitle": title((COURSE, c["courseId"])) if c.get("courseId") else None}
                for c in conflicts}
