"""From a write answered on a device to the change stored at the hub, in one run: push on write
against the timer alone.

    python bench/bench_live.py [--writes 30] [--timer-writes 8]

A hub server on SQLite and a device (`python -m server`, its own processes, loopback). Writes
at random moments; each is timed from the device's 201 to the hub's file holding it. First with
push on write (a round 0.2 s after a write), then with it off (the 30 s timer only; fewer
writes, since each waits for the timer). This is the push half of live sync: the other device
still pulls on its timer until the hub has a waiting pull (issue 20)."""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from common import pct, record

from server.config import Settings
from server.connectors.factory import get_db_connector
from server.connectors.registry import registry_for
from tests.procs import started


def held(path: Path, origin: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM changes WHERE origin = ?", (origin,)).fetchone()[0]
    finally:
        conn.close()


def run(tmp: Path, writes: int, push_on_write: bool) -> list[float]:
    path = tmp / "hub.sqlite3"
    store = get_db_connector("sql", Settings(), path=str(path))
    store.connect()
    token = registry_for(store).add("learner", "bench")[1]
    store.close()
    hub = started(tmp, "hub", {"DB_CONNECTOR": "sql", "SQLITE_PATH": str(path), "LOG_LEVEL": "WARNING"},
                  args=("--hub",))
    device = started(tmp, "device", {"HUB_URL": f"http://127.0.0.1:{hub.port}", "HUB_TOKEN": token,
                                     "USER_ID": "learner", "LOG_LEVEL": "WARNING",
                                     "SYNC_PUSH_ON_WRITE": "1" if push_on_write else "0"})
    samples = []
    try:
        time.sleep(1)
        origin = device.request("GET", "/api/v1/sync/status")[1]["data"]["deviceId"]
        for n in range(writes):
            time.sleep(random.uniform(0.3, 1.5))
            before = held(path, origin)
            status, _, _ = device.request("POST", "/api/v1/courses", {"title": f"c{n}", "source": "https://a.b"})
            assert status == 201
            answered = time.perf_counter()
            while held(path, origin) <= before:
                time.sleep(0.005)
            samples.append(time.perf_counter() - answered)
    finally:
        device.stop()
        hub.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=30)
    parser.add_argument("--timer-writes", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        live = run(Path(a), args.writes, True)
        timer = run(Path(b), args.timer_writes, False)
    rows = []
    for p in (50, 99):
        ours, base = pct(live, p), pct(timer, p)
        rows.append({"metric": f"write answered -> at the hub, p{p}", "ours": ours, "baseline": base,
                     "ratio": ours / base, "target": "<0.1s" if p == 50 else "<0.5s",
                     "ok": ours < (0.1 if p == 50 else 0.5), "writes": len(live), "timer_writes": len(timer)})
    record("live-push", rows)


if __name__ == "__main__":
    main()
