"""The device's side of the hub protocol over HTTP (HUB_URL, HUB_TOKEN): the calls the sync
engine makes of a hub (epoch, pull after a cursor, push a batch), each one request on a
kept-alive connection, bodies gzip-compressed both ways.

What the hub answers is checked before the engine sees it: an answer of another shape is a
hub failure (the round ends and is retried later), and every pulled change still goes through
the store's own door (changes.check_change) when it is applied."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import socket
import ssl
from typing import Any, TypeGuard, cast
from urllib.parse import urlsplit

import orjson

from server.core.changes import Change, Cursor
from server.core.errors import HubRefused, StoreUnavailable
from server.core.sequences import advance
from server.sync.answers import Finding, HealAnswer, PushAnswer, ShortfallAnswer, SnapshotPage
from server.sync.sized import encoded
from server.web.compression import NotInflated, inflate

MAX_ANSWER_BYTES = 256 * 1024 * 1024  # inflated
# The round call (feature "round") unless set to 0: for benches and tests that measure the old calls.
ROUND_CALL = os.environ.get("COURSESYNC_ROUND_CALL", "1") != "0"
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, http.client.CannotSendRequest)


class HubClient:
    """A hub server, seen through the hub's part of the connector contract. Through it a device
    pushes its own origins; other origins' changes go only as a relay, and only to a hub server
    that says it takes them (`features`)."""

    def __init__(self, url: str, token: str, *, timeout_ms: int = 3000, user_id: str | None = None):
        parts = urlsplit(url)
        self.url, self._token = url, token
        self.user_id = user_id  # the user this device serves: a token of another is refused
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._base = parts.path.rstrip("/") + "/hub/v1"
        self._timeout = max(timeout_ms / 1000, 1.0) * 3  # a batch may take longer than a ping
        self._conn: http.client.HTTPConnection | None = None
        self.features: frozenset[str] = frozenset()  # learnt from the epoch answer
        self._interrupted = False
        self._opened: dict[Any, Any] = {}  # the round's opening (open_round): answers by question

    # --- the hub-side contract ----------------------------------------------------------
    def connect(self) -> None:
        self.hub_epoch()  # fail now, as a store's connect would, if the hub cannot be used

    def open_round(self, cursor: Cursor, origin: str, limit: int) -> None:
        """Feature "round": one call (POST /round) answers what a round opens with (the epoch, the
        shortfall of `cursor`, the hub's part of `origin` past it, the first page of the pull);
        the calls that ask it then are answered from it, each once and only while they ask
        exactly that. An older hub server, or one that fails the call: the calls go as before."""
        self._opened = {}
        if "round" not in self.features or not ROUND_CALL:
            return
        try:
            answer = self._call("POST", "/round", {"cursor": cursor, "origin": origin, "limit": limit})
        except StoreUnavailable:
            return  # the round's own calls say whether the hub is there
        epoch = self._epoch_of(answer)
        own, changes = answer.get("own"), answer.get("changes")
        if not isinstance(own, list) or not isinstance(changes, list) or len(own) > limit or len(changes) > limit:
            raise self._garbled("a round opening whose pages are not lists of at most the changes asked for")
        others = {o: seq for o, seq in cursor.items() if o != origin}
        self._opened = {"epoch": epoch, ("shortfall", _key(cursor)): self._checked_shortfall(answer, cursor),
                        ("pull", _key({origin: cursor.get(origin, 0)}), limit, None, origin): own,
                        ("pull", _key(others), limit, origin, None): changes}
        # A short page was all there was: the pull that asks past it is answered "nothing more"
        # (what lands meanwhile wakes the live wait, or waits for the next round).
        if len(changes) < limit:
            self._opened[("pull", _key(_past(others, changes, origin)), limit, origin, None)] = []
        if len(own) < limit:
            self._opened[("pull", _key(_past({origin: cursor.get(origin, 0)}, own, None)), limit, None, origin)] = []

    def end_round(self) -> None:
        self._opened = {}

    def hub_epoch(self) -> str:
        opened = self._opened.pop("epoch", None)
        return opened if opened is not None else self._epoch_of(self._call("GET", "/epoch"))

    def _epoch_of(self, answer: dict[str, Any]) -> str:
        epoch, owner = answer.get("epoch"), answer.get("userId")
        if not isinstance(epoch, str):
            raise self._garbled("an epoch that is not a string")
        features = answer.get("features", [])
        self.features = frozenset(f for f in features if isinstance(f, str)) if isinstance(features, list) \
            else frozenset()
        if self.user_id is not None and owner != self.user_id:
            raise HubRefused(f"This device's HUB_TOKEN belongs to user {str(owner)[:100]!r}, but this device serves "
                             f"{self.user_id!r}: set USER_ID to that user, or get a token for this one.")
        return epoch

    def changes_since(self, cursor: Cursor, limit: int, *, exclude_origin: str | None = None,
                      only_origin: str | None = None) -> list[Change]:
        # A round's first pull excludes this device's origin: where its cursor stands is no matter.
        asked = {o: seq for o, seq in cursor.items() if o != exclude_origin}
        opened = self._opened.pop(("pull", _key(asked), limit, exclude_origin, only_origin), None)
        if opened is not None:
            return opened
        body = {"cursor": cursor, "limit": limit, "excludeOrigin": exclude_origin, "onlyOrigin": only_origin}
        changes = self._call("POST", "/pull", body).get("changes")
        if not isinstance(changes, list) or len(changes) > limit:
            raise self._garbled("a pull that is not a list of at most the changes asked for")
        return changes

    def apply_changes(self, changes: list[Change], *, bookmarks: dict | None = None,
                      relayed: bool = False, from_hub: bool = False) -> PushAnswer:
        if relayed and "relay" not in self.features:
            # An older hub server refuses other origins (403): they wait for one that takes them.
            return {"received": len(changes), "applied": 0, "conflicts": 0, "quarantined": [], "resume": {},
                    "unsupported": True}
        result = self._call("POST", "/push", _listing("changes", changes, {"relay": True} if relayed else {}))
        counts_ok = all(type(result.get(k)) is int and 0 <= result[k] <= len(changes)
                        for k in ("received", "applied", "conflicts"))
        refused, resume, owned = result.get("quarantined"), result.setdefault("resume", {}), result.get("owned", {})
        if not counts_ok or not isinstance(refused, list) or not all(map(_refusal, refused)) or not _tops(resume) \
                or not _tops(owned):
            raise self._garbled("a push result of another shape")
        return cast(PushAnswer, result)

    def relay_changes(self, changes: list[Change], *, owned: frozenset[str] | set[str] = frozenset(),
                      ) -> PushAnswer:
        # `owned` is the hub server's to know (its devices): it answers those origins as owned.
        return self.apply_changes(changes, relayed=True)

    def shortfall(self, cursor: Cursor) -> ShortfallAnswer:
        """What the hub lacks of `cursor`, and its findings; nothing from an older hub server,
        which cannot say."""
        if "shortfall" not in self.features:
            return {"shortfall": {}, "rollbacks": [], "compacted": {}, "floors": {}}
        opened = self._opened.pop(("shortfall", _key(cursor)), None)
        if opened is not None:
            return opened
        return self._checked_shortfall(self._call("POST", "/shortfall", {"cursor": cursor}), cursor)

    def _checked_shortfall(self, answer: dict[str, Any], cursor: Cursor) -> ShortfallAnswer:
        short, found, compacted = answer.get("shortfall"), answer.get("rollbacks"), answer.get("compacted", {})
        # Floors only from a hub server that can be healed from the records: a device drops
        # nothing of its log for one that could not get it back.
        floors = answer.get("floors", {}) if "heal" in self.features else {}
        if not _tops(short) or not all(o in cursor and short[o] < cursor[o] for o in short):
            raise self._garbled("a shortfall that is not below the cursor it was asked about")
        if not isinstance(found, list) or len(found) > 10 or not all(map(_finding, found)):
            raise self._garbled("findings of a rollback of another shape")
        if not _tops(compacted) or not all(seq > cursor.get(o, 0) for o, seq in compacted.items()):
            raise self._garbled("compacted origins that are not past the cursor it was asked about")
        if not _tops(floors) or not all(o in cursor for o in floors):
            raise self._garbled("floors of origins it was not asked about")
        return {"shortfall": short, "rollbacks": [Finding(id=f["id"], at=f["at"], origins=f["origins"],
                                                          changes=f["changes"]) for f in found],
                "compacted": compacted, "floors": floors}

    def snapshot_page(self, after: tuple[str, str] | None, limit: int) -> SnapshotPage:
        """A page of the user's records (each still goes through the store's door when applied)."""
        if "snapshot" not in self.features:
            raise StoreUnavailable("This hub server serves no snapshot; upgrade it.")
        answer = self._call("POST", "/snapshot", {"after": list(after) if after else None, "limit": limit})
        cursor, records, nxt = answer.get("cursor"), answer.get("records"), answer.get("next")
        if not _tops(cursor) or not isinstance(records, list) or len(records) > limit:
            raise self._garbled("a snapshot page of another shape")
        if nxt is not None and not (isinstance(nxt, list) and len(nxt) == 2 and all(isinstance(p, str) for p in nxt)
                                    and (after is None or tuple(nxt) > tuple(after))):
            raise self._garbled("a snapshot page whose next is not past the page asked for")
        return {"cursor": cursor, "records": records, "next": (nxt[0], nxt[1]) if nxt else None}

    def heal(self, records: list[Any], *, hold: Cursor | None = None, log_as: str | None = None) -> HealAnswer:
        """Give the hub a page of this device's records; nothing from an older hub server. `log_as`
        only to one that logs what a heal changes ("healLog")."""
        if "heal" not in self.features:
            return {"received": len(records), "applied": 0, "conflicts": 0, "quarantined": [], "held": {},
                    "unsupported": True}
        wire = None if hold is None else [{"origin": o, "seq": seq} for o, seq in sorted(hold.items())]
        log_as = log_as if "healLog" in self.features else None
        result = self._call("POST", "/heal", _listing("records", records,
                                                      {"hold": wire, **({"logAs": log_as} if log_as else {})}))
        counts_ok = all(type(result.get(k)) is int and 0 <= result[k] <= len(records) for k in ("received", "applied"))
        refused, held, logged = result.get("quarantined"), result.get("held"), result.setdefault("logged", {})
        skipped = result.setdefault("skipped", [])
        if not counts_ok or type(result.get("conflicts")) is not int or not isinstance(refused, list) or \
                not all(map(_refusal, refused)) or not _tops(held) or held != (hold or {}) or not _tops(logged) or \
                not set(logged) <= {log_as} or not isinstance(skipped, list) or len(skipped) > 10_000 or \
                not all(isinstance(o, str) for o in skipped):
            raise self._garbled("a heal result of another shape")
        return cast(HealAnswer, result)

    def wait(self, cursor: Cursor, *, exclude_origin: str | None, seconds: float) -> bool | None:
        """Hold a request at the hub until it has a change past `cursor` of another origin than
        `exclude_origin` (True), or `seconds` pass with none (False). None: this hub server has no
        waiting call (an older one), so the device syncs on its timer. Use a client of its own:
        this one's connection is busy while it waits."""
        if "wait" not in self.features:
            return None
        answer = self._call("POST", "/wait", {"cursor": cursor, "excludeOrigin": exclude_origin, "seconds": seconds},
                            timeout=seconds + self._timeout)
        if type(answer.get("changed")) is not bool:
            raise self._garbled("a wait answer of another shape")
        return answer["changed"]

    def wait_changes(self, cursor: Cursor, *, exclude_origin: str | None, seconds: float, limit: int,
                     epoch: str | None) -> dict[str, Any] | bool | None:
        """Feature "waitChanges": a wait whose wake answers the hub's epoch and (when the cursor is
        of that epoch) the first page of changes past it, at most `limit`: {"epoch", "changes"}.
        Without the feature, what wait answers."""
        if "waitChanges" not in self.features or not ROUND_CALL:
            return self.wait(cursor, exclude_origin=exclude_origin, seconds=seconds)
        answer = self._call("POST", "/wait", {"cursor": cursor, "excludeOrigin": exclude_origin, "seconds": seconds,
                                              "limit": limit, "epoch": epoch}, timeout=seconds + self._timeout)
        changed, woke, changes = answer.get("changed"), answer.get("epoch"), answer.get("changes")
        if type(changed) is not bool or changed and not isinstance(woke, str) or \
                changes is not None and not (isinstance(changes, list) and len(changes) <= limit):
            raise self._garbled("a wait answer of another shape")
        return {"epoch": woke, "changes": changes} if changed else False

    def interrupt(self) -> None:
        """End a call in progress in another thread (a wait): closing a socket does not wake a
        thread blocked reading it, shutting it down does."""
        self._interrupted = True  # and no retry on a fresh connection
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- HTTP ---------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:  # certificates and host names verified, as the default context does
                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                                         context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return self._conn

    def _call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> dict[str, Any]:
        """`body`: what to send as JSON, or its JSON already (bytes)."""
        if body is not None and not isinstance(body, bytes):
            body = orjson.dumps(body)
        data = gzip.compress(body, compresslevel=1) if body is not None else None
        headers = {"Authorization": f"Bearer {self._token}", "Accept-Encoding": "gzip",
                   "User-Agent": "coursesync-device"}
        if data is not None:
            headers.update({"Content-Type": "application/json", "Content-Encoding": "gzip"})
        return self._send(method, path, data, headers, timeout=timeout)

    def _send(self, method: str, path: str, data: bytes | None, headers: dict, retry: bool = True,
              timeout: float | None = None) -> dict[str, Any]:
        try:
            conn = self._connection()
            conn.timeout = timeout or self._timeout
            if conn.sock is not None:
                conn.sock.settimeout(conn.timeout)
            conn.request(method, self._base + path, data, headers)
            resp = conn.getresponse()
            raw = resp.read(MAX_ANSWER_BYTES + 1)  # a hub that never stops sending is cut off
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            # A kept-alive connection the hub closed: once more, anew (unless interrupt() did it).
            if retry and isinstance(exc, STALE) and not self._interrupted:
                return self._send(method, path, data, headers, retry=False, timeout=timeout)
            raise self._unreachable(exc) from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise self._garbled(f"a body of more than {MAX_ANSWER_BYTES} bytes")
        return self._answer(resp, raw)

    def _unreachable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"The hub at {self.url} cannot be reached ({exc.__class__.__name__}).")

    def _answer(self, resp: http.client.HTTPResponse, raw: bytes) -> dict[str, Any]:
        if (resp.getheader("Content-Encoding") or "").lower() == "gzip":
            try:
                raw = inflate(raw, MAX_ANSWER_BYTES)
            except NotInflated as exc:
                raise self._garbled(f"a body that {exc}") from None
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if resp.status != 200:
            err = answer.get("error") if isinstance(answer, dict) else None
            message, code = (err.get("message"), err.get("code")) if isinstance(err, dict) else (None, None)
            said = message[:300] if isinstance(message, str) else ""
            words = f"The hub refused this device ({resp.status}): {said or resp.reason}"
            if resp.status in (401, 403):
                raise HubRefused(words, code[:100] if isinstance(code, str) else "")
            raise StoreUnavailable(words)
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
            raise self._garbled("a body that is not the hub protocol's envelope")
        return answer["data"]

    def _garbled(self, what: str) -> StoreUnavailable:
        self.close()
        return StoreUnavailable(f"The hub at {self.url} answered {what}.")


