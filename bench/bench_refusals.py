"""What the worst refusals a device can send cost a hub server's store, over a long burst.

    python bench/bench_refusals.py [--seconds 600] [--devices 2]

A hub server on SQLite (its own process, loopback, the default quotas). Each of `--devices`
devices of one user sends, as fast as the hub answers, the worst refusals it can: pushes of one
change the door refuses, with an unknown key of 2 MB (2 KB gzipped), under a readable origin
(so that each refusal also takes a slot filler in the log) or none (so that each is a new
quarantine row); and heals of records with 200 unknown fields of 10 KB names. Reported: what
was sent and how the hub answered (429s once the refusals a minute are used up), the rows and
bytes its quarantine keeps, and how much the store grew (the SQLite file after a checkpoint).
The bound it must stay under: HUB_MAX_QUARANTINED_BYTES (the quarantine), plus 300 bytes a
slot filler (at most HUB_MAX_REFUSALS_PER_MINUTE of them a device a minute), plus 1 MiB of
pages. Figures go to bench/results.json ("refusals")."""

from __future__ import annotations

import argparse
import gzip
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import orjson
from common import record

from server.connectors.factory import get_db_connector, registry_for
from server.core.config import Settings
from tests.procs import ServerProcess, raw_gzip_push, started

USER = "learner"


def push_body(n: int, origin: str | None, seq: int) -> bytes:
    change = {"seq": seq, "hlc": "x", "kind": "user", "id": USER, f"{n}" + "k" * 2**21: 1,
              **({"origin": origin} if origin else {})}
    return gzip.compress(orjson.dumps({"changes": [change]}), 9)


def heal_body(n: int) -> bytes:
    record_ = {"kind": "course", "id": f"r{n}", "courseId": None, "fields": {f"{m}" + "f" * 10_000: 1
                                                                             for m in range(200)},
               "clocks": {}, "bases": {}, "deleted": False, "dclock": "", "dbase": ""}
    return gzip.compress(orjson.dumps({"records": [record_]}), 9)



def store_bytes(path: Path) -> int:
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    finally:
        conn.close()


def kept(path: Path) -> tuple[int, int, int]:
    """(quarantine rows, their bytes, slot fillers in the log)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        rows, size = conn.execute("SELECT COUNT(*), TOTAL(length(CAST(body AS BLOB))) FROM quarantine").fetchone()
        fillers = conn.execute("SELECT COUNT(*) FROM changes WHERE origin LIKE 'd-flood%'").fetchone()[0]
        return rows, int(size), fillers
    finally:
        conn.close()


def start_hub(tmp: Path, devices: int) -> tuple[ServerProcess, list[str], Path]:
    path = tmp / "hub.sqlite3"
    store = get_db_connector("sql", Settings(), path=str(path))
    store.connect()
    tokens = [registry_for(store).add(USER, f"device {n}")[1] for n in range(devices)]
    store.close()
    return started(tmp, "hub", {"DB_CONNECTOR": "sql", "SQLITE_PATH": str(path), "LOG_LEVEL": "WARNING"},
                   args=("--hub",)), tokens, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--devices", type=int, default=2)
    args = parser.parse_args()
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        hub, tokens, path = start_hub(Path(tmp), args.devices)
        try:
            before = store_bytes(path)
            stop = time.monotonic() + args.seconds
            answers: dict[str, int] = {}
            lock = threading.Lock()

            def flood(token: str, device: int) -> None:
                n, seq = device * 10**9, 0
                while time.monotonic() < stop:
                    n += 1
                    if n % 3 == 2:
                        what, status = "heal", raw_gzip_push(hub.port, token, heal_body(n), "heal")[0]
                    elif n % 3 == 0:  # its own origin, numbered on: each refusal takes a slot filler
                        seq += 1
                        what = "push (readable)"
                        status = raw_gzip_push(hub.port, token, push_body(n, f"d-flood{device}", seq))[0]
                        seq -= status != 200  # a refusal the hub did not take (429) is sent again
                    else:
                        what = "push (no origin)"
                        status = raw_gzip_push(hub.port, token, push_body(n, None, n))[0]
                    with lock:
                        answers[f"{what} {status}"] = answers.get(f"{what} {status}", 0) + 1

            threads = [threading.Thread(target=flood, args=(t, i)) for i, t in enumerate(tokens)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            grown = store_bytes(path) - before
            rows, size, fillers = kept(path)
            sent = sum(answers.values())
            bound = settings.hub_max_quarantined_bytes + 300 * fillers + 2**20
            results = [
                {"metric": "bodies sent (each a worst refusal, ~2 KB gzipped)", "ours": sent, "unit": "count",
                 "answers": answers, "seconds": args.seconds, "devices": args.devices},
                {"metric": "quarantine rows kept", "ours": rows, "unit": "count",
                 "target": f"<={settings.hub_max_quarantined}", "ok": rows <= settings.hub_max_quarantined},
                {"metric": "quarantine bytes kept", "ours": size, "unit": "bytes",
                 "target": f"<={settings.hub_max_quarantined_bytes}",
                 "ok": size <= settings.hub_max_quarantined_bytes},
                {"metric": "slot fillers logged", "ours": fillers, "unit": "count"},
                {"metric": "store growth (file after a checkpoint)", "ours": grown, "unit": "bytes",
                 "target": f"<{bound}", "ok": grown < bound},
            ]
        finally:
            hub.stop()
    record("refusals", results)
    print(f"  answers: {answers}")


if __name__ == "__main__":
    main()
