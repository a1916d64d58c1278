"""The wire tier's hub: the MONGO_URI the run was given, or a mongoeco wire server started here
as its own process (its own virtual environment, Python 3.13, its own data file)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pymongo

from tests.procs import ROOT, free_port, stop_process

SERVER_SCRIPT = Path(__file__).with_name("hub_server.py")
DEFAULT_PYTHON = ROOT / ".wirehub" / "bin" / "python"


def wire_python() -> Path | None:
    given = os.environ.get("WIRE_HUB_PYTHON")
    candidate = Path(given) if given else DEFAULT_PYTHON
    return candidate if candidate.exists() else None


def unavailable_reason() -> str | None:
    if os.environ.get("MONGO_URI") or wire_python():
        return None
    return ("the wire tier needs MONGO_URI (a real MongoDB) or the mongoeco wire server's "
            f"virtual environment at {DEFAULT_PYTHON} (make wirehub)")


class WireHub:
    """A hub server process on a loopback port, stopped by PID."""

    def __init__(self, data_dir: Path):
        self.data_file = data_dir / "hub.sqlite3"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir / "hub.log"

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 120.0) -> "WireHub":
        python = wire_python()
        assert python, unavailable_reason()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(python), str(SERVER_SCRIPT), str(self.data_file), str(self.port)],
                                     stdout=subprocess.PIPE, stderr=log)
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("listening"):
            raise RuntimeError(f"hub server did not start: {line!r} {self.log_path.read_text()[-1500:]}")
        client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=1000)
        while True:
            try:
                client.admin.command("ping")
                break
            except pymongo.errors.PyMongoError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        client.close()
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)
        self.proc = None
