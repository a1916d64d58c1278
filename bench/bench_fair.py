"""What one hostile user costs another at a hub server, in one run (issue 36):

    python bench/bench_fair.py [--seconds 20] [--sockets 10000] [--only MIX,...]

A hub server on SQLite (its own process, loopback). A legitimate user's device A pushes five
changes, device B pulls the last hundred, and A pushes one change while B holds a wait (the live
edit: from A's push until B's wait answers), over and over: first alone, then beside each
hostile mix, each on a fresh hub:
- silent: --sockets sockets that connect and send nothing, with no token;
- slow bodies: 48 strangers declaring 2 MiB bodies and sending a byte a second, no token;
- parse bomb: 372 bytes of gzip (200,001 commas, then an unclosed string of 24,000 escaped
  quotes), sent back to back by four clients with a valid token;
- one device's large pushes: four 7.5 MB pushes at once from one device, again and again;
- eight devices' large pushes: the same from eight devices of one user (32 at once);
- waits flood: 300 devices of one user each asking to wait while there is always news.
Each mix runs on a fresh hub: the legitimate calls alone first (--seconds / 2), then beside the
mix (--seconds). Reported per mix and call: the p99 beside the mix and alone on that hub, their
ratio, and the p50s. Target: one user, however hostile, moves another user's p99 by less than 2x."""

from __future__ import annotations

import argparse
import base64
import gzip
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import pct, record

from server.connectors.factory import get_db_connector, registry_for
from server.core.config import Settings
from server.sync.http_hub import HubClient
from tests.procs import ServerProcess, started

SLOW_BODIES = 48
HOSTILE_DEVICES = 300  # the waits flood; the first eight also push


def hub_file(tmp: Path) -> tuple[Path, dict[str, list[str]]]:
    path = tmp / "hub.sqlite3"
    store = get_db_connector("sql", Settings(), path=str(path))
    store.connect()
    registry = registry_for(store)
    tokens = {"learner": [registry.add("learner", "a")[1], registry.add("learner", "b")[1]],
              "mallory": [registry.add("mallory", f"m{n}")[1] for n in range(HOSTILE_DEVICES)]}
    store.close()
    return path, tokens


def change(origin: str, seq: int, notes: str = "") -> dict:
    fields = {"title": f"{origin} {seq}", "source": "https://a.b", "notes": notes, "status": "active",
              "createdAt": "2030-01-01T00:00:00.000Z", "updatedAt": "2030-01-01T00:00:00.000Z"}
    return {"origin": origin, "seq": seq, "hlc": f"{int(time.time() * 1000):015d}-{seq:06d}-{origin}",
            "kind": "course", "id": f"{origin}-{seq}", "courseId": None, "op": "upsert", "fields": fields,
            "bases": {name: "" for name in fields}}


def big_push(origin: str) -> bytes:
    """A valid push of about 7.5 MB inflated (2,000 changes with 3.6 KB of notes each), gzip."""
    changes = [change(origin, seq, base64.b64encode(os.urandom(2_700)).decode()) for seq in range(1, 2001)]
    return gzip.compress(json.dumps({"changes": changes}).encode(), 1)


class Legit:
    """The legitimate user's two devices and their timed calls."""

    def __init__(self, port: int, tokens: list[str]):
        url = f"http://127.0.0.1:{port}"
        self.a, self.b = (HubClient(url, t, timeout_ms=40_000) for t in tokens)
        self.waiter = HubClient(url, tokens[1], timeout_ms=40_000)
        for c in (self.a, self.b, self.waiter):
            c.hub_epoch()
        self.seq = 0
        self.samples: dict[str, list[float]] = {"push": [], "pull": [], "live edit": []}

    def push(self, n: int) -> None:
        self.a.apply_changes([change("legit-a", self.seq + k + 1) for k in range(n)])
        self.seq += n

    def round(self) -> None:
        start = time.perf_counter()
        self.push(5)
        self.samples["push"].append(time.perf_counter() - start)
        start = time.perf_counter()
        self.b.changes_since({"legit-a": max(0, self.seq - 100)}, 500)
        self.samples["pull"].append(time.perf_counter() - start)
        woken: list = []
        waiting = threading.Thread(target=lambda: woken.append(
            self.waiter.wait({"legit-a": self.seq}, exclude_origin="legit-b", seconds=30)))
        waiting.start()
        time.sleep(0.02)  # parked at the hub
        start = time.perf_counter()
        self.push(1)
        waiting.join(60)
        self.samples["live edit"].append(time.perf_counter() - start)

    def run(self, seconds: float) -> dict[str, list[float]]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.round()
        return self.samples

    def close(self) -> None:
        for c in (self.a, self.b, self.waiter):
            c.close()


