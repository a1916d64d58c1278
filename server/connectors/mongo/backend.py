"""MongoDB's backend: the hub that all devices share, and a store the API can run on directly.

No transactions or replica set are needed. Safety comes from ordering and from optimistic
checks: every record carries a version `v`, each save is conditional on the version it was
loaded at, and a lost race reloads and merges again (merging is idempotent). Own writes log the
change before touching records, so a crash between the two is repaired at the next connect;
foreign changes touch records first and are logged after, so a pusher that retries repairs it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from contextlib import contextmanager, nullcontext
from typing import Any, Iterable, Iterator, Sequence

from bson.errors import BSONError
from pymongo import ASCENDING, DESCENDING, MongoClient, ReplaceOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from server.connectors.mongo.history import MongoHistory
from server.connectors.mongo.ledgers import MongoLedgers
from server.connectors.shared.backend import Backend, Limits, RetryMerge
from server.core.changes import Change, Cursor, Key, new_origin, seq_spans, state_key
from server.core.clock import ZERO, HybridClock
from server.core.config import redact_uri
from server.core.errors import StoreUnavailable
from server.core.records import CHILD_KINDS, COURSE
from server.core.sequences import run_after

log = logging.getLogger("server.mongo")
NO_ID = {"_id": False}
STATE_FIELDS = ("kind", "id", "courseId", "fields", "clocks", "bases", "deleted", "dclock", "dbase", "v")
CHANGE_FIELDS = ("origin", "seq", "hlc", "kind", "id", "courseId", "op", "fields", "bases")
INDEXES = {
    "records": [
        ([("userId", ASCENDING), ("kind", ASCENDING), ("key", ASCENDING)], True),
        ([("userId", ASCENDING), ("courseId", ASCENDING), ("kind", ASCENDING)], False),
        ([("userId", ASCENDING), ("deleted", ASCENDING), ("kind", ASCENDING)], False),
    ],
    "changes": [
        ([("userId", ASCENDING), ("origin", ASCENDING), ("seq", ASCENDING)], True),
        ([("userId", ASCENDING), ("hlc", DESCENDING)], False),
    ],
    "origins": [([("userId", ASCENDING), ("origin", ASCENDING)], True)],
    "quarantine": [
        ([("userId", ASCENDING), ("id", ASCENDING)], True),
        ([("userId", ASCENDING), ("receivedAt", DESCENDING)], False),
    ],
    "conflicts": [
        ([("userId", ASCENDING), ("id", ASCENDING)], True),
        ([("userId", ASCENDING), ("detectedAt", DESCENDING)], False),
    ],
    "state": [([("userId", ASCENDING), ("key", ASCENDING)], True)],
}
SEEDED = ("records", "changes", "origins", "conflicts", "quarantine", "state")


class MongoBackend(Backend):
    db: Database  # the database and the two parts on it, made by connect()
    history: MongoHistory
    ledgers: MongoLedgers

    driver_errors = (PyMongoError, BSONError)
    store_kind = "mongo"

    def __init__(self, uri: str = "mongodb://127.0.0.1:27017", db_name: str = "coursesync", *,
                 user_id: str | None = None, origin: str | None = None,
                 client: Any = None, timeout_ms: int = 3000) -> None:
        self.uri, self.db_name = uri, db_name
        self.client, self._own_client = client, client is None
        self.timeout_ms = timeout_ms
        self._want_user = user_id
        self.user_id = user_id or ""
        # One origin per process unless pinned: two processes must never share a sequence.
        self.origin = origin or new_origin(self.store_kind)
        self._pinned_origin = origin is not None
        self._write_lock = threading.RLock()
        self._look = threading.local()  # one_look's read of the user's origins, per thread
        self._seq = 0
        self.limits = Limits()

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        # The details (hosts, driver text) go to the log, scrubbed of the password; answers and
        # the status carry only the kind of failure.
        log.warning("MongoDB call failed: %s", self._scrub(exc))
        return StoreUnavailable(f"The MongoDB hub failed ({exc.__class__.__name__}).")

    def _scrub(self, exc: BaseException) -> str:
        text = f"{exc.__class__.__name__}: {exc}"[:300]
        return text.replace(self.uri, redact_uri(self.uri)) if self.uri else text

    # --- lifecycle ------------------------------------------------------------------------
    def connect(self) -> list[Change]:
        if self.client is None:
            t = self.timeout_ms
            self.client = MongoClient(self.uri, serverSelectionTimeoutMS=t, connectTimeoutMS=t,
                                       socketTimeoutMS=max(t * 3, 10_000), retryWrites=True,
                                       appname="coursesync")
        self.use_database(self.client[self.db_name])
        for name, specs in INDEXES.items():
            for keys, unique in specs:
                self.db[name].create_index(keys, unique=unique)
        self.db.meta.update_one({"_id": "epoch"}, {"$setOnInsert": {"value": uuid.uuid4().hex}}, upsert=True)
        owner = self.db.meta.find_one({"_id": "owner"})
        self.user_id = self._want_user or (owner or {}).get("value") or "me"
        newest = self.db.changes.find_one({"userId": self.user_id}, {"hlc": 1}, sort=[("hlc", DESCENDING)])
        self.clock = HybridClock(self.origin, (newest or {}).get("hlc", ZERO))
        tails = self._unfinished_tail()
        own = self.db.origins.find_one({"userId": self.user_id, "origin": self.origin})
        self._seq = (own or {}).get("maxSeq", 0)
        return tails

    def _unfinished_tail(self) -> list[Change]:
        """A writer that died between logging a change and finishing with it left at most its
        newest change half done: `maxSeq` not moved, or (for this origin's own writes, which are
        logged before their record is saved) the record not saved. Moves the tops here, and
        returns this origin's newest change for the store to merge again. Foreign changes are
        logged only after their records were saved, so they are not merged again."""
        tails = []
        for doc in self._origins():
            last = self.db.changes.find_one({"userId": self.user_id, "origin": doc["origin"]},
                                            NO_ID, sort=[("seq", DESCENDING)])
            if last and type(last.get("seq")) is int:
                if doc["origin"] == self.origin:
                    tails.append(self._change_from_doc(last))
                if last["seq"] > doc["maxSeq"]:
                    self.db.origins.update_one({"userId": self.user_id, "origin": doc["origin"]},
                                               {"$max": {"maxSeq": last["seq"]}})
        return tails

    def use_database(self, db: Database) -> None:
        """Work on `db` (connect's; a test may wrap it to count or cut the writes)."""
        self.db = db
        self.history, self.ledgers = MongoHistory(self, db), MongoLedgers(self, db)

    def close(self) -> None:
        client = self.client
        self.client = None if self._own_client else client
        if client is not None and self._own_client:
            try:
                client.close()
            except PyMongoError as exc:  # closing must not fail: the connections are gone anyway
                log.info("closing the MongoDB client: %s", self._scrub(exc))

    def ping(self) -> bool:
        try:
            self.client.admin.command("ping")
            return True
        except Exception:
            return False

    def set_owner(self, user_id: str) -> None:
        self.db.meta.update_one({"_id": "owner"}, {"$set": {"value": user_id}}, upsert=True)

    # --- primitives -----------------------------------------------------------------------
    def writer(self) -> threading.RLock:
        return self._write_lock

    def reader(self) -> nullcontext:
        return nullcontext()

    def batch(self) -> nullcontext:
        return nullcontext()  # every save is checked against the version it loaded (RetryMerge)

    @contextmanager
    def one_look(self) -> Iterator[None]:
        self._look.on, self._look.docs = True, None  # read at the first ask
        try:
            yield
        finally:
            self._look.on, self._look.docs = False, None

    def looked(self) -> list[dict] | None:
        """Inside one_look: every origin document of the user, read once. Outside: None."""
        if not getattr(self._look, "on", False):
            return None
        if self._look.docs is None:
            self._look.docs = list(self.db.origins.find({"userId": self.user_id}, NO_ID))
        return self._look.docs

    @staticmethod
    def _state_from_doc(doc: dict) -> dict[str, Any]:
        return {k: doc.get(k) for k in STATE_FIELDS}

    @staticmethod
    def _change_from_doc(doc: dict) -> Change:
        return {k: doc.get(k) for k in CHANGE_FIELDS}

    def _find_states(self, query: dict) -> dict[Key, dict[str, Any]]:
        docs = self.db.records.find({"userId": self.user_id, **query}, NO_ID)
        return {(d["kind"], d["key"]): self._state_from_doc(d) for d in docs}

    def load(self, keys: set[Key]) -> dict[Key, dict[str, Any]]:
        if not keys:
            return {}
        wanted: dict[str, list[str]] = {}
        for kind, rid in keys:
            wanted.setdefault(kind, []).append(rid)
        return self._find_states({"$or": [{"kind": k, "key": {"$in": ids}} for k, ids in wanted.items()]})

    def load_children(self, course_ids: set[str]) -> dict[Key, dict[str, Any]]:
        return self._find_states({"courseId": {"$in": sorted(course_ids)}, "kind": {"$in": list(CHILD_KINDS)}})

    def load_every_live_record(self) -> list[dict[str, Any]]:
        docs = self.db.records.find({"userId": self.user_id, "deleted": False, "kind": {"$in": [COURSE, *CHILD_KINDS]}},
                                    {"_id": 0, "kind": 1, "id": 1, "courseId": 1, "fields": 1})
        return [{"kind": d["kind"], "id": d["id"], "courseId": d.get("courseId"), "fields": d["fields"]} for d in docs]

    def next_seq(self) -> int:
        # Only this process writes this origin (see __init__), so a counter in memory is exact;
        # it moves when the change is logged, so a failed write leaves no gap.
        return self._seq + 1

    def tops_of(self, origins: set[str]) -> dict[str, int]:
        wanted = sorted(origins)
        tops: dict[str, int] = {}
        if (looked := self.looked()) is not None:
            return {d["origin"]: d["maxSeq"] for d in looked
                    if d.get("origin") in origins and type(d.get("maxSeq")) is int}
        for i in range(0, len(wanted), 1000):
            docs = self.db.origins.find({"userId": self.user_id, "origin": {"$in": wanted[i:i + 1000]}}, NO_ID)
            tops.update((d["origin"], d["maxSeq"]) for d in docs
                        if isinstance(d.get("origin"), str) and type(d.get("maxSeq")) is int)
        return tops

    def known(self, changes: list[Change], whole: bool = False) -> dict[tuple[str, int], Any]:
        spans = seq_spans(changes)  # one index range per origin
        docs = self.db.changes.find(
            {"userId": self.user_id,
             "$or": [{"origin": o, "seq": {"$gte": low, "$lte": high}} for o, (low, high) in spans.items()]},
            NO_ID if whole else {"_id": 0, "origin": 1, "seq": 1, "hlc": 1},
        )
        return {(d["origin"], d["seq"]): self._change_from_doc(d) if whole else d["hlc"] for d in docs}

    def persist(self, changes: list[Change], states: list[dict], conflicts: list[dict], *, own: bool,
                bookmarks: dict[str, Any] | None, quarantined: Sequence[dict] = ()) -> None:
        """Crash-safe in this order, with every write safe to repeat: conflicts first (a retry
        re-merges nothing already saved, so it could not find them again), then the records,
        then the change log, then the origin's top (a retry that finds its changes logged moves
        the top: complete). Own changes are logged before their record instead, and a new
        connection redoes the newest one (_unfinished_tail)."""
        uid = self.user_id
        if conflicts:
            self.db.conflicts.bulk_write(
                [UpdateOne({"userId": uid, "id": c["id"]}, {"$setOnInsert": {**c, "userId": uid}}, upsert=True)
                 for c in conflicts], ordered=False)
        if own:
            self.db.origins.update_one({"userId": uid, "origin": self.origin},
                                       {"$setOnInsert": {"maxSeq": 0}}, upsert=True)
            self._log(changes)
            self._seq = max(self._seq, *(c["seq"] for c in changes))
        if states:
            ops = [ReplaceOne({"userId": uid, "kind": s["kind"], "key": state_key(s)[1], "v": s.get("v") or 0},
                              {**s, "userId": uid, "key": state_key(s)[1], "v": (s.get("v") or 0) + 1},
                              upsert=True)
                   for s in states]
            try:
                self.db.records.bulk_write(ops, ordered=False)
            except BulkWriteError as exc:
                if all(e.get("code") == 11000 for e in exc.details.get("writeErrors", [])):
                    raise RetryMerge() from None
                raise
        if not own:
            self._log(changes)
        if quarantined:
            self.ledgers.keep(quarantined)
        for key, value in (bookmarks or {}).items():
            self.db.state.update_one({"userId": uid, "key": key}, {"$set": {"value": value}}, upsert=True)

    def retire_tail(self, origin: str, first_seq: int, new: str, moved: list[Change], states: list[dict]) -> None:
        """Crash-safe in this order: the copies first (logged under the new origin, records
        restamped), then the old tail goes. A crash in between leaves both copies of those
        changes in the log, which merge to the same records (no device syncs a Mongo store)."""
        self.origin, self._seq = new, 0
        self.clock = HybridClock(new, self.clock.last)
        if moved:
            self.persist(moved, states, [], own=True, bookmarks=None)
        uid = self.user_id
        self.db.changes.delete_many({"userId": uid, "origin": origin, "seq": {"$gte": first_seq}})
        self.db.origins.update_one({"userId": uid, "origin": origin}, {"$set": {"maxSeq": first_seq - 1}})

    def _log(self, changes: list[Change]) -> None:
        if not changes:
            return
        uid = self.user_id
        ops = [UpdateOne({"userId": uid, "origin": c["origin"], "seq": c["seq"]},
                         {"$setOnInsert": {**c, "userId": uid}}, upsert=True) for c in changes]
        for attempt in range(3):
            try:
                self.db.changes.bulk_write(ops, ordered=True)
                break
            except (BulkWriteError, DuplicateKeyError):
                # A concurrent relay inserted the same change, so the upsert matches next time;
                # failing three times in a row is something else and must not pass silently.
                if attempt == 2:
                    raise
        self.complete(changes)

    def complete(self, changes: list[Change]) -> None:
        """Move each origin's top to the newest of these logged changes (idempotent: $max)."""
        uid = self.user_id
        for origin, (_, top) in seq_spans(changes).items():
            try:
                self.db.origins.update_one({"userId": uid, "origin": origin}, {"$max": {"maxSeq": top}}, upsert=True)
            except DuplicateKeyError:
                self.db.origins.update_one({"userId": uid, "origin": origin}, {"$max": {"maxSeq": top}})

    # --- sync reads -----------------------------------------------------------------------
    def _origins(self, only: str | None = None) -> list[dict]:
        """The user's origins (or just `only`) and their tops. A document anyone wrote into the
        hub by hand with another shape is passed over: one broken document must not stop every
        reader."""
        if (looked := self.looked()) is not None:
            docs: Iterable[dict] = sorted((d for d in looked if only is None or d.get("origin") == only
                                           if isinstance(d.get("origin"), str)), key=lambda d: d["origin"])
        else:
            query = {"userId": self.user_id, **({"origin": only} if only is not None else {})}
            docs = self.db.origins.find(query, NO_ID).sort("origin", ASCENDING)
        return [d for d in docs if isinstance(d.get("origin"), str) and type(d.get("maxSeq")) is int]

    def changes_since(self, cursor: Cursor, limit: int, *, exclude_origin: str | None = None,
                      only_origin: str | None = None) -> list[Change]:
        out: list[Change] = []
        for doc in self._origins(only_origin):
            origin, after = doc["origin"], cursor.get(doc["origin"], 0)
            if origin == exclude_origin or doc["maxSeq"] <= after or len(out) >= limit:
                continue
            docs = self.db.changes.find({"userId": self.user_id, "origin": origin, "seq": {"$gt": after}},
                                        NO_ID).sort("seq", ASCENDING).limit(limit - len(out))
            # A slot reserved but not written yet: stop there, never skip it.
            out.extend(self._change_from_doc(d) for d in run_after(after, ((d.get("seq"), d) for d in docs)))
        return out

    def pending_since(self, cursor: Cursor, origin: str | None = None) -> tuple[int, str | None]:
        count, oldest = 0, None
        for doc in self._origins():
            o, after = doc["origin"], cursor.get(doc["origin"], 0)
            if (origin and o != origin) or doc["maxSeq"] <= after:
                continue
            query = {"userId": self.user_id, "origin": o, "seq": {"$gt": after}}
            count += self.db.changes.count_documents(query)
            first = self.db.changes.find_one(query, {"hlc": 1}, sort=[("seq", ASCENDING)])
            if first and (oldest is None or first["hlc"] < oldest):
                oldest = first["hlc"]
        return count, oldest

    def get_bookmark(self, key: str) -> Any:
        doc = self.db.state.find_one({"userId": self.user_id, "key": key})
        return doc["value"] if doc else None

    def set_bookmark(self, key: str, value: Any) -> None:
        self.db.state.update_one({"userId": self.user_id, "key": key}, {"$set": {"value": value}}, upsert=True)

    def hub_epoch(self) -> str:
        epoch: dict[str, Any] = self.db.meta.find_one({"_id": "epoch"}) or {}  # connect() wrote one
        return epoch["value"]

    # --- compacted history -----------------------------------------------------------------
    def every_top(self) -> dict[str, int]:
        return {d["origin"]: d["maxSeq"] for d in self._origins()}

    def dump_records(self) -> dict[Key, dict[str, Any]]:
        return self._find_states({})

    def is_empty(self) -> bool:
        return self.db.records.find_one({}) is None and self.db.changes.find_one({}) is None

    def wipe(self) -> dict[str, int]:
        removed = {name: self.db[name].delete_many({}).deleted_count for name in SEEDED}
        self.db.meta.delete_one({"_id": "owner"})
        self.db.meta.update_one({"_id": "epoch"}, {"$set": {"value": uuid.uuid4().hex}}, upsert=True)
        # The log restarts at 1. Under its old origin a new change #1 would clash with the old #1
        # that devices still hold and push back after the reset, so take a new one (as SQLite does).
        self._seq = 0
        if not self._pinned_origin:
            self.origin = new_origin(self.store_kind)
            self.clock = HybridClock(self.origin, self.clock.last)
        return removed

