"""Helpers to run `python -m server` as a real process and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def linked_venv(clone: Path) -> None:
    """What `make install-dev` would build, without building it: a .venv whose files are links to
    the suite's own, but whose make markers are the clone's, newer than its requirements files (so
    make installs nothing, and the shared .venv is not written to)."""
    shared = ROOT / ".venv"
    (clone / ".venv" / "bin").mkdir(parents=True)
    for entry in shared.iterdir():
        if entry.name != "bin":
            (clone / ".venv" / entry.name).symlink_to(entry)
    for entry in (shared / "bin").iterdir():
        if not entry.name.startswith(".installed"):
            (clone / ".venv" / "bin" / entry.name).symlink_to(entry)
    (clone / ".venv" / "bin" / ".installed").touch()
    (clone / ".venv" / "bin" / ".installed-dev").touch()


def stop_process(proc: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def started(tmp_path: Path, name: str, settings: dict[str, str], **kw) -> "ServerProcess":
    """A server process with exactly these settings (over whatever the environment has), started."""
    srv = ServerProcess(tmp_path, name, **kw, **settings)
    srv.env.update(settings)
    return srv.start()


class ServerProcess:
    def __init__(self, tmp_path: Path, name: str = "device", *, args: tuple[str, ...] = (),
                 files: int | tuple[int, int] | None = None, **env: str):
        self.args = args  # ("--hub",) for a hub server
        self.files = files  # a limit on open files (soft and hard, or the pair), as `ulimit -n` sets
        self.port = free_port()
        self.log_path = tmp_path / f"{name}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("MONGO_URI", "DB_CONNECTOR")},
            "PORT": str(self.port), "SQLITE_PATH": str(tmp_path / f"{name}.sqlite3"),
            "LOG_LEVEL": "INFO", **env,
        }
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "ServerProcess":
        self._log = open(self.log_path, "ab")
        limit = self.files

        def limit_files() -> None:
            if limit:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit) if isinstance(limit, int) else limit)

        first, tries = self.proc is None, 5
        self.proc = subprocess.Popen([sys.executable, "-m", "server", *self.args], cwd=ROOT, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=limit_files)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                # free_port() closes the port it found before the server binds it, and another
                # process (a parallel test's) can take it between: a first start moves to another.
                if first and tries and self.proc.returncode == 3 and "--port" not in self.args \
                        and "Address already in use" in self.log_path.read_text()[-2000:]:
                    tries -= 1
                    self.port = free_port()
                    self.env["PORT"] = str(self.port)
                    self.proc = subprocess.Popen([sys.executable, "-m", "server", *self.args], cwd=ROOT,
                                                 env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                                 preexec_fn=limit_files)
                    continue
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if self.request("GET", "/api/v1/health")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server did not answer: {self.log_path.read_text()[-2000:]}")

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                timeout: float = 30.0) -> tuple[int, dict, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null"), resp.headers
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null"), err.headers

    def round(self, deadline: float = 300.0) -> tuple[int, dict]:
        """A round of the test's own (POST /api/v1/sync): (status, body). The device's own rounds
        (the one at start-up, a push after a write, a live wake) may hold the round lock longer
        than the route waits on a slow machine: the route then answers 409 `sync_running`, and
        this asks again until `deadline` seconds have gone."""
        give_up = time.monotonic() + deadline
        while True:
            status, body, _ = self.request("POST", "/api/v1/sync", {}, timeout=deadline)
            busy = status == 409 and (body or {}).get("error", {}).get("code") == "sync_running"
            if not busy or time.monotonic() > give_up:
                return status, body

    def sync(self, deadline: float = 300.0) -> dict:
        """A round of the test's own (see `round`); its report, which must be a success."""
        status, body = self.round(deadline)
        assert status == 200, body
        return body["data"]

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)
        if getattr(self, "_log", None):
            self._log.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def raw_gzip_push(port: int, token: str, body: bytes, call: str = "push") -> tuple[int, bytes]:
    """POST an already gzip-compressed body to a hub's /push (or another `call`) over a bare
    socket (no client that could refuse to send it): (status, the answer's body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    s.sendall(f"POST /hub/v1/{call} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
              f"Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
              f"Connection: close\r\n\r\n".encode() + body)
    raw = b""
    while chunk := s.recv(65_536):
        raw += chunk
    s.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")
