"""API write and read latency against hand-written sqlite3 baselines, in one process.

    python bench/bench_api.py [--writes 5000] [--reads 40]

1. PATCH of a lecture through the Flask test client vs a bare Flask route doing the same work by
   hand with raw sqlite3 (one transaction: update the row, insert one change row): p50, p99.
2. GET /api/v1/courses on 50 courses x 30 lectures x 10 assignments vs raw sqlite3 queries plus
   json.dumps of the same payload: p50.
Samples of ours and of the baseline are interleaved, so a noisy neighbour hits both alike."""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from common import pct, record
from flask import Flask, jsonify, request

from server.api import create_app
from server.connectors.sqlite.store import SqlConnector
from server.core.config import Settings
from server.core.records import validate

LECTURE = {"title": "Lecture", "order": 1, "videoUrl": "https://a.b/v"}
SYNCHRONOUS = "FULL"  # the store's default; --synchronous NORMAL measures the other setting


def our_app(tmp: Path):
    store = SqlConnector(str(tmp / "ours.sqlite3"), user_id="bench", synchronous=SYNCHRONOUS)
    store.connect()
    app = create_app(Settings(sqlite_path=str(tmp / "x")), store=store, start_sync=False)
    app.logger.disabled = True
    import logging

    logging.getLogger("server.http").setLevel(logging.WARNING)
    return app, store


