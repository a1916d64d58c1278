"""Many users on one embedded (SQLite) hub server, in one run (issue 36):

    python bench/bench_users.py [--users 1000] [--few 10] [--calls 3000] [--file-mb 300]

A hub file with --users users, each with a device, a token and a few changes, grown to about
--file-mb with rows a whole-file check would read. The epoch call is timed while the devices of
--few users take turns, then while those of all --users do (each call the least recently used
user's: past the users a hub keeps open, every call once opened that user's store again and ran a
quick check of the whole file). Target: the p50 at --users within 2x of the p50 at --few."""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from common import pct, record

from server.connectors.factory import get_db_connector, registry_for
from server.core.config import Settings
from server.sync.http_hub import HubClient
from tests.procs import started


def hub_file(tmp: Path, users: int, file_mb: int) -> tuple[Path, list[str]]:
    path = tmp / "hub.sqlite3"
    store = get_db_connector("sql", Settings(), path=str(path))
    store.connect()
    registry = registry_for(store)
    tokens = [registry.add(f"user{n}", "laptop")[1] for n in range(users)]
    store.close()
    raw = sqlite3.connect(path)  # the bulk of a hub file that many users' history makes
    raw.execute("CREATE TABLE IF NOT EXISTS bulk (x)")
    rows = file_mb * 1024 * 1024 // 1100
    raw.executemany("INSERT INTO bulk VALUES (?)", (("x" * 1000 + str(n),) for n in range(rows)))
    raw.commit()
    raw.close()
    return path, tokens


def one_change(user: str, origin: str, seq: int) -> dict:
    return {"origin": origin, "seq": seq, "hlc": f"{int(time.time() * 1000):015d}-{seq:06d}-{origin}",
            "kind": "user", "id": user, "courseId": None, "op": "upsert", "fields": {"displayName": f"n{seq}"},
            "bases": {"displayName": ""}}


def timed_epochs(clients: list[HubClient], calls: int) -> list[float]:
    samples = []
    for n in range(calls):
        c = clients[n % len(clients)]
        start = time.perf_counter()
        c.hub_epoch()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--few", type=int, default=10)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--file-mb", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, tokens = hub_file(Path(tmp), args.users, args.file_mb)
        size_mb = path.stat().st_size / 1e6
        hub = started(Path(tmp), "hub", {"DB_CONNECTOR": "sql", "SQLITE_PATH": str(path), "LOG_LEVEL": "WARNING"},
                      args=("--hub",))
        try:
            clients = [HubClient(f"http://127.0.0.1:{hub.port}", t, timeout_ms=60_000) for t in tokens]
            for n, c in enumerate(clients):  # each user pushes a few changes: an active user, a store of its own
                assert c.apply_changes([one_change(f"user{n}", f"o{n}", s) for s in (1, 2, 3)])["applied"] == 3
            few = timed_epochs(clients[:args.few], args.calls)
            many = timed_epochs(clients, args.calls)
            for c in clients:
                c.close()
        finally:
            hub.stop()
    rows = []
    for p in (50, 99):
        ratio = pct(many, p) / pct(few, p)
        row = {"metric": f"epoch p{p}, {args.users} active users / {args.few} ({size_mb:.0f} MB hub file)",
               "ours": pct(many, p), "baseline": pct(few, p), "ratio": ratio}
        if p == 50:
            row.update(target="<= 2", ok=ratio <= 2)
        rows.append(row)
    record("many-users", rows)


if __name__ == "__main__":
    main()
