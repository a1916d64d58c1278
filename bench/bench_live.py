"""Live sync, from a write answered on device A until device B serves the same record, in one
run: live with the round call (feature "round", one exchange per round) against live with the old
calls (COURSESYNC_ROUND_CALL=0 on both devices), side by side; the hub's requests per round,
counted from its /metrics; and a burst of writes on A until all are served by B.

    python bench/bench_live.py [--writes 60] [--burst 1000] [--no-wire]

Real processes on loopback: a hub server (`python -m server --hub`) on a SQLite file and, when
the wire tier is there (`make wirehub`, or MONGO_URI), a hub server on MongoDB; two devices of
one user. Writes at random moments; each is timed from A's 201 until B's GET /api/v1/courses
lists it (B is asked every 2 ms)."""

from __future__ import annotations

import argparse
import http.client
import json
import random
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from common import pct, record

from server.connectors.factory import get_db_connector, registry_for
from server.core.config import Settings
from tests.procs import started

QUIET = {"LOG_LEVEL": "WARNING"}
LIVE = {"SYNC_LIVE": "1", "SYNC_PUSH_ON_WRITE": "1", "SYNC_INTERVAL_SECONDS": "3600"}
OLD = {**LIVE, "COURSESYNC_ROUND_CALL": "0"}
SCRAPE = "bench-scrape-token-0123456789"


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


def hub_requests(hub) -> int:
    """The hub's protocol requests so far but the waits (held calls, not a round's), from /metrics."""
    req = urllib.request.Request(f"http://127.0.0.1:{hub.port}/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read().decode()
    return int(sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("coursesync_hub_requests_total{") and 'call="hubWait"' not in line))


def rounds(device) -> int:
    return device.request("GET", "/api/v1/sync/status")[1]["data"]["totals"]["rounds"]


def a_to_b(tmp: Path, kind: str, wire_uri: str | None, writes: int, burst: int, mode: dict) -> dict:
    env, tokens = hub_store(tmp, kind, wire_uri)
    hub = started(tmp, "hub", {**env, **QUIET, "HUB_METRICS_TOKEN": SCRAPE}, args=("--hub",))
    devices = [started(tmp, name, {"HUB_URL": f"http://127.0.0.1:{hub.port}", "HUB_TOKEN": token,
                                   "USER_ID": "learner", **QUIET, **mode})
               for name, token in zip(("a", "b"), tokens)]
    a, b = devices
    samples = []
    try:
        time.sleep(2)  # both devices past their first round
        requests, done = hub_requests(hub), rounds(a) + rounds(b)
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
        time.sleep(1)  # the rounds of the last write have ended
        per_round = (hub_requests(hub) - requests) / max(1, rounds(a) + rounds(b) - done)
        burst_s, last_s, burst_rounds = write_burst(a, b, burst)
    finally:
        for srv in (*devices, hub):
            srv.stop()
    return {"samples": samples, "per_round": per_round, "burst_s": burst_s, "burst_after_last_s": last_s,
            "burst_rounds": burst_rounds}


def send_writes(port: int, prefix: str, n: int) -> None:
    """n course creations, one after the other, on one kept-alive connection (as a browser sends
    a page's calls), each answered before the next is sent."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for k in range(n):
            body = json.dumps({"title": f"{prefix}{k}", "source": "https://a.b"})
            conn.request("POST", "/api/v1/courses", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 201, resp.status
    finally:
        conn.close()


def alone(tmp: Path, n: int) -> float:
    """Seconds a device with no hub (sync off) takes to answer n writes sent one after the other:
    the floor under the burst's figure, as this machine answers them."""
    a = started(tmp, "alone", {"USER_ID": "learner", **QUIET})
    try:
        start = time.perf_counter()
        send_writes(a.port, "alone", n)
        return time.perf_counter() - start
    finally:
        a.stop()


def write_burst(a, b, n: int) -> tuple[float, float, int]:
    """n writes on A, one after the other as fast as A answers: seconds from the first write sent
    until B serves them all, from the last one answered until then, and A's rounds meanwhile.
    Infinite seconds: B did not serve them all within 120 s of the last."""
    before = rounds(a)
    start = time.perf_counter()
    send_writes(a.port, "burst", n)
    last = time.perf_counter()
    while sum(t.startswith("burst") for t in titles(b)) < n:
        if time.perf_counter() - last > 120:  # said in the table, the other rows still measured
            return float("inf"), float("inf"), rounds(a) - before
        time.sleep(0.005)
    end = time.perf_counter()
    return end - start, end - last, rounds(a) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=60)
    parser.add_argument("--burst", type=int, default=1000)
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
                new = a_to_b(Path(x), kind, uri, args.writes, args.burst, LIVE)
                old = a_to_b(Path(y), kind, uri, args.writes, args.burst, OLD)
            rows += compared(kind, new, old)
        with tempfile.TemporaryDirectory() as z:
            rows.append({"metric": "the burst's writes answered by a device with sync off (the floor)",
                         "ours": alone(Path(z), args.burst)})
    finally:
        if wire is not None:
            wire.stop()
    record("live", rows)


def compared(kind: str, new: dict, old: dict) -> list[dict]:
    """The rows of one hub: ours (the round call) against the baseline (the old calls)."""
    hub = "SQLite hub server" if kind == "sql" else "hub server on MongoDB (wire)"
    targets = {50: 0.025, 99: 0.060} if kind == "sql" else {50: 0.060}
    rows = []
    for p in (50, 99):
        ours, base = pct(new["samples"], p), pct(old["samples"], p)
        row = {"metric": f"{hub}: write on A -> served by B, p{p} (s)", "ours": ours, "baseline": base,
               "ratio": ours / base, "writes": len(new["samples"])}
        if p in targets:
            row.update(target=f"<{targets[p]}s", ok=ours < targets[p])
        rows.append(row)
    rows.append({"metric": f"{hub}: write on A -> served by B, max (s)", "ours": max(new["samples"]),
                 "baseline": max(old["samples"]), "ratio": max(new["samples"]) / max(old["samples"])})
    rows.append({"metric": f"{hub}: hub requests per round (waits not counted)", "ours": new["per_round"],
                 "baseline": old["per_round"], "ratio": new["per_round"] / old["per_round"], "unit": "requests"})
    burst = {"metric": f"{hub}: burst of writes on A, first sent -> all served by B (s)", "ours": new["burst_s"],
             "baseline": old["burst_s"], "ratio": new["burst_s"] / old["burst_s"]}
    if kind == "sql":
        burst.update(target="<2s", ok=new["burst_s"] < 2)
    rows.append(burst)
    rows.append({"metric": f"{hub}: burst, last answered -> all served by B (s)", "ours": new["burst_after_last_s"],
                 "baseline": old["burst_after_last_s"],
                 "ratio": new["burst_after_last_s"] / max(old["burst_after_last_s"], 1e-9)})
    rows.append({"metric": f"{hub}: burst, A's rounds", "ours": new["burst_rounds"], "baseline": old["burst_rounds"],
                 "ratio": new["burst_rounds"] / max(1, old["burst_rounds"]), "unit": "rounds"})
    return rows


if __name__ == "__main__":
    main()