def baseline_app(tmp: Path):
    """A bare Flask route that does the write by hand: one transaction, update + change row."""
    conn = sqlite3.connect(str(tmp / "raw.sqlite3"), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")  # the same durability as ours
    conn.executescript("""
        CREATE TABLE lectures (id TEXT PRIMARY KEY, course_id TEXT, ord INTEGER, title TEXT, video_url TEXT,
                               duration INTEGER, status TEXT, note TEXT, created_at TEXT, updated_at TEXT);
        CREATE TABLE changes (seq INTEGER PRIMARY KEY, record_id TEXT, fields TEXT, at TEXT);
        INSERT INTO lectures VALUES ('l1', 'c1', 1, 'Lecture', 'https://a.b/v', NULL, 'not_started', '', 'x', 'x');
    """)
    app = Flask("baseline")

    @app.patch("/raw/lectures/<lid>")
    def patch(lid):
        body = request.get_json()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE lectures SET status = ?, updated_at = ? WHERE id = ?", (body["status"], now, lid))
        conn.execute("INSERT INTO changes (record_id, fields, at) VALUES (?, ?, ?)", (lid, json.dumps(body), now))
        row = conn.execute("SELECT * FROM lectures WHERE id = ?", (lid,)).fetchone()
        conn.execute("COMMIT")
        keys = ["id", "courseId", "order", "title", "videoUrl", "durationMinutes", "status", "note", "createdAt",
                "updatedAt"]
        return jsonify({"data": dict(zip(keys, row)), "meta": {}})

    return app


def bench_writes(tmp: Path, n: int) -> list[dict]:
    app, store = our_app(tmp)
    course = store.create("course", None, validate("course", {"title": "C", "source": "https://a.b"}, "create"))[0]
    lecture = store.create("lecture", course["id"], validate("lecture", LECTURE, "create"))[0]
    ours_client, raw_client = app.test_client(), baseline_app(tmp).test_client()
    ours_url = f"/api/v1/courses/{course['id']}/lectures/{lecture['id']}"
    statuses = ["in_progress", "completed"]
    ours, raw = [], []
    for i in range(n + 200):
        body = {"status": statuses[i % 2]}
        t0 = time.perf_counter()
        resp = ours_client.patch(ours_url, json=body)
        t1 = time.perf_counter()
        raw_resp = raw_client.patch("/raw/lectures/l1", json=body)
        t2 = time.perf_counter()
        assert resp.status_code == 200 and raw_resp.status_code == 200
        if i >= 200:  # warm-up excluded
            ours.append(t1 - t0)
            raw.append(t2 - t1)
    p50, p99 = pct(ours, 50), pct(ours, 99)
    b50, b99 = pct(raw, 50), pct(raw, 99)
    return [
        {"metric": f"PATCH lecture p50 (n={n})", "ours": p50, "baseline": b50, "ratio": p50 / b50,
         "target": "<= 1.5", "ok": p50 / b50 <= 1.5},
        {"metric": f"PATCH lecture p99 (n={n})", "ours": p99, "baseline": b99, "ratio": p99 / b99},
    ]


def bench_reads(tmp: Path, reps: int) -> list[dict]:
    (tmp / "r").mkdir()
    app, store = our_app(tmp / "r")
    changes, seq = [], 0
    hlc = "001700000000000-000000-bench"
    raw = sqlite3.connect(str(tmp / "raw-read.sqlite3"))
    raw.executescript("""
        CREATE TABLE courses (id TEXT PRIMARY KEY, title TEXT, description TEXT, source TEXT, status TEXT,
                              tags TEXT, notes TEXT, created_at TEXT, updated_at TEXT);
        CREATE TABLE lectures (id TEXT PRIMARY KEY, course_id TEXT, ord INTEGER, title TEXT, video_url TEXT,
                               duration INTEGER, status TEXT, note TEXT, created_at TEXT, updated_at TEXT);
        CREATE TABLE assignments (id TEXT PRIMARY KEY, course_id TEXT, title TEXT, status TEXT, due TEXT, link TEXT,
                                  note TEXT, created_at TEXT, updated_at TEXT);
        CREATE INDEX l_course ON lectures (course_id); CREATE INDEX a_course ON assignments (course_id);
    """)
    ts = "2026-01-01T00:00:00Z"

    def change(kind, rid, cid, fields):
        nonlocal seq
        seq += 1
        fields = {**fields, "createdAt": ts, "updatedAt": ts}
        changes.append({"origin": "bench", "seq": seq, "hlc": hlc, "kind": kind, "id": rid, "courseId": cid,
                        "op": "upsert", "fields": fields, "bases": {k: "" for k in fields}})

    for c in range(50):
        cid = f"c{c:02d}"
        course = {"title": f"Course {c}", "description": "d" * 80, "source": "https://ocw.example/c",
                  "status": "active", "tags": ["math", "cs"], "notes": "n" * 40}
        change("course", cid, None, course)
        raw.execute("INSERT INTO courses VALUES (?,?,?,?,?,?,?,?,?)", (cid, course["title"], course["description"],
                    course["source"], "active", json.dumps(course["tags"]), course["notes"], ts, ts))
        for lec in range(30):
            lid = f"{cid}-l{lec}"
            fields = {"order": lec + 1, "title": f"Lecture {lec}", "videoUrl": "https://ocw.example/v",
                      "durationMinutes": 50, "status": "not_started", "note": ""}
            change("lecture", lid, cid, fields)
            raw.execute("INSERT INTO lectures VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (lid, cid, lec + 1, fields["title"], fields["videoUrl"], 50, "not_started", "", ts, ts))
        for a in range(10):
            aid = f"{cid}-a{a}"
            fields = {"title": f"PS {a}", "status": "not_started", "dueDate": "2026-03-01",
                      "link": "https://ocw.example/ps", "note": ""}
            change("assignment", aid, cid, fields)
            raw.execute("INSERT INTO assignments VALUES (?,?,?,?,?,?,?,?,?)",
                        (aid, cid, fields["title"], "not_started", "2026-03-01", fields["link"], "", ts, ts))
    raw.commit()
    store.apply_changes(changes)
    client = app.test_client()

    def baseline() -> str:
        lectures: dict[str, list] = {}
        for r in raw.execute("SELECT * FROM lectures ORDER BY course_id, ord"):
            lectures.setdefault(r[1], []).append({
                "id": r[0], "courseId": r[1], "order": r[2], "title": r[3], "videoUrl": r[4],
                "durationMinutes": r[5], "status": r[6], "note": r[7], "createdAt": r[8], "updatedAt": r[9]})
        assignments: dict[str, list] = {}
        for r in raw.execute("SELECT * FROM assignments ORDER BY course_id, created_at"):
            assignments.setdefault(r[1], []).append({
                "id": r[0], "courseId": r[1], "title": r[2], "status": r[3], "dueDate": r[4], "link": r[5],
                "note": r[6], "createdAt": r[7], "updatedAt": r[8]})
        out = [{"id": r[0], "title": r[1], "description": r[2], "source": r[3], "status": r[4],
                "tags": json.loads(r[5]), "notes": r[6], "lectures": lectures.get(r[0], []),
                "assignments": assignments.get(r[0], []), "createdAt": r[7], "updatedAt": r[8]}
               for r in raw.execute("SELECT * FROM courses ORDER BY created_at, id")]
        return json.dumps({"data": out, "meta": {"traceId": "x"}})

    ours, base = [], []
    for i in range(reps + 3):
        t0 = time.perf_counter()
        resp = client.get("/api/v1/courses")
        t1 = time.perf_counter()
        payload = baseline()
        t2 = time.perf_counter()
        assert resp.status_code == 200 and len(resp.get_json()["data"]) == 50 and payload
        if i >= 3:
            ours.append(t1 - t0)
            base.append(t2 - t1)
    p50, b50 = pct(ours, 50), pct(base, 50)
    return [{"metric": "GET /courses 50x30x10 p50", "ours": p50, "baseline": b50, "ratio": p50 / b50,
             "target": "<= 2", "ok": p50 / b50 <= 2}]


def main() -> None:
    global SYNCHRONOUS
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=5000)
    parser.add_argument("--reads", type=int, default=40)
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL",
                        help="SQLite's synchronous setting, for ours and the baseline alike")
    args = parser.parse_args()
    SYNCHRONOUS = args.synchronous
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_writes(Path(tmp), args.writes) + bench_reads(Path(tmp), args.reads)
    record("api" if SYNCHRONOUS == "FULL" else "api-synchronous-normal", rows)


if __name__ == "__main__":
    main()
