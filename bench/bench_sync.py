"""Sync costs against raw-driver baselines, each pair measured in the same run and process.

    python bench/bench_sync.py [--n 10000] [--big 100000] [--mongo-n 1000] [--wire]

- push: N pending changes to a hub, in batches of 500, vs a raw bulk write of the equivalent
  change and record documents (rows for a SQLite hub) into a fresh hub of the same kind;
- pull: N changes from a hub into an empty device vs raw sqlite3 executemany of the same rows;
- idle: a round with nothing to do, on stores holding 1,000 and `--big` records;
- memory: peak RSS added by pushing `--big` changes (in a child process that does only that);
- growth: push cost per change at 1k, 10k and `--big` changes;
- api-during-push: PATCH p99 while an N-change push runs, vs idle; the round in the server's
  child process (the default) and, for comparison, in its own process (SYNC_PROCESS=0).
mongomock-ng scans a collection on every filtered write, so its push is measured at --mongo-n;
--wire adds the mongoeco wire hub (or MONGO_URI) at --mongo-n."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, median, pct, record

from server.connectors.factory import get_db_connector
from server.connectors.sqlite.store import SqlConnector
from server.core.clock import encode
from server.core.config import Settings
from server.sync.engine import run_round

USER = "bench"
BATCH = 500


def make_changes(origin: str, n: int, start: int = 1) -> list[dict]:
    """n upserts from one origin: a course every 100 changes, lectures under it otherwise."""
    out = []
    for seq in range(start, start + n):
        course = f"c{(seq - 1) // 100}"
        hlc = encode(1_700_000_000_000 + seq, 0, origin)
        ts = "2026-01-01T00:00:00.000Z"
        if (seq - 1) % 100 == 0:
            kind, rid, parent = "course", course, None
            fields = {"title": f"Course {seq}", "source": "https://ocw.example/c", "description": "",
                      "status": "active", "tags": ["x"], "notes": "", "createdAt": ts, "updatedAt": ts}
        else:
            kind, rid, parent = "lecture", f"l{seq}", course
            fields = {"title": f"Lecture {seq}", "order": (seq - 1) % 100, "videoUrl": "https://ocw.example/v",
                      "durationMinutes": 50, "status": "not_started", "note": "", "createdAt": ts, "updatedAt": ts}
        out.append({"origin": origin, "seq": seq, "hlc": hlc, "kind": kind, "id": rid, "courseId": parent,
                    "op": "upsert", "fields": fields, "bases": {k: "" for k in fields}})
    return out


def device(path: Path, name: str) -> SqlConnector:
    store = SqlConnector(str(path), user_id=USER, origin=name)
    store.connect()
    return store


def fill_own(store: SqlConnector, n: int) -> None:
    """n more pending changes of the store's own origin, written in chunks to keep memory flat."""
    first = store.pool.get().execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM changes WHERE origin = ?",
                                  (store.origin,)).fetchone()[0]
    for start in range(first, first + n, 5000):
        store.apply_changes(make_changes(store.origin, min(5000, first + n - start), start))


def sql_hub(path: Path) -> SqlConnector:
    hub = SqlConnector(str(path), user_id=USER, origin="hub")
    hub.connect()
    return hub


WIRE_BATCH = 200  # mongoeco refuses an $in of ~500 values ("Expression tree is too large"); MongoDB does not


def timed_push(store, hub, batch: int = BATCH) -> float:
    start = time.perf_counter()
    report = run_round(store, hub, batch)
    elapsed = time.perf_counter() - start
    assert report.error is None, report.error
    return elapsed


# --- push -------------------------------------------------------------------------------------
RAW_SCHEMA = """
    CREATE TABLE changes (user_id, origin, seq, hlc, kind, record_id, course_id, op, fields, bases,
                          PRIMARY KEY (user_id, origin, seq)) WITHOUT ROWID;
    CREATE TABLE records (user_id, kind, key, id, course_id, fields, clocks,
                          PRIMARY KEY (user_id, kind, key)) WITHOUT ROWID;
"""