def post_forever(port: int, token: str | None, body: bytes, stop: threading.Event, gzipped: bool = True) -> None:
    headers = {"Content-Type": "application/json", **({"Content-Encoding": "gzip"} if gzipped else {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    while not stop.is_set():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while not stop.is_set():
                conn.request("POST", "/hub/v1/push", body, headers)
                conn.getresponse().read()
        except OSError:
            time.sleep(0.1)
        finally:
            conn.close()


def silent(port: int, n: int, stop: threading.Event) -> None:
    """n sockets that connect and say nothing; each one the hub closes is opened again."""
    socks: list[socket.socket] = []
    while not stop.is_set():
        socks = [s for s in socks if not _closed(s)]
        while len(socks) < n and not stop.is_set():
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        stop.wait(1)
    for s in socks:
        s.close()


def _closed(s: socket.socket) -> bool:
    try:
        if s.recv(1, socket.MSG_DONTWAIT) == b"":
            s.close()
            return True
        return False
    except BlockingIOError:
        return False
    except OSError:
        s.close()
        return True


def slow_body(port: int, stop: threading.Event) -> None:
    """A stranger sending a large body a byte a second, and on (answered or not) until the hub
    closes the connection; then again."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"POST /hub/v1/push HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 2097152\r\n\r\n{")
                while not stop.wait(1):
                    s.sendall(b" ")
        except OSError:
            pass


def wait_flood(port: int, token: str, stop: threading.Event) -> None:
    waiter = HubClient(f"http://127.0.0.1:{port}", token, timeout_ms=40_000)
    try:
        waiter.hub_epoch()
        while not stop.is_set():
            waiter.wait({}, exclude_origin="nobody", seconds=30)  # there is always news: answered at once
    except Exception:  # noqa: BLE001 - the hub stopping ends the flood
        pass
    finally:
        waiter.close()


def hostile(mix: str, port: int, tokens: list[str], args, stop: threading.Event) -> list[threading.Thread]:
    if mix == "silent":
        jobs = [(silent, (port, args.sockets, stop))]
    elif mix == "slow bodies":
        jobs = [(slow_body, (port, stop))] * SLOW_BODIES
    elif mix == "parse bomb":
        bomb = gzip.compress(b"," * 200_001 + b'"' + b'\\"' * 24_000, 9)
        jobs = [(post_forever, (port, tokens[0], bomb, stop))] * 4
    elif mix in ("one device's large pushes", "eight devices' large pushes"):
        devices = 1 if mix.startswith("one") else 8
        bodies = {d: big_push(f"m{d}") for d in range(devices)}
        jobs = [(post_forever, (port, tokens[d], bodies[d], stop)) for d in range(devices) for _ in range(4)]
    else:
        jobs = [(wait_flood, (port, token, stop)) for token in tokens[1:]]
    threads = [threading.Thread(target=fn, args=a, daemon=True) for fn, a in jobs]
    for t in threads:
        t.start()
    return threads


MIXES = ("silent", "slow bodies", "parse bomb", "one device's large pushes", "eight devices' large pushes",
         "waits flood")


def run_mix(mix: str, args) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """The legitimate calls alone, then beside the mix, on one fresh hub: (alone, beside). The
    mix runs in a process of its own, so that it costs the legitimate client nothing here."""
    with tempfile.TemporaryDirectory() as tmp:
        path, tokens = hub_file(Path(tmp))
        hub: ServerProcess = started(Path(tmp), "hub", {"DB_CONNECTOR": "sql", "SQLITE_PATH": str(path),
                                                        "LOG_LEVEL": "WARNING"}, args=("--hub",))
        mixer = None
        try:
            legit = Legit(hub.port, tokens["learner"])
            legit.push(200)  # something to pull
            alone = {k: list(v) for k, v in legit.run(args.seconds / 2).items()}
            legit.samples = {k: [] for k in legit.samples}
            mixer = subprocess.Popen([sys.executable, __file__, "--mix", mix, "--port", str(hub.port),
                                      "--sockets", str(args.sockets)], stdin=subprocess.PIPE, text=True)
            mixer.stdin.write(json.dumps(tokens["mallory"]))
            mixer.stdin.close()
            time.sleep(5)  # the mix under way
            beside = legit.run(args.seconds)
            legit.close()
            return alone, beside
        finally:
            if mixer is not None:
                mixer.terminate()
                mixer.wait(30)
            hub.stop()


def run_hostile(mix: str, port: int, sockets: int) -> None:
    """The child process: the mix against the hub at `port`, until terminated."""
    tokens = json.loads(sys.stdin.read())
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = hostile(mix, port, tokens, argparse.Namespace(sockets=sockets), stop)
    while not stop.wait(0.5):
        pass
    for t in threads:
        t.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--only", default="", help="comma-separated mixes")
    parser.add_argument("--mix", help=argparse.SUPPRESS)  # the child process that runs one mix
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mix:
        return run_hostile(args.mix, args.port, args.sockets)
    mixes = [m for m in MIXES if not args.only or m in args.only.split(",")]
    rows = []
    for mix in mixes:
        print(f"  {mix} ...", file=sys.stderr, flush=True)
        alone, beside = run_mix(mix, args)
        for call in beside:
            b99, a99 = pct(beside[call], 99), pct(alone[call], 99)
            rows.append({"metric": f"{call}, {mix}: p99", "ours": b99, "baseline": a99, "ratio": b99 / a99,
                         "target": "< 2", "ok": b99 / a99 < 2, "p50": pct(beside[call], 50),
                         "p50_alone": pct(alone[call], 50), "n": len(beside[call]), "n_alone": len(alone[call])})
    record("fair-shares", rows)


if __name__ == "__main__":
    main()
