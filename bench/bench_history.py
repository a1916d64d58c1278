"""Bounded history: what compaction gives back, and a new device's first sync by snapshot
against a replay of the whole log, in one run.

    python bench/bench_history.py [--records 1000] [--edits 100000]

A writer's `--records` courses are edited `--edits` times in all (titles, round robin), pushed
to an embedded SQLite hub (a hub server's store), and one device replays the whole log. Then:
- sizes: the hub file and the replaying device's file, in bytes of pages in use, before and
  after the hub compacts everything every device holds and the device's rounds drop it from its
  log too (SQLite keeps the freed pages for reuse; `VACUUM` gives them back to the disk, shown too);
- first sync: a new device by snapshot (the hub compacted) against one that replays the full
  log (a hub that never compacted), and against a raw copy of the hub's record rows into a fresh
  SQLite file (sqlite3 executemany: the floor any first sync pays). Measured at `--edits` and at
  a tenth of it, to show whether each grows with the number of edits;
- rounds during compaction: p50/p99 of a small push-and-pull round while the hub compacts a
  second user's history of the same size in its background step size, against the same rounds
  with no compaction running."""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from common import pct, record

from server.connectors.sqlite.store import SqlConnector
from server.core.clock import encode
from server.sync.engine import run_round

USER, BATCH = "bench", 500
TS = "2026-01-01T00:00:00.000Z"


def history(origin: str, records: int, edits: int) -> list[dict]:
    """The writer's log: `records` course creates, then `edits` title edits round robin."""
    out, last = [], {}
    for seq in range(1, records + edits + 1):
        n = (seq - 1) % records
        hlc = encode(1_700_000_000_000 + seq, 0, origin)
        if seq <= records:
            fields = {"title": f"Course {n}", "source": "https://ocw.example/c", "description": "", "status": "active",
                      "tags": ["x"], "notes": "", "createdAt": TS, "updatedAt": TS}
            bases = {k: "" for k in fields}
        else:
            fields, bases = {"title": f"Course {n} edit {seq}"}, {"title": last[n]}
        last[n] = hlc
        out.append({"origin": origin, "seq": seq, "hlc": hlc, "kind": "course", "id": f"c{n}", "courseId": None,
                    "op": "upsert", "fields": fields, "bases": bases})
    return out


def store(path: Path, origin: str | None, user: str = USER) -> SqlConnector:
    conn = SqlConnector(str(path), user_id=user, origin=origin)
    conn.connect()
    return conn


def used_bytes(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count",
                                                                             "page_size"))
    conn.close()
    return (pages - free) * size


def vacuumed_bytes(path: Path, tmp: Path) -> int:
    copy = tmp / f"vacuumed-{path.name}"
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    conn.execute("VACUUM")
    conn.close()
    return copy.stat().st_size


def filled_hub(path: Path, records: int, edits: int, user: str = USER) -> SqlConnector:
    hub = store(path, None, user)
    changes = history("writer", records, edits)
    for i in range(0, len(changes), 5000):
        hub.apply_changes(changes[i:i + 5000])
    return hub


def compact_all(hub: SqlConnector) -> int:
    tops, dropped = hub.tops({"writer"}), 0
    while step := hub.compact(tops, 20_000):
        dropped += step
    return dropped


def first_sync(hub: SqlConnector, path: Path) -> tuple[float, object]:
    dev = store(path, "newcomer")
    start = time.perf_counter()
    report = run_round(dev, hub, BATCH)
    elapsed = time.perf_counter() - start
    assert report.error is None, report.error
    dev.close()
    return elapsed, report


def raw_copy(hub_path: Path, path: Path) -> float:
    start = time.perf_counter()
    src, dst = sqlite3.connect(hub_path), sqlite3.connect(path)
    dst.execute("CREATE TABLE records (user_id, kind, key, id, course_id, fields, clocks, deleted, dclock, dbase, v, "
                "PRIMARY KEY (user_id, kind, key)) WITHOUT ROWID")
    rows = src.execute("SELECT user_id, kind, key, id, course_id, fields, clocks, deleted, dclock, dbase, v "
                       "FROM records WHERE user_id = ?", (USER,)).fetchall()
    dst.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    dst.commit()
    src.close()
    dst.close()
    return time.perf_counter() - start


def first_syncs(tmp: Path, records: int, edits: int) -> dict:
    whole = filled_hub(tmp / f"whole-{edits}.sqlite3", records, edits)
    compacted = filled_hub(tmp / f"compacted-{edits}.sqlite3", records, edits)
    compact_all(compacted)
    replay_s, replay = first_sync(whole, tmp / f"replay-{edits}.sqlite3")
    snapshot_s, snap = first_sync(compacted, tmp / f"snapshot-{edits}.sqlite3")
    raw_s = raw_copy(tmp / f"compacted-{edits}.sqlite3", tmp / f"raw-{edits}.sqlite3")
    assert snap.from_snapshot == records and replay.pulled == records + edits
    whole.close()
    compacted.close()
    return {"edits": edits, "replay_s": round(replay_s, 3), "snapshot_s": round(snapshot_s, 3),
            "raw_copy_s": round(raw_s, 4), "snapshot_over_raw": round(snapshot_s / raw_s, 2),
            "replay_over_snapshot": round(replay_s / snapshot_s, 1)}