def raw_sqlite_write(path: Path, changes: list[dict]) -> float:
    """The equivalent rows written by hand, batch by batch: the change log and the records."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")  # the store's default, as ours runs
    conn.executescript(RAW_SCHEMA)
    start = time.perf_counter()
    for i in range(0, len(changes), BATCH):
        batch = changes[i:i + BATCH]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR IGNORE INTO changes VALUES (?,?,?,?,?,?,?,?,?,?)",
                         [(USER, c["origin"], c["seq"], c["hlc"], c["kind"], c["id"], c["courseId"], c["op"],
                           json.dumps(c["fields"]), json.dumps(c["bases"])) for c in batch])
        conn.executemany("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,?)",
                         [(USER, c["kind"], c["id"], c["id"], c["courseId"], json.dumps(c["fields"]),
                           json.dumps({k: c["hlc"] for k in c["fields"]})) for c in batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def raw_mongo_push(db, changes: list[dict], batch: int) -> float:
    from pymongo import ASCENDING, InsertOne, ReplaceOne

    db.changes.create_index([("userId", ASCENDING), ("origin", ASCENDING), ("seq", ASCENDING)], unique=True)
    db.records.create_index([("userId", ASCENDING), ("kind", ASCENDING), ("key", ASCENDING)], unique=True)
    start = time.perf_counter()
    for i in range(0, len(changes), batch):
        part = changes[i:i + batch]
        db.changes.bulk_write([InsertOne({**c, "userId": USER}) for c in part], ordered=True)
        db.records.bulk_write([ReplaceOne({"userId": USER, "kind": c["kind"], "key": c["id"]},
                                          {"userId": USER, "kind": c["kind"], "key": c["id"], "fields": c["fields"],
                                           "clocks": {k: c["hlc"] for k in c["fields"]}}, upsert=True)
                               for c in part], ordered=False)
    return time.perf_counter() - start


def bench_push(tmp: Path, n: int, mongo_n: int, wire_uri: str | None, wire_n: int) -> list[dict]:
    rows = []
    store = device(tmp / "push-dev.sqlite3", "dev")
    fill_own(store, n)
    ours = timed_push(store, sql_hub(tmp / "push-hub.sqlite3"))
    base = raw_sqlite_write(tmp / "raw-hub.sqlite3", store.changes_since({}, n))
    rows.append({"metric": f"push {n} to a SQLite hub", "ours": ours, "baseline": base, "ratio": ours / base,
                 "target": "<= 2", "ok": ours / base <= 2, "per_second": round(n / ours)})
    hubs = [("mongomock-ng", None, mongo_n)] + ([("wire hub", wire_uri, wire_n)] if wire_uri else [])
    for label, uri, mongo_n in hubs:
        import mongomock_ng
        import pymongo

        small = device(tmp / f"push-{label[:4]}.sqlite3", "dev2")
        fill_own(small, mongo_n)
        if uri:
            client = pymongo.MongoClient(uri)
        else:
            client = mongomock_ng.MongoClient()
        hub = get_db_connector("mongo", Settings(), client=client, db_name="bench_ours", user_id=USER)
        hub.connect()
        ours = timed_push(small, hub, WIRE_BATCH if uri else BATCH)
        base = raw_mongo_push(client["bench_raw"], small.changes_since({}, mongo_n), WIRE_BATCH if uri else BATCH)
        rows.append({"metric": f"push {mongo_n} to {label}", "ours": ours, "baseline": base, "ratio": ours / base,
                     "target": "<= 2", "ok": ours / base <= 2, "per_second": round(mongo_n / ours)})
        if uri:
            client.drop_database("bench_ours")
            client.drop_database("bench_raw")
    return rows


# --- pull -------------------------------------------------------------------------------------
def bench_pull(tmp: Path, n: int) -> list[dict]:
    hub = sql_hub(tmp / "pull-hub.sqlite3")
    for start in range(1, n + 1, 5000):
        hub.apply_changes(make_changes("other", min(5000, n - start + 1), start))
    empty = device(tmp / "pull-dev.sqlite3", "dev")
    start = time.perf_counter()
    report = run_round(empty, hub, BATCH)
    ours = time.perf_counter() - start
    assert report.pulled == n, report
    base = raw_sqlite_write(tmp / "raw-pull.sqlite3", hub.changes_since({}, n))
    return [{"metric": f"pull {n} into an empty device", "ours": ours, "baseline": base, "ratio": ours / base,
             "target": "<= 3", "ok": ours / base <= 3, "per_second": round(n / ours)}]


# --- idle -------------------------------------------------------------------------------------
def idle_round_time(tmp: Path, records: int) -> float:
    hub = sql_hub(tmp / f"idle-hub-{records}.sqlite3")
    store = device(tmp / f"idle-dev-{records}.sqlite3", "dev")
    for start in range(1, records + 1, 5000):
        batch = make_changes("seed", min(5000, records - start + 1), start)
        hub.apply_changes(batch)
        store.apply_changes(batch)
    run_round(store, hub, BATCH)  # the first round compares what both hold
    run_round(store, hub, BATCH)
    samples = []
    for _ in range(60):
        start = time.perf_counter()
        report = run_round(store, hub, BATCH)
        samples.append(time.perf_counter() - start)
        assert report.pushed_sent == 0 and report.pulled == 0
    return median(samples)


def bench_idle(tmp: Path, big: int) -> list[dict]:
    small, large = idle_round_time(tmp, 1000), idle_round_time(tmp, big)
    return [
        {"metric": f"idle round, {big} vs 1000 records", "ours": large, "baseline": small, "ratio": large / small,
         "target": "<= 1.2", "ok": large / small <= 1.2},
        {"metric": f"idle round, {big} records", "ours": large, "target": "< 5ms", "ok": large < 0.005},
    ]


# --- memory -----------------------------------------------------------------------------------
CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from server.connectors.sqlite.store import SqlConnector
from server.sync.engine import run_round
store = SqlConnector({dev!r}, user_id="bench", origin="dev"); store.connect()
hub = SqlConnector({hub!r}, user_id="bench", origin="hub"); hub.connect()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = run_round(store, hub, {batch})
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"before_kb": before, "after_kb": after, "pushed": report.pushed}}))
"""


