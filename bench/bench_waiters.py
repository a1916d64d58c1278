"""Many devices waiting at one hub process, measured in one run on loopback through a hub
server on SQLite (bench_live.py measures an edit's way from one device to another):

    python bench/bench_waiters.py [--waiters 1000] [--probes 50] [--requests 2000]

1. One hub process holding --waiters waiting devices (one user each, raw sockets held open by
   this script): how long until all are parked, its RSS and CPU while they wait (none at its
   end yet), its CPU while each wait is sent again when its time is up (as devices do: a wait
   lasts at most HUB_MAX_WAIT_SECONDS), the p99 of a push meanwhile, and the p99 from a push
   until the waiting device of that user has its answer.
2. The device server's GET /api/v1/courses p99 with its live wait open, against SYNC_LIVE=0."""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import select
import selectors
import socket
import tempfile
import threading
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


def wait_request(token: str, seconds: float = 60, cursor: dict | None = None) -> bytes:
    body = json.dumps({"cursor": cursor or {}, "excludeOrigin": "bench", "seconds": seconds}).encode()
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


class Crowd:
    """The waiting devices' sockets, each wait sent again once answered, as a device would: the
    hub answers a wait `changed: false` when its time is up (HUB_MAX_WAIT_SECONDS, 60)."""

    def __init__(self, tokens: dict[str, list[str]]):
        self.tokens, self.socks, self.renewed = tokens, {}, 0
        self.cursors: dict[str, dict] = {}  # past the probe's change, once a probe woke it
        self.selector = selectors.DefaultSelector()  # epoll: select() stops at 1,024 descriptors
        self.skip: str | None = None  # the user whose socket the probe reads itself
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._renewing, daemon=True)

    def _renewing(self) -> None:
        """Each wait sent again as soon as it is answered, all along (as devices do, spread over
        the waits' ends), while the probes run on the main thread."""
        while not self.stopped.is_set():
            answers = self.renew(0.5)
            assert all(b'"changed":false' in a for a in answers), [a[-300:] for a in answers]
            if not answers:
                time.sleep(0.001)  # only the probe's socket may be ready: it is the probe's to read

    def join(self, user: str, port: int) -> None:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(wait_request(self.tokens[user][0]))
        self.socks[user] = s
        self.selector.register(s, selectors.EVENT_READ, user)

    def renew(self, within: float = 0.0, but: str | None = None) -> list[bytes]:
        """Read the answers that came within `within` s and send those waits again; the answers."""
        answers = []
        for key, _ in self.selector.select(within):
            if key.data not in (but, self.skip):
                answers.append(read_answer(key.fileobj))
                key.fileobj.sendall(wait_request(self.tokens[key.data][0], cursor=self.cursors.get(key.data)))
                self.renewed += 1
        return answers

    def close(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
        self.selector.close()
        for s in self.socks.values():
            s.close()


def many_waiters(tmp: Path, waiters: int, probes: int) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    users = [f"u{n}" for n in range(waiters)]
    path, tokens = hub_file(tmp, users, devices=2)
    hub = started(tmp, "hub", {"DB_CONNECTOR": "sql", "SQLITE_PATH": str(path), "LOG_LEVEL": "WARNING",
                               "HUB_METRICS_TOKEN": SCRAPE}, args=("--hub",))
    pid = hub.proc.pid
    rss_before, crowd = rss_mb(pid), Crowd(tokens)
    try:
        first, cpu_first = time.monotonic(), cpu_seconds(pid)
        for user in users:
            crowd.join(user, hub.port)
        while waiting(hub) < waiters:  # the kernel's short queue lets a crowd in over some seconds
            if time.monotonic() - first > 300:
                raise AssertionError(f"only {waiting(hub)} of {waiters} waits parked after 300 s")
            time.sleep(0.2)
        parked_in, park_cpu = time.monotonic() - first, cpu_seconds(pid) - cpu_first
        answered_early = len(crowd.renew())
        # Quiet: every wait parked and none yet at its end (the first sent was parked after `first`).
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(max(0.0, min(10.0, first + 59 - t0)))
        quiet = time.monotonic() - t0
        idle_cpu = (cpu_seconds(pid) - cpu0) / quiet if quiet >= 2 else None
        rss = rss_mb(pid)
        # Then as devices do: each wait sent again once its time is up, over a whole wait's length.
        renewed0, cpu0, t0 = crowd.renewed, cpu_seconds(pid), time.monotonic()
        crowd.thread.start()
        time.sleep(60)
        renewing_cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        renewals = crowd.renewed - renewed0
        pushes, wakes = [], []  # the renewals go on meanwhile
        for n, user in enumerate(random.sample(users, probes)):
            crowd.skip = user
            time.sleep(0.05)  # the renewing thread has seen it: this socket is the probe's now
            if readable(crowd.socks[user], 0):  # its own wait ran its time out: wait again
                assert b'"changed":false' in read_answer(crowd.socks[user])
                crowd.socks[user].sendall(wait_request(tokens[user][0]))
                time.sleep(0.2)
            pusher = HubClient(f"http://127.0.0.1:{hub.port}", tokens[user][1], timeout_ms=10_000)
            pusher.hub_epoch()
            start = time.perf_counter()
            pusher.apply_changes([one_change(user, f"p{n}", 1)])
            pushes.append(time.perf_counter() - start)
            if readable(crowd.socks[user], 10):
                wakes.append(time.perf_counter() - start)
                answer = read_answer(crowd.socks[user])
                assert b'"changed":true' in answer, answer[:300]
                crowd.cursors[user] = {f"p{n}": 1}  # it has the change now: wait past it
                crowd.socks[user].sendall(wait_request(tokens[user][0], cursor=crowd.cursors[user]))
            pusher.close()
        return {"waiters": waiters, "rss_before_mb": rss_before, "rss_mb": rss, "idle_cpu_share": idle_cpu,
                "quiet_s": quiet, "parked_in_s": parked_in, "park_cpu_ms": park_cpu / waiters * 1000,
                "answered_before_news": answered_early, "renewing_cpu_share": renewing_cpu, "renewals": renewals,
                "still_waiting": waiting(hub), "push_p50": pct(pushes, 50), "push_p99": pct(pushes, 99),
                "wake_p50": pct(wakes, 50), "wake_p99": pct(wakes, 99), "woken": len(wakes), "probes": probes}
    finally:
        crowd.close()
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
    idle = crowd["idle_cpu_share"]
    rows.append({"metric": f"hub RSS with {args.waiters} waiting devices (MB)", "ours": crowd["rss_mb"], "unit": "MB",
                 "baseline": crowd["rss_before_mb"], "ratio": crowd["rss_mb"] / crowd["rss_before_mb"],
                 "target": "<300 MB", "ok": crowd["rss_mb"] < 300})
    rows.append({"metric": "hub CPU while they wait, none at its end (share of a core)", "ours": idle,
                 "unit": "share", "target": "<0.03", "ok": idle is not None and idle < 0.03,
                 "quiet_s": crowd["quiet_s"], "answered_before_news": crowd["answered_before_news"]})
    rows.append({"metric": "seconds until all were parked", "ours": crowd["parked_in_s"],
                 "hub_cpu_ms_per_wait": crowd["park_cpu_ms"]})
    rows.append({"metric": "hub CPU while each wait is sent again at its end (share of a core)",
                 "ours": crowd["renewing_cpu_share"], "unit": "share", "renewals_in_60s": crowd["renewals"]})
    rows.append({"metric": "push p99 with them waiting (s)", "ours": crowd["push_p99"], "p50": crowd["push_p50"],
                 "target": "<20 ms", "ok": crowd["push_p99"] < 0.020})
    rows.append({"metric": "push -> that user's waiting device answered, p99 (s)", "ours": crowd["wake_p99"],
                 "p50": crowd["wake_p50"], "woken": crowd["woken"], "probes": crowd["probes"],
                 "still_waiting": crowd["still_waiting"], "target": "<20 ms", "ok": crowd["wake_p99"] < 0.020})
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        waiting = api_while_waiting(Path(a), args.requests, True)
        quiet = api_while_waiting(Path(b), args.requests, False)
    for p in (50, 99):
        rows.append({"metric": f"device GET /api/v1/courses p{p}, live wait open vs off (s)",
                     "ours": pct(waiting, p), "baseline": pct(quiet, p), "ratio": pct(waiting, p) / pct(quiet, p)})
    record("live-waiters", rows)


if __name__ == "__main__":
    main()