def rounds(hub: SqlConnector, dev: SqlConnector, n: int) -> list[float]:
    out = []
    for i in range(n):
        dev.update("course", None, "c0", {"title": f"round {i}"})
        start = time.perf_counter()
        report = run_round(dev, hub, BATCH)
        out.append((time.perf_counter() - start) * 1000)
        assert report.error is None, report.error
    return out


def during_compaction(tmp: Path, records: int, edits: int) -> dict:
    path = tmp / "busy-hub.sqlite3"
    hub = filled_hub(path, records, edits)
    other = filled_hub(path, records, edits, user="other")  # the history compacted meanwhile
    dev = store(tmp / "busy-dev.sqlite3", "busy")
    run_round(dev, hub, BATCH)
    quiet = rounds(hub, dev, 200)
    done = threading.Event()

    def compact() -> None:
        compact_all(other)
        done.set()

    worker = threading.Thread(target=compact)
    worker.start()
    busy = []
    while not done.is_set():
        busy += rounds(hub, dev, 5)
    worker.join()
    for conn in (hub, other, dev):
        conn.close()
    return {"quiet_p50_ms": round(pct(quiet, 50), 2), "quiet_p99_ms": round(pct(quiet, 99), 2),
            "during_p50_ms": round(pct(busy, 50), 2), "during_p99_ms": round(pct(busy, 99), 2),
            "rounds_during": len(busy), "p99_ratio": round(pct(busy, 99) / pct(quiet, 99), 2)}


def metric_rows(sizes: dict, small: dict, big: dict, busy: dict) -> list[dict]:
    """The figures as the results file's rows (ours against a baseline measured in this run)."""
    edits = big["edits"]
    return [
        {"metric": "hub file in use after/before compaction", "unit": "B", "ours": sizes["hub_after"],
         "baseline": sizes["hub_before"], "ratio": sizes["hub_after"] / sizes["hub_before"], **sizes},
        {"metric": "hub file after VACUUM/before compaction", "unit": "B", "ours": sizes["hub_vacuumed"],
         "baseline": sizes["hub_before"], "ratio": sizes["hub_vacuumed"] / sizes["hub_before"]},
        {"metric": "replaying device's file in use after/before its log was trimmed", "unit": "B",
         "ours": sizes["device_after"], "baseline": sizes["device_before"],
         "ratio": sizes["device_after"] / sizes["device_before"]},
        {"metric": "replaying device's file after VACUUM/before", "unit": "B", "ours": sizes["device_vacuumed"],
         "baseline": sizes["device_before"], "ratio": sizes["device_vacuumed"] / sizes["device_before"]},
        {"metric": f"first sync: snapshot/raw copy ({edits} edits)", "ours": big["snapshot_s"],
         "baseline": big["raw_copy_s"], "ratio": big["snapshot_s"] / big["raw_copy_s"], "target": "1.5",
         "ok": big["snapshot_s"] / big["raw_copy_s"] <= 1.5},
        {"metric": f"first sync: snapshot/replay ({edits} edits)", "ours": big["snapshot_s"],
         "baseline": big["replay_s"], "ratio": big["snapshot_s"] / big["replay_s"]},
        {"metric": f"snapshot at {edits}/at {small['edits']} edits", "ours": big["snapshot_s"],
         "baseline": small["snapshot_s"], "ratio": big["snapshot_s"] / small["snapshot_s"], "target": "~1"},
        {"metric": f"replay at {edits}/at {small['edits']} edits", "ours": big["replay_s"],
         "baseline": small["replay_s"], "ratio": big["replay_s"] / small["replay_s"]},
        {"metric": "round p99: compacting/quiet", "unit": "ms", "ours": busy["during_p99_ms"],
         "baseline": busy["quiet_p99_ms"], "ratio": busy["p99_ratio"], **busy},
        {"metric": "round p50: compacting/quiet", "unit": "ms", "ours": busy["during_p50_ms"],
         "baseline": busy["quiet_p50_ms"], "ratio": busy["during_p50_ms"] / busy["quiet_p50_ms"]},
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--edits", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        hub_path, dev_path = tmp / "hub.sqlite3", tmp / "device.sqlite3"
        hub = filled_hub(hub_path, args.records, args.edits)
        dev = store(dev_path, "reader")
        assert run_round(dev, hub, BATCH).error is None
        before = {"hub": used_bytes(hub_path), "device": used_bytes(dev_path)}
        dropped = compact_all(hub)
        device_kept = used_bytes(dev_path)
        trim_rounds, trimmed = 0, 0
        while step := run_round(dev, hub, BATCH).trimmed:  # the device drops what the hub compacted
            trim_rounds, trimmed = trim_rounds + 1, trimmed + step
        sizes = {"records": args.records, "edits": args.edits, "dropped": dropped, "hub_before": before["hub"],
                 "hub_after": used_bytes(hub_path), "hub_vacuumed": vacuumed_bytes(hub_path, tmp),
                 "device_before": before["device"], "device_untrimmed": device_kept,
                 "device_after": used_bytes(dev_path), "device_vacuumed": vacuumed_bytes(dev_path, tmp),
                 "device_trimmed": trimmed, "device_trim_rounds": trim_rounds}
        hub.close()
        dev.close()
        small = first_syncs(tmp, args.records, args.edits // 10)
        big = first_syncs(tmp, args.records, args.edits)
        busy = during_compaction(tmp, args.records, args.edits)
    record("history", metric_rows(sizes, small, big, busy))
    for row in (sizes, small, big, busy):
        print(row)


if __name__ == "__main__":
    main()
