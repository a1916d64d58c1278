"""Many devices waiting at one hub process, measured in one run on loopback through a hub
server on SQLite (bench_live.py measures an edit's way from one device to another):

    python bench/bench_waiters.py [--waiters 1000] [--probes 50] [--requests 2000]

1. One hub process holding --waiters waiting devices (one user each, raw sockets held open by
   this script): how long until all are parked, its RSS and CPU while idle, the p99 of a push
   meanwhile, and the p99 from a push until the waiting device of that user has its answer.
2. The device server's GET /api/v1/courses p99 with its live wait open, against SYNC_LIVE=0."""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import select
import socket
import tempfile
import time
import urllib.request
from pathlib import Path

from common import pct, record

from server.connectors.factory import get_db_connector, registry_for
from server.core.config import Settings
from server.sync.http_hub import HubClient
from tests.procs import started


def hub_file(tmp: Path, users: list[str], devices: int = 1) -> tuple[Path, dict[str, list[str]]]:
    path = tmp / "hub.sqlite3"
    store = get_db_connector("sql", Settings(), path=str(path))
    store.connect()
    registry = registry_for(store)
    tokens = {u: [registry.add(u, f"d{n}")[1] for n in range(devices)] for u in users}
    store.close()
    return path, tokens


def wait_request(token: str, seconds: float = 60) -> bytes:
    body = json.dumps({"cursor": {}, "excludeOrigin": "bench", "seconds": seconds}).encode()
    return (f"POST /hub/v1/wait HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def readable(sock: socket.socket, timeout: float) -> bool:
    """Whether `sock` has something to read within `timeout` s (poll: select() cannot watch a
    descriptor past 1,024, which 2,000 waiters pass)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_change(user: str, origin: str, seq: int) -> dict:
    return {"origin": origin, "seq": seq, "hlc": f"{int(time.time() * 1000):015d}-000000-{origin}", "kind": "user",
            "id": user, "courseId": None, "op": "upsert", "fields": {"displayName": f"n{seq}"},
            "bases": {"displayName": ""}}


def read_answer(sock: socket.socket) -> bytes:
    """One whole HTTP answer: the head, then as many body bytes as its content-length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


SCRAPE = "bench-scrape-token-0123456789"


def waiting(hub) -> int:
    """The devices waiting at the hub, from its /metrics."""
    req = urllib.request.Request(f"http://127.0.0.1:{hub.port}/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read().decode()
    return int(float(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("coursesync_hub_waiting_devices "))))


def settled(pid: int, within: float = 90) -> float:
    """Seconds until the process uses under 5 % of a core over a whole second."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        before = cpu_seconds(pid)
        time.sleep(1)
        if cpu_seconds(pid) - before < 0.05:
            return time.monotonic() - start
    raise AssertionError(f"the hub is still busy after {within} s")


def many_waiters(tmp: Path, waiters: int, probes: int) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    users = [f"u{n}" for n in range(waiters)]
    path, tokens = hub_file(tmp, users, devices=2)
    hub = started(tmp, "hub", {"DB_CONNECTOR": "sql", "SQLITE_PATH": str(path), "LOG_LEVEL": "WARNING",
                               "HUB_METRICS_TOKEN": SCRAPE}, args=("--hub",))
    pid = hub.proc.pid
    rss_before = rss_mb(pid)
    socks: dict[str, socket.socket] = {}
    try:
        for user in users:
            s = socket.create_connection(("127.0.0.1", hub.port))
            s.sendall(wait_request(tokens[user][0]))
            socks[user] = s
        start = time.monotonic()
        while waiting(hub) < waiters:  # the kernel's short queue lets a crowd in over some seconds
            if time.monotonic() - start > 300:
                raise AssertionError(f"only {waiting(hub)} of {waiters} waits parked after 300 s")
            time.sleep(0.2)
        parked_in = time.monotonic() - start + settled(pid)  # every wait checked once and parked
        answered_early = [u for u, s in socks.items() if readable(s, 0)]
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(10)
        idle_cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        rss = rss_mb(pid)
        pushes, wakes, renewed = [], [], 0
        for n, user in enumerate(random.sample(users, probes)):
            if readable(socks[user], 0):  # its wait ran its 60 s out: wait again
                assert b'"changed":false' in read_answer(socks[user])
                socks[user].sendall(wait_request(tokens[user][0]))
                renewed += 1
                time.sleep(0.2)
            pusher = HubClient(f"http://127.0.0.1:{hub.port}", tokens[user][1], timeout_ms=10_000)
            pusher.hub_epoch()
            start = time.perf_counter()
            pusher.apply_changes([one_change(user, f"p{n}", 1)])
            pushes.append(time.perf_counter() - start)
            if readable(socks[user], 10):
                wakes.append(time.perf_counter() - start)
                answer = read_answer(socks[user])
                assert b'"changed":true' in answer, answer[:300]
            pusher.close()
        return {"waiters": waiters, "rss_before_mb": rss_before, "rss_mb": rss, "idle_cpu_share": idle_cpu,
                "parked_in_s": parked_in, "answered_before_news": len(answered_early), "renewed": renewed,
                "push_p50": pct(pushes, 50), "push_p99": pct(pushes, 99),
                "wake_p50": pct(wakes, 50), "wake_p99": pct(wakes, 99), "woken": len(wakes), "probes": probes}
    finally:
        for s in socks.values():
            s.close()
        hub.stop()


def api_while_waiting(tmp: Path, requests: int, live: bool) -> list[float]:
    path, tokens = hub_file(tmp, ["learner"])
    hub = started(tmp, "hub", {"DB_CONNECTOR": "sql", "SQLITE_PATH": str(path), "LOG_LEVEL": "WARNING"},
                  args=("--hub",))
    device = started(tmp, "device", {"HUB_URL": f"http://127.0.0.1:{hub.port}", "HUB_TOKEN": tokens["learner"][0],
                                     "USER_ID": "learner", "LOG_LEVEL": "WARNING", "SYNC_INTERVAL_SECONDS": "3600",
                                     "SYNC_LIVE": "1" if live else "0"})
    try:
        time.sleep(2)
        state = device.request("GET", "/api/v1/sync/status")[1]["data"]["live"]["state"]
        assert state == ("waiting" if live else "off"), state
        samples = []
        for _ in range(requests):
            start = time.perf_counter()
            assert device.request("GET", "/api/v1/courses")[0] == 200
            samples.append(time.perf_counter() - start)
        return samples
    finally:
        device.stop()
        hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as a:
        crowd = many_waiters(Path(a), args.waiters, args.probes)
    rows.append({"metric": f"hub RSS with {args.waiters} waiting devices (MB)", "ours": crowd["rss_mb"], "unit": "MB",
                 "baseline": crowd["rss_before_mb"], "ratio": crowd["rss_mb"] / crowd["rss_before_mb"],
                 "target": "<150 MB", "ok": crowd["rss_mb"] < 150})
    rows.append({"metric": "hub CPU while they wait (share of a core)", "ours": crowd["idle_cpu_share"],
                 "unit": "share", "target": "<0.02", "ok": crowd["idle_cpu_share"] < 0.02,
                 "answered_before_news": crowd["answered_before_news"], "parked_in_s": crowd["parked_in_s"]})
    rows.append({"metric": "push p99 with them waiting (s)", "ours": crowd["push_p99"], "p50": crowd["push_p50"]})
    rows.append({"metric": "push -> that user's waiting device answered, p99 (s)", "ours": crowd["wake_p99"],
                 "p50": crowd["wake_p50"], "woken": crowd["woken"], "probes": crowd["probes"]})
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        waiting = api_while_waiting(Path(a), args.requests, True)
        quiet = api_while_waiting(Path(b), args.requests, False)
    for p in (50, 99):
        rows.append({"metric": f"device GET /api/v1/courses p{p}, live wait open vs off (s)",
                     "ours": pct(waiting, p), "baseline": pct(quiet, p), "ratio": pct(waiting, p) / pct(quiet, p)})
    record("live-waiters", rows)


if __name__ == "__main__":
    main()
