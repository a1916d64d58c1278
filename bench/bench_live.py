"""Live sync, from a write answered on device A until device B serves the same record, in one
run: live (A's push on write, B's waiting pull) against the 30 s timers alone.

    python bench/bench_live.py [--writes 200] [--timer-writes 4] [--no-wire]

Real processes on loopback: a hub server (`python -m server --hub`) on a SQLite file and, when
the wire tier is there (`make wirehub`, or MONGO_URI), a hub server on MongoDB; two devices of
one user. Writes at random moments; each is timed from A's 201 until B's GET /api/v1/courses
lists it (B is asked every 2 ms). The timer runs take fewer writes: each waits for a timer."""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from pathlib import Path

from common import pct, record

from server.connectors.factory import get_db_connector, registry_for
from server.core.config import Settings
from tests.procs import started

QUIET = {"LOG_LEVEL": "WARNING"}
LIVE = {"SYNC_LIVE": "1", "SYNC_PUSH_ON_WRITE": "1", "SYNC_INTERVAL_SECONDS": "3600"}
TIMER = {"SYNC_LIVE": "0", "SYNC_PUSH_ON_WRITE": "0", "SYNC_INTERVAL_SECONDS": "30"}


def hub_store(tmp: Path, kind: str, wire_uri: str | None) -> tuple[dict, list[str]]:
    """The hub's store settings, and two device tokens of one learner on it."""
    if kind == "sql":
        env = {"DB_CONNECTOR": "sql", "SQLITE_PATH": str(tmp / "hub.sqlite3")}
        store = get_db_connector("sql", Settings(), path=env["SQLITE_PATH"])
    else:
        env = {"DB_CONNECTOR": "mongo", "MONGO_URI": wire_uri, "MONGO_DB": f"bench_{uuid.uuid4().hex[:10]}"}
        store = get_db_connector("mongo", Settings(), uri=wire_uri, db_name=env["MONGO_DB"])
    store.connect()
    registry = registry_for(store)
    tokens = [registry.add("learner", name)[1] for name in ("a", "b")]
    store.close()
    return env, tokens


def titles(device) -> set[str]:
    return {c["title"] for c in device.request("GET", "/api/v1/courses")[1]["data"]}


def a_to_b(tmp: Path, kind: str, wire_uri: str | None, writes: int, mode: dict) -> list[float]:
    env, tokens = hub_store(tmp, kind, wire_uri)
    hub = started(tmp, "hub", {**env, **QUIET}, args=("--hub",))
    devices = [started(tmp, name, {"HUB_URL": f"http://127.0.0.1:{hub.port}", "HUB_TOKEN": token,
                                   "USER_ID": "learner", **QUIET, **mode})
               for name, token in zip(("a", "b"), tokens)]
    a, b = devices
    samples = []
    try:
        time.sleep(2)  # both devices past their first round
        for n in range(writes):
            time.sleep(random.uniform(0.1, 0.6))
            status, _, _ = a.request("POST", "/api/v1/courses", {"title": f"c{n}", "source": "https://a.b"})
            assert status == 201
            answered = time.perf_counter()
            while f"c{n}" not in titles(b):
                if time.perf_counter() - answered > 120:
                    raise AssertionError(f"write {n} never reached device B")
                time.sleep(0.002)
            samples.append(time.perf_counter() - answered)
    finally:
        for srv in (*devices, hub):
            srv.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--timer-writes", type=int, default=4)
    parser.add_argument("--no-wire", action="store_true", help="the SQLite hub only")
    args = parser.parse_args()
    kinds: list[tuple[str, str | None]] = [("sql", None)]
    wire = None
    if not args.no_wire:
        from tests.wire.hub import WireHub, unavailable_reason

        reason = unavailable_reason()
        if reason:
            print(f"the wire hub is left out: {reason}")
        else:
            wire = WireHub(Path(tempfile.mkdtemp(prefix="wirehub-"))).start()
            kinds.append(("wire", wire.uri))
    rows = []
    try:
        for kind, uri in kinds:
            with tempfile.TemporaryDirectory() as x, tempfile.TemporaryDirectory() as y:
                live = a_to_b(Path(x), kind, uri, args.writes, LIVE)
                timer = a_to_b(Path(y), kind, uri, args.timer_writes, TIMER)
            hub = "SQLite hub server" if kind == "sql" else "hub server on MongoDB (wire)"
            for p, target in ((50, 0.1), (99, 0.5)):
                ours, base = pct(live, p), pct(timer, p)
                row = {"metric": f"{hub}: write on A -> served by B, p{p} (s)", "ours": ours, "baseline": base,
                       "ratio": ours / base, "writes": len(live), "timer_writes": len(timer)}
                if kind == "sql":  # the targets are for the SQLite hub server
                    row.update(target=f"<{target}s", ok=ours < target)
                rows.append(row)
            rows.append({"metric": f"{hub}: write on A -> served by B, max (s)", "ours": max(live),
                         "baseline": max(timer), "ratio": max(live) / max(timer)})
    finally:
        if wire is not None:
            wire.stop()
    record("live", rows)


if __name__ == "__main__":
    main()
