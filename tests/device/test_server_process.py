"""`python -m server` as a user starts it: waitress on loopback, over real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.connectors.test_seed import pwa_seed_path
from tests.procs import ROOT, ServerProcess


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path)
    seeded = subprocess.run([sys.executable, "seed.py", str(pwa_seed_path())], cwd=ROOT,
                            env=srv.env, capture_output=True, text=True)
    assert seeded.returncode == 0, seeded.stderr
    srv.start()
    yield srv
    srv.stop()


def test_the_pwa_flows_over_http_on_the_pwa_sample_data(server):
    status, body, headers = server.request("GET", "/api/v1/courses")
    assert status == 200 and len(body["data"]) == 3 and headers["X-Request-ID"] == body["meta"]["traceId"]
    status, body, _ = server.request("POST", "/api/v1/courses", {"title": "New", "source": "https://a.b"})
    assert status == 201
    cid = body["data"]["id"]
    status, body, _ = server.request("POST", f"/api/v1/courses/{cid}/lectures", {"title": "L", "order": 1})
    assert status == 400 and body["error"]["fields"]["videoUrl"] == "is required"
    status, body, _ = server.request("PATCH", "/api/v1/users/me/focus-course", {"courseId": cid})
    assert status == 200 and body["data"]["focusCourseId"] == cid
    assert server.request("DELETE", f"/api/v1/courses/{cid}")[0] == 200
    assert server.request("GET", "/api/v1/users/me")[1]["data"]["focusCourseId"] is None
    status, body, _ = server.request("GET", "/nowhere")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_cors_answers_only_the_allowed_origins(server):
    _, _, headers = server.request("OPTIONS", "/api/v1/courses", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"})
    assert headers.get("Access-Control-Allow-Origin") == "http://localhost:5173"
    _, _, headers = server.request("GET", "/api/v1/courses", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers


def test_a_foreign_host_header_is_refused(server):
    status, body, _ = server.request("GET", "/api/v1/courses", headers={"Host": "evil.example"})
    assert status == 400 and body["error"]["code"] == "invalid_host"


def test_each_request_logs_one_line_with_its_trace_id(server):
    _, body, _ = server.request("GET", "/api/v1/courses")
    server.stop()
    log = server.log_path.read_text()
    assert "GET /api/v1/courses 200" in log and body["meta"]["traceId"] in log


def test_a_busy_port_is_one_line_and_a_non_zero_exit_before_claiming_to_serve(tmp_path):
    srv = ServerProcess(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", srv.port))
        taken.listen()
        proc = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, env=srv.env, capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{srv.port}: Address already in use; another program holds that port: "
        "stop it, or set PORT to a free one (PORT=8010)"]
    assert "serving on" not in proc.stdout + proc.stderr


def test_serve_port_and_host_options_win_over_the_settings(tmp_path):
    """`coursesync serve --port P --host H` (here as python -m server, the same command): the
    server answers on P, whatever PORT says."""
    from tests.procs import free_port

    port = free_port()
    srv = ServerProcess(tmp_path, args=("--port", str(port), "--host", "127.0.0.1"))
    srv.env["PORT"] = "1"  # a port it must not try
    srv.port = port
    srv.start()
    try:
        assert srv.request("GET", "/api/v1/health")[0] == 200
    finally:
        srv.stop()
    bad = subprocess.run([sys.executable, "-m", "server", "--port", "http"], cwd=ROOT, env=srv.env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Invalid value for '--port'" in bad.stderr


def test_a_store_path_whose_folder_cannot_be_made_is_one_line_naming_it(tmp_path):
    (tmp_path / "notes.txt").write_text("a file where the store's folder would be")
    srv = ServerProcess(tmp_path, SQLITE_PATH=str(tmp_path / "notes.txt" / "courses.sqlite3"))
    proc = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, env=srv.env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot open the sql store: The SQLite store's folder {tmp_path / 'notes.txt'} cannot be made "
        f"({tmp_path / 'notes.txt'} is a file, not a folder): set SQLITE_PATH to a file in a folder this user may "
        f"write. (SQLITE_PATH={tmp_path / 'notes.txt' / 'courses.sqlite3'})"]


def test_a_store_path_that_is_a_folder_is_one_line_saying_what_to_do(tmp_path):
    (tmp_path / "store").mkdir()
    srv = ServerProcess(tmp_path, SQLITE_PATH=str(tmp_path / "store"))
    proc = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, env=srv.env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: cannot open the sql store: The SQLite store failed: the store file cannot be opened; make the file "
        "and its folder writable by this user, or set SQLITE_PATH to a file elsewhere. "
        f"(SQLITE_PATH={tmp_path / 'store'})"]


def sockets_of(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))


def test_hundreds_of_idle_and_trickling_connections_do_not_lock_out_a_request(server):
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    trickling = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    stop = threading.Event()

    def trickle():  # a request that never ends: one byte of its headers at a time
        for i in range(20):
            for s in trickling:
                try:
                    s.send(b"GET /api/v1/courses HTTP/1.1\r\nHost: localhost\r\nX-Slow: "[i:i + 1] or b"x")
                except OSError:
                    pass
            if stop.wait(0.25):
                return

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        deadline = time.monotonic() + 120
        while sockets_of(server.proc.pid) < 400 and time.monotonic() < deadline:
            time.sleep(0.05)  # until the server has taken every connection, so they all compete
        status, body, _ = server.request("GET", "/api/v1/courses", timeout=10)
        assert status == 200 and len(body["data"]) == 3
    finally:
        stop.set()
        sender.join()
        for s in idle + trickling:
            s.close()
