"""The device's own API while live sync is busy, against live sync off, in one run:

    python bench/bench_busy.py [--seconds 20] [--rate 20]

Real processes on loopback: a hub server on a SQLite file and two devices of one learner, with 20
courses both hold. For --seconds, a writer edits one of those courses on device A --rate times a
second (a title, so that B's list keeps its size), while a reader asks device B for its course
list and device A for one course, one call after the other. Live: push on write and the live wait
on both (the defaults), so A pushes each edit and B applies each from its wait. Off: the same
devices with SYNC_LIVE=0, SYNC_PUSH_ON_WRITE=0 and the hourly timer, so no sync work runs while
they serve. The figure is each call's p50 and p99 live against off (issue 40's target: p99
within 1.5x)."""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path

from bench_live import LIVE, QUIET, hub_store
from common import pct, record

from tests.procs import started

OFF = {"SYNC_LIVE": "0", "SYNC_PUSH_ON_WRITE": "0", "SYNC_INTERVAL_SECONDS": "3600"}
COURSES = 20


def run(tmp: Path, mode: dict, seconds: float, rate: float) -> dict[str, list[float]]:
    env, tokens = hub_store(tmp, "sql", None)
    hub = started(tmp, "hub", {**env, **QUIET}, args=("--hub",))
    devices = [started(tmp, name, {"HUB_URL": f"http://127.0.0.1:{hub.port}", "HUB_TOKEN": token,
                                   "USER_ID": "learner", **QUIET, **mode})
               for name, token in zip(("a", "b"), tokens)]
    a, b = devices
    times: dict[str, list[float]] = {"A PATCH /api/v1/courses/{id}": [], "B GET /api/v1/courses": [],
                                     "A GET /api/v1/courses/{id}": []}
    try:
        ids = [a.request("POST", "/api/v1/courses", {"title": f"c{n}", "source": "https://a.b"})[1]["data"]["id"]
               for n in range(COURSES)]
        a.sync()
        b.sync()
        assert len(b.request("GET", "/api/v1/courses")[1]["data"]) == COURSES
        time.sleep(1)  # the rounds those started have ended
        stop = time.monotonic() + seconds
        writer = threading.Thread(target=write, args=(a, ids, stop, rate, times["A PATCH /api/v1/courses/{id}"]))
        writer.start()
        while time.monotonic() < stop:
            for device, path, key in ((b, "/api/v1/courses", "B GET /api/v1/courses"),
                                      (a, f"/api/v1/courses/{random.choice(ids)}", "A GET /api/v1/courses/{id}")):
                start = time.perf_counter()
                assert device.request("GET", path)[0] == 200
                times[key].append(time.perf_counter() - start)
            time.sleep(0.005)
        writer.join()
        if mode.get("SYNC_LIVE") == "1":  # busy indeed: B holds every edit, and took them live
            give_up = time.monotonic() + 60
            while titles(b) != titles(a):
                assert time.monotonic() < give_up, "device B never caught up with A's edits"
                time.sleep(0.01)
            totals = b.request("GET", "/api/v1/sync/status")[1]["data"]["totals"]
            times["B's wakes and rounds"] = [float(totals["rounds"])]
    finally:
        for srv in (*devices, hub):
            srv.stop()
    return times


def titles(device) -> dict[str, str]:
    return {c["id"]: c["title"] for c in device.request("GET", "/api/v1/courses")[1]["data"]}


def write(a, ids: list[str], stop: float, rate: float, out: list[float]) -> None:
    n = 0
    while time.monotonic() < stop:
        n += 1
        start = time.perf_counter()
        assert a.request("PATCH", f"/api/v1/courses/{random.choice(ids)}", {"title": f"edit {n}"})[0] == 200
        out.append(time.perf_counter() - start)
        time.sleep(max(0.0, 1 / rate - (time.perf_counter() - start)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=20, help="edits a second on device A")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as x, tempfile.TemporaryDirectory() as y:
        off = run(Path(x), OFF, args.seconds, args.rate)
        live = run(Path(y), LIVE, args.seconds, args.rate)
    rows = []
    wakes = live.pop("B's wakes and rounds")[0]
    for key in live:
        for p in (50, 99):
            ours, base = pct(live[key], p), pct(off[key], p)
            row = {"metric": f"{key}, p{p} (s), live busy / live off", "ours": ours, "baseline": base,
                   "ratio": ours / base, "calls": len(live[key])}
            if p == 99:
                row.update(target="1.5x", ok=ours / base <= 1.5)
            rows.append(row)
    rows.append({"metric": "B's rounds and wakes applied while live (edits on A)", "ours": wakes,
                 "baseline": len(live["A PATCH /api/v1/courses/{id}"]), "ratio": None, "unit": "count"})
    record("busy", rows)


if __name__ == "__main__":
    main()
