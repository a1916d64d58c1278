"""The one write path of every store: merge a batch with merge.py, then have the backend
persist it (again, from a fresh load, when a save lost a race). A store's own writes, changes
from elsewhere and records rebuilt from a snapshot all go through here."""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

from server.connectors.shared.backend import Backend, RetryMerge
from server.core import merge
from server.core.changes import Change, Key, change_key
from server.core.clock import stamp_ms
from server.core.errors import StateConflict
from server.core.records import CHILD_KINDS, COURSE
from server.core.times import iso_from_ms

Preloaded = dict[Key, dict | None]


class Merger:
    def __init__(self, backend: Backend):
        self.backend = backend

    def merge(self, changes: list[Change], preloaded: Preloaded | None = None) -> tuple[list[dict], list[dict]]:
        """(the records these changes change, as merged; the conflicts the merge found)."""
        keys = {change_key(c) for c in changes}
        keys |= {(COURSE, c["courseId"]) for c in changes if c["kind"] in CHILD_KINDS and c["courseId"]}
        preloaded = preloaded or {}
        cache: dict[Key, dict] = {k: v for k, v in preloaded.items() if v is not None}
        cache.update(self.backend.load(keys - preloaded.keys()))
        deleted_courses = {c["id"] for c in changes if c["kind"] == COURSE and c["op"] == "delete"}
        if deleted_courses:
            cache.update(self.backend.load_children(deleted_courses))
        dirty: set[Key] = set()
        conflicts: list[dict] = []
        for ch in changes:
            key = change_key(ch)
            parent = cache.get((COURSE, ch["courseId"])) if ch["kind"] in CHILD_KINDS else None
            out = merge.apply_change(cache.get(key), ch, parent)
            conflicts += [self.stamp_conflict(c, ch) for c in out.conflicts]
            if out.changed and out.state is not None:
                cache[key] = out.state
                dirty.add(key)
            if ch["kind"] == COURSE and ch["op"] == "delete":
                conflicts += self._cascade(cache, dirty, ch)
        return [cache[k] for k in dirty], conflicts

    def _cascade(self, cache: dict[Key, dict], dirty: set[Key], ch: Change) -> list[dict]:
        """A course's delete tombstones its lectures and assignments in `cache`."""
        course, conflicts = cache[change_key(ch)], []
        for ckey, child in list(cache.items()):
            if ckey[0] in CHILD_KINDS and child.get("courseId") == ch["id"]:
                sub = merge.cascade_delete(child, course)
                conflicts += [self.stamp_conflict(c, ch) for c in sub.conflicts]
                if sub.changed and sub.state is not None:
                    cache[ckey] = sub.state
                    dirty.add(ckey)
        return conflicts

    def stamp_conflict(self, conflict: dict, change: Change) -> dict:
        # One loss is one entry, whichever side it was seen from: a write re-merged after the
        # write that beat it (a repaired tail) finds the entry its first merge made.
        pair = sorted((conflict["localHlc"], conflict["remoteHlc"]))
        where = (conflict["kind"], conflict["courseId"], conflict["recordId"], conflict["field"])
        ident = "|".join(map(str, (*where, *pair)))
        return {
            **conflict,
            "id": hashlib.sha256(ident.encode()).hexdigest()[:24],
            "remoteOrigin": change["origin"],
            "detectedAt": iso_from_ms(stamp_ms(self.backend.clock.now())),
        }

    def merge_and_persist(self, changes: list[Change], *, own: bool, bookmarks: dict[str, Any] | None = None,
                          preloaded: Preloaded | None = None, quarantined: Sequence[dict] = (),
                          log: bool = True, logged: list[Change] | None = None) -> tuple[list[dict], list[dict]]:
        """Merge and store; returns (changed states, conflicts). What the caller loaded in the
        same writer section may be passed in; a retry after a lost race loads afresh. Without
        `log`, the changes are merged but not logged (writes rebuilt from a snapshot's records);
        `logged`: only those of them are logged."""
        for _ in range(20):
            states, conflicts = self.merge(changes, preloaded)
            preloaded = None
            try:
                self.backend.persist((changes if logged is None else logged) if log else [], states, conflicts,
                                     own=own, bookmarks=bookmarks, quarantined=quarantined)
                return states, conflicts
            except RetryMerge:
                continue
        raise StateConflict("The hub kept changing under this batch; try again.", code="busy")
