"""What hostile bodies cost a hub server, and what a legitimate device meanwhile waits, in one run.

    python bench/bench_hostile.py [--seconds 10] [--clients 8]

A hub server on SQLite (its own process, loopback). First a legitimate device's call (epoch,
pull) is timed alone; then `--clients` clients, each with its own user's token, send one kind of
hostile body over and over while the legitimate device's calls are timed again. Reported per
kind of body: the hub's peak RSS (VmHWM), its answers, and the legitimate call's p50/p99 alone
and meanwhile (the ratio is the figure). Target (issue 19): peak RSS under 300 MB."""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import pct, record

from server.connectors.factory import get_db_connector, registry_for
from server.core.config import Settings
from server.sync.http_hub import HubClient
from tests.procs import ServerProcess, peak_rss_mb, raw_gzip_push, started


def bodies() -> dict[str, bytes]:
    """Each kind of hostile body, gzip-compressed as a device sends it."""
    empties = b"[]," * (63 * 1024 * 1024 // 3)
    near = b"[]," * (7 * 1024 * 1024 // 3)
    budget = b"[]," * 199_000  # just under the count of values refused before parsing
    return {
        "63 MB of [] (59 KiB gzip)": gzip.compress(b'{"x":[' + empties + b"[]]}", 9),
        "7 MB of [] (under the inflated limit)": gzip.compress(b'{"x":[' + near + b"[]]}", 9),
        "199k values (just under the count)": gzip.compress(b'{"x":[' + budget + b"[]]}", 9),
        "8 MB string": gzip.compress(b'{"x":"' + b"a" * (8 * 1024 * 1024 - 16) + b'"}', 9),
    }


def legit_calls(client: HubClient, seconds: float) -> list[float]:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        client.hub_epoch()
        client.changes_since({}, 100)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def start_hub(tmp: Path, users: int) -> tuple[ServerProcess, list[str]]:
    path = tmp / "hub.sqlite3"
    store = get_db_connector("sql", Settings(), path=str(path))
    store.connect()
    tokens = [registry_for(store).add(f"user{n}", "bench")[1] for n in range(users)]
    store.close()
    settings = {"DB_CONNECTOR": "sql", "SQLITE_PATH": str(path), "LOG_LEVEL": "WARNING"}
    return started(tmp, "hub", settings, args=("--hub",)), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    rows = []
    for kind, body in bodies().items():
        with tempfile.TemporaryDirectory() as tmp:
            hub, tokens = start_hub(Path(tmp), args.clients + 1)
            try:
                client = HubClient(f"http://127.0.0.1:{hub.port}", tokens[-1], timeout_ms=120_000)
                alone = legit_calls(client, 2)
                rss_idle = peak_rss_mb(hub.proc.pid)
                stop = time.monotonic() + args.seconds
                statuses: dict[int, int] = {}

                def hostile(token: str) -> None:
                    while time.monotonic() < stop:
                        status = raw_gzip_push(hub.port, token, body)[0]
                        statuses[status] = statuses.get(status, 0) + 1

                threads = [threading.Thread(target=hostile, args=(t,)) for t in tokens[:args.clients]]
                for t in threads:
                    t.start()
                meanwhile = legit_calls(client, args.seconds)
                for t in threads:
                    t.join()
                peak = peak_rss_mb(hub.proc.pid)
                rows.append({"metric": f"{kind}: hub peak RSS", "ours": f"{peak:.0f} MB",
                             "baseline": f"{rss_idle:.0f} MB idle", "target": "<300 MB", "ok": peak < 300,
                             "answers": statuses, "gzip_bytes": len(body)})
                rows.append({"metric": f"{kind}: legit call p99", "ours": pct(meanwhile, 99) / 1000,
                             "baseline": pct(alone, 99) / 1000, "ratio": pct(meanwhile, 99) / pct(alone, 99),
                             "p50_meanwhile_ms": round(pct(meanwhile, 50), 2),
                             "p50_alone_ms": round(pct(alone, 50), 2)})
                client.close()
            finally:
                hub.stop()
    record("hostile-bodies", rows)
    for row in rows:
        if "answers" in row:
            print(f"  {row['metric'].split(':')[0]}: answers {row['answers']}", file=sys.stdout)


if __name__ == "__main__":
    main()