def _listing(name: str, items: list[Any], rest: dict[str, Any]) -> bytes:
    """The JSON of {name: items, **rest}, with the items' array as within_bytes measured it (a
    push batch is serialised once, not once to size it and again to send it)."""
    more = orjson.dumps(rest)[1:] if rest else b"}"  # rest's members, and the closing brace
    return b'{"' + name.encode() + b'":' + encoded(items) + (b"," + more if rest else more)


def _key(cursor: Cursor) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(cursor.items()))


def _past(cursor: Cursor, page: list[Change], drop: str | None) -> Cursor:
    """The cursor past a page, as the engine moves it, without the origin `drop`."""
    moved = advance(cursor, page)
    return {o: seq for o, seq in moved.items() if o != drop}


def _refusal(entry: Any) -> bool:
    """One entry of a push answer's `quarantined`: a reason, and the change's seq (or null)."""
    return isinstance(entry, dict) and isinstance(entry.get("reason"), str) and (
        entry.get("seq") is None or type(entry["seq"]) is int)


def _finding(entry: Any) -> bool:
    """One of the hub's findings of a rollback: {id, at, origins, changes}."""
    return isinstance(entry, dict) and isinstance(entry.get("id"), str) and 0 < len(entry["id"]) <= 64 and \
        type(entry.get("at")) in (int, float) and 0 <= entry["at"] < 2**40 and \
        all(type(entry.get(k)) is int and 0 <= entry[k] < 2**53 for k in ("origins", "changes"))


def _tops(value: Any) -> TypeGuard[Cursor]:
    """An origin -> seq map as the hub sends it (a resume or a shortfall)."""
    return isinstance(value, dict) and all(isinstance(k, str) and type(v) is int and 0 <= v < 2**53
                                           for k, v in value.items())
