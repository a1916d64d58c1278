"""A hub server process raises its open-file limit toward the hard limit at start, as far as its
connection limit needs, and says in one line when it cannot get that far (what to set)."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from tests.procs import started

RESERVED = 96  # the store's own files (server/hub/front.py RESERVED_FILES)


def soft_limit(pid: int) -> int:
    """The process's soft limit on open files, as the kernel has it."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


def hub(tmp_path: Path, soft: int, hard: int, connections: int):
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < hard:
        pytest.skip(f"this process may not give a child a hard limit of {hard} open files")
    return started(tmp_path, "hub", {"DB_CONNECTOR": "sql", "SQLITE_PATH": str(tmp_path / "hub.sqlite3"),
                                     "HUB_MAX_CONNECTIONS": str(connections)}, args=("--hub",), files=(soft, hard))


def test_a_hub_raises_its_soft_limit_to_what_its_connections_need(tmp_path):
    server = hub(tmp_path, 256, 2_048, 1_000)
    try:
        assert server.proc is not None
        assert soft_limit(server.proc.pid) == 2_048  # up to the hard limit: more than 1,096 is no harm
        assert server.request("GET", "/api/v1/health")[0] == 200
        assert "open-file limit" not in server.log_path.read_text()
    finally:
        server.stop()


def test_a_hub_short_of_files_says_what_to_set(tmp_path):
    server = hub(tmp_path, 256, 512, 1_000)
    try:
        assert server.proc is not None
        assert soft_limit(server.proc.pid) == 512  # raised as far as it may go
        assert server.request("GET", "/api/v1/health")[0] == 200  # and it serves all the same
        lines = [line for line in server.log_path.read_text().splitlines() if "open-file limit" in line]
        assert len(lines) == 1, lines
        needed = 1_000 + RESERVED
        for said in ("WARNING", "open-file limit 512", f"holds {512 - RESERVED} connections",
                     "HUB_MAX_CONNECTIONS=1000", f"ulimit -n {needed}", f"LimitNOFILE={needed}"):
            assert said in lines[0], (said, lines[0])
    finally:
        server.stop()