def bench_memory(tmp: Path, big: int) -> list[dict]:
    store = device(tmp / "mem-dev.sqlite3", "dev")
    fill_own(store, big)
    store.close()
    code = CHILD.format(root=str(ROOT), dev=str(tmp / "mem-dev.sqlite3"), hub=str(tmp / "mem-hub.sqlite3"),
                        batch=BATCH)
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout)
    assert out["pushed"] == big, out
    grew_mb = (out["after_kb"] - out["before_kb"]) / 1024
    return [{"metric": f"peak RSS added by pushing {big}", "ours": f"{grew_mb:.1f}MB",
             "baseline": f"{out['before_kb'] / 1024:.0f}MB", "target": "< 64MB", "ok": grew_mb < 64,
             "grew_mb": round(grew_mb, 1)}]


# --- growth -----------------------------------------------------------------------------------
def bench_growth(tmp: Path, big: int) -> list[dict]:
    sizes = sorted({1000, 10_000, big})
    per_change = {}
    for size in sizes:
        store = device(tmp / f"grow-dev-{size}.sqlite3", "dev")
        fill_own(store, size)
        per_change[size] = timed_push(store, sql_hub(tmp / f"grow-hub-{size}.sqlite3")) / size
    growth = per_change[big] / per_change[1000] - 1
    return [{"metric": f"push cost per change, {size}", "ours": per_change[size], "baseline": per_change[1000],
             "ratio": per_change[size] / per_change[1000]} for size in sizes[1:]] + [
        {"metric": f"per-change growth 1k -> {big}", "ours": f"{growth * 100:+.0f}%", "target": "<= +20%",
         "ok": growth <= 0.2}]


