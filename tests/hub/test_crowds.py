"""Crowds and bombs against real server processes started with a low limit on open files (as
`ulimit -n` sets): thousands of idle and trickling connections, 200 users syncing at once, bodies
far over the limit, and small gzip bodies that inflate to a lot. The process must live, keep
its files bounded, and serve real requests when the crowd goes."""

from __future__ import annotations

import gzip
import json
import os
import resource
import socket
import threading
import time
from pathlib import Path

import pytest

from server.connectors.factory import get_db_connector, registry_for
from server.core.config import Settings
from server.core.records import validate
from server.sync.http_hub import HubClient
from tests.e2e.test_e2e_devices import create, wait_for
from tests.procs import ServerProcess, peak_rss_mb, raw_gzip_push

FILES = 400  # the processes' limit on open files, soft and hard: they cannot raise it


@pytest.fixture(autouse=True)
def our_files():
    """This test process opens thousands of sockets: its own soft limit goes up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 20_000) if hard != resource.RLIM_INFINITY else 20_000
    if want < 4_000:
        pytest.fail(f"this machine allows only {hard} open files per process; the crowd tests need 4,000")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def started(tmp_path: Path, name: str, *args: str, files: int = FILES, **env: str) -> ServerProcess:
    srv = ServerProcess(tmp_path, name, args=args, files=files, TMPDIR=str(spool_dir(tmp_path, name)), **env)
    return srv.start()


def spool_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}-tmp"
    path.mkdir(exist_ok=True)
    return path


def open_files(srv: ServerProcess) -> int:
    return len(os.listdir(f"/proc/{srv.proc.pid}/fd"))


def crowd(port: int, idle: int, trickling: int) -> list[socket.socket]:
    """`idle` connections that send nothing and `trickling` ones that send a request's first
    bytes; none of them finishes a request."""
    socks = []
    for n in range(idle + trickling):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    time.sleep(1.0)
    for s in socks[idle:]:
        try:
            s.send(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        except OSError:
            pass  # still in the listener's backlog: it trickles nothing yet
    return socks


def trickle(socks: list[socket.socket], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for s in socks:
            try:
                s.send(b"X")
            except OSError:
                pass
        time.sleep(0.5)


def disperse(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def healthy(srv: ServerProcess) -> bool:
    try:
        return srv.request("GET", "/api/v1/health", timeout=5)[0] == 200
    except OSError:
        return False


def test_a_device_server_lives_through_thousands_of_idle_and_trickling_connections(tmp_path):
    device = started(tmp_path, "device")
    try:
        create(device, "/api/v1/courses", {"title": "Before", "source": "https://a.b"})
        socks = crowd(device.port, idle=2_500, trickling=500)
        trickle(socks[2_500:], 3)
        assert device.proc.poll() is None, device.log_path.read_text()[-2000:]
        assert open_files(device) < FILES
        disperse(socks)
        wait_for(lambda: healthy(device), 120, "health after the crowd")
        create(device, "/api/v1/courses", {"title": "After", "source": "https://a.b"})
        assert "out of range" not in device.log_path.read_text()
    finally:
        device.stop()


def hub_with_users(tmp_path: Path, users: int) -> tuple[Path, list[tuple[str, str]]]:
    """A hub store file with a token for each of `users` users: [(user, token)]."""
    path = tmp_path / "hub.sqlite3"
    store = get_db_connector("sql", Settings(), path=str(path))
    store.connect()
    registry = registry_for(store)
    tokens = [(f"user{n}", registry.add(f"user{n}", "crowd")[1]) for n in range(users)]
    store.close()
    return path, tokens


def one_change(tmp_path: Path, user: str) -> list[dict]:
    store = get_db_connector("sql", Settings(), path=str(tmp_path / "devices" / f"{user}.sqlite3"), user_id=user)
    store.connect()
    store.create("course", None, validate("course", {"title": f"{user}'s", "source": "https://a.b"}, "create"))
    changes = store.changes_since({}, 10)
    store.close()
    return changes


def test_200_users_syncing_at_once_keep_the_hubs_open_files_bounded(tmp_path):
    (tmp_path / "devices").mkdir()
    path, tokens = hub_with_users(tmp_path, 200)
    pushes = {user: one_change(tmp_path, user) for user, _ in tokens}
    hub = started(tmp_path, "hub", "--hub", DB_CONNECTOR="sql", SQLITE_PATH=str(path))
    errors: list[str] = []
    try:
        def sync(user: str, token: str) -> None:
            client = HubClient(f"http://127.0.0.1:{hub.port}", token, timeout_ms=60_000)
            try:
                client.hub_epoch()
                for _ in range(2):  # the second push is recognised, not stored twice
                    assert client.apply_changes(pushes[user])["received"] == 1
                assert len(client.changes_since({}, 10)) == 1
            except Exception as exc:  # noqa: BLE001 - every failure is reported below
                errors.append(f"{user}: {exc}")
            finally:
                client.close()

        threads = [threading.Thread(target=sync, args=pair) for pair in tokens]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert errors == []
        assert hub.proc.poll() is None
        # One connection per server thread for all the users (each with its WAL files), not
        # one per user and thread.
        assert open_files(hub) < 100, open_files(hub)
    finally:
        hub.stop()


def test_a_hub_lives_through_a_crowd_with_no_token_after_users_synced(tmp_path):
    (tmp_path / "devices").mkdir()
    path, tokens = hub_with_users(tmp_path, 8)
    # Room for descriptors past 1,024, which select() cannot watch.
    hub = started(tmp_path, "hub", "--hub", files=2_048, DB_CONNECTOR="sql", SQLITE_PATH=str(path))
    try:
        for user, token in tokens:
            client = HubClient(f"http://127.0.0.1:{hub.port}", token, timeout_ms=10_000)
            client.apply_changes(one_change(tmp_path, user))
            client.close()
        socks = crowd(hub.port, idle=2_500, trickling=500)
        trickle(socks[2_500:], 3)
        assert hub.proc.poll() is None, hub.log_path.read_text()[-2000:]
        disperse(socks)
        wait_for(lambda: healthy(hub), 120, "health after the crowd")
        user, token = tokens[0]
        client = HubClient(f"http://127.0.0.1:{hub.port}", token, timeout_ms=10_000)
        assert len(client.changes_since({}, 10)) == 1
        client.close()
    finally:
        hub.stop()


def declare_huge_body(port: int, path: str, headers: str) -> tuple[bytes, int]:
    """Send headers declaring a 900 MiB body and 256 KiB of it; (the answer, bytes sent)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {900 * 1024 * 1024}\r\n{headers}\r\n"
              .encode())
    sent = 0
    try:
        for _ in range(4):
            s.sendall(b"x" * 65_536)
            sent += 65_536
    except OSError:
        pass  # the server answered and closed: the rest was never read
    answer = b""
    try:
        while chunk := s.recv(65_536):
            answer += chunk
    except OSError:
        pass
    s.close()
    return answer, sent


def spooled_bytes(tmp_path: Path, name: str) -> int:
    return sum(f.stat().st_size for f in spool_dir(tmp_path, name).rglob("*") if f.is_file())


@pytest.mark.parametrize("role, path, headers, limit", [
    ("device", "/api/v1/courses", "Content-Type: text/plain\r\n", "1 MiB"),
    ("hub", "/hub/v1/push", "Content-Type: application/json\r\n", "8 MiB"),  # and no token
])
def test_a_body_over_the_limit_is_refused_from_its_length_before_it_is_read(tmp_path, role, path, headers, limit):
    args = ("--hub",) if role == "hub" else ()
    env = {"DB_CONNECTOR": "sql", "SQLITE_PATH": str(tmp_path / "hub.sqlite3")} if role == "hub" else {}
    srv = started(tmp_path, role, *args, **env)
    try:
        answer, _ = declare_huge_body(srv.port, path, headers)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), answer[:300]
        err = json.loads(body)["error"]
        assert err == {"code": "payload_too_large", "message": f"The body is larger than {limit}."}
        assert spooled_bytes(tmp_path, role) < 1024 * 1024
        assert healthy(srv)
    finally:
        srv.stop()


def bomb(inflated_mb: int) -> bytes:
    """gzip of a JSON object whose one unknown key holds `inflated_mb` MB of empty arrays."""
    inner = b"[]," * (inflated_mb * 1024 * 1024 // 3)
    return gzip.compress(b'{"x":[' + inner + b'[]]}', compresslevel=9)


def test_gzip_bombs_cost_the_hub_little_and_leave_other_users_served(tmp_path):
    (tmp_path / "devices").mkdir()
    path, tokens = hub_with_users(tmp_path, 9)
    hub = started(tmp_path, "hub", "--hub", DB_CONNECTOR="sql", SQLITE_PATH=str(path))
    try:
        big, small = bomb(63), bomb(7)  # past the inflated limit, and just under it
        assert len(big) < 100_000
        answers: list[tuple[int, str]] = []

        def send(token: str, body: bytes) -> None:
            status, rest = raw_gzip_push(hub.port, token, body)
            answers.append((status, json.loads(rest)["error"]["message"]))

        threads = [threading.Thread(target=send, args=(tokens[n][1], big if n % 2 else small)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(answers) == 8 and {status for status, _ in answers} == {400}, answers
        assert {m for _, m in answers} == {"The body inflates to more than 8388608 bytes.",
                                           f"The body holds more than {100 * 2000} JSON values."}
        user, token = tokens[8]
        client = HubClient(f"http://127.0.0.1:{hub.port}", token, timeout_ms=10_000)
        assert client.apply_changes(one_change(tmp_path, user))["applied"] == 1
        client.close()
        assert peak_rss_mb(hub.proc.pid) < 300, f"peak RSS {peak_rss_mb(hub.proc.pid):.0f} MB"
    finally:
        hub.stop()


def test_an_origin_flood_stops_at_the_quota_and_the_users_other_device_syncs_on(tmp_path):
    (tmp_path / "devices").mkdir()
    path, tokens = hub_with_users(tmp_path, 1)
    store = get_db_connector("sql", Settings(), path=str(path))
    store.connect()
    flooder_token = registry_for(store).add("user0", "flooder")[1]
    store.close()
    hub = started(tmp_path, "hub", "--hub", DB_CONNECTOR="sql", SQLITE_PATH=str(path))
    try:
        flooder = HubClient(f"http://127.0.0.1:{hub.port}", flooder_token, timeout_ms=10_000)
        template = one_change(tmp_path, "user0")[0]
        taken, refused = 0, None
        for n in range(40):
            origin = f"flood{n}"
            change = {**template, "origin": origin, "seq": 1, "hlc": template["hlc"].rsplit("-", 1)[0] + f"-{origin}"}
            try:
                taken += flooder.apply_changes([change])["applied"]
            except Exception as exc:  # noqa: BLE001 - the quota's answer
                refused = str(exc)
                break
        assert taken == 16 and refused and "the hub allows 16 (HUB_MAX_ORIGINS)" in refused
        victim = HubClient(f"http://127.0.0.1:{hub.port}", tokens[0][1], timeout_ms=10_000)
        (tmp_path / "victim" / "devices").mkdir(parents=True)
        assert victim.apply_changes(one_change(tmp_path / "victim", "user0"))["applied"] == 1
        assert len(victim.changes_since({}, 100)) == 17
        flooder.close()
        victim.close()
    finally:
        hub.stop()