# --- API during a push --------------------------------------------------------------------------
def bench_api_during_push(tmp: Path, n: int, uri: str | None, where: str) -> list[dict]:
    """PATCH p99 while a round pushes n changes, vs idle. `where`: "child" (the server's default:
    the round runs in a child process) or "thread" (SYNC_PROCESS=0: in the server's own process)."""
    from server.api import create_app
    from server.core.records import validate
    from server.sync.child import ChildRounds
    from server.sync.hub import HubSpec
    from server.sync.service import SyncService

    tag = f"{'wire' if uri else 'sql'}-{where}"
    store = device(tmp / f"busy-dev-{tag}.sqlite3", "dev")
    app = create_app(Settings(sqlite_path=str(tmp / "x")), store=store, start_sync=False)
    import logging

    logging.getLogger("server.http").setLevel(logging.WARNING)
    course = store.create("course", None, validate("course", {"title": "C", "source": "https://a.b"}, "create"))[0]
    lecture = store.create("lecture", course["id"], validate("lecture", {"title": "L", "order": 1,
                                                                      "videoUrl": "https://a.b/v"}, "create"))[0]
    client = app.test_client()
    url = f"/api/v1/courses/{course['id']}/lectures/{lecture['id']}"

    def patches(count: int) -> list[float]:
        out = []
        for i in range(count):
            start = time.perf_counter()
            assert client.patch(url, json={"note": f"n{i}"}).status_code == 200
            out.append(time.perf_counter() - start)
            time.sleep(0.001)  # a person's pace, not a flood
        return out

    sys.setswitchinterval(0.001)  # as python -m server sets it
    # Batches of 50 against mongoeco: under this load a batch of 200 outlasted the 10 s socket timeout.
    settings = Settings(sqlite_path=store.path, mongo_uri=uri, mongo_db=f"bench_busy_{where}",
                        sync_batch_size=50 if uri else BATCH, user_id=USER, origin="dev")
    hub_path = str(tmp / f"busy-hub-{tag}.sqlite3")
    if where == "child":
        child = ChildRounds(settings, USER, "dev", HubSpec() if uri else HubSpec("sql", hub_path))
        service = SyncService(settings, store, lambda: None, child=child)
        service.run_once()  # start the child and open its hub before measuring
    else:
        import pymongo

        def open_bench_hub():
            if not uri:
                return sql_hub(Path(hub_path))
            hub = get_db_connector("mongo", settings, client=pymongo.MongoClient(uri), user_id=USER)
            hub.connect()
            return hub

        service = SyncService(settings, store, open_bench_hub)
    idle = patches(600)
    fill_own(store, n)
    done = threading.Event()
    reports = []
    thread = threading.Thread(target=lambda: (reports.append(service.run_once(wait_seconds=0)), done.set()))
    thread.start()
    busy = []
    while not done.is_set():
        busy.extend(patches(20))
    thread.join()
    service.shutdown()
    assert reports[0].error is None and reports[0].pushed >= n, reports[0].as_dict()
    ratio = pct(busy, 99) / pct(idle, 99)
    hub = "wire hub" if uri else "SQLite-file hub"
    return [{"metric": f"PATCH p99, {n} push to a {hub}, round in {where} ({len(busy)} samples)",
             "ours": pct(busy, 99), "baseline": pct(idle, 99), "ratio": ratio,
             **({"target": "<= 2", "ok": ratio <= 2} if where == "child" else {})}]


def wire_hub(tmp: Path):
    """(uri, hub process or None): MONGO_URI when set, else a mongoeco hub this run starts."""
    if os.environ.get("MONGO_URI"):
        return os.environ["MONGO_URI"], None
    sys.path.insert(0, str(ROOT))
    from tests.wire.hub import WireHub, wire_python

    if wire_python() is None:
        return None, None
    hub = WireHub(tmp / "wirehub").start()
    return hub.uri, hub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--mongo-n", type=int, default=1000)
    parser.add_argument("--wire", action="store_true", help="also push to a wire-protocol hub")
    parser.add_argument("--wire-n", type=int, default=300, help="changes pushed to the wire hub (mongoeco is slow)")
    parser.add_argument("--only", help="comma-separated sections: push,pull,idle,memory,growth,api")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else {"push", "pull", "idle", "memory", "growth", "api"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "wirehub").mkdir()
        uri, hub = wire_hub(tmp) if args.wire else (None, None)
        try:
            if "push" in only:
                record("push", bench_push(tmp, args.n, args.mongo_n, uri, args.wire_n))
            if "pull" in only:
                record("pull", bench_pull(tmp, args.n))
            if "idle" in only:
                record("idle", bench_idle(tmp, args.big))
            if "memory" in only:
                record("memory", bench_memory(tmp, args.big))
            if "growth" in only:
                record("growth", bench_growth(tmp, args.big))
            if "api" in only:
                rows: list[dict] = []
                # The SQLite-file hub takes 10,000 changes in about half a second: 240 samples. A push
                # of --big changes gives the p99 thousands of samples to stand on.
                for hub_uri, count in [(None, args.big)] + ([(uri, args.wire_n)] if uri else []):
                    for where in ("child", "thread"):
                        rows += bench_api_during_push(tmp, count, hub_uri, where)
                        record("api-during-push", rows)  # after each: a failure later keeps these
        finally:
            if hub is not None:
                hub.stop()  # a hub process left behind would load the machine for every later run


if __name__ == "__main__":
    main()
