"""The package: pyproject.toml's runtime dependencies are what requirements.txt pins (and the test
and dev extras what requirements-dev.txt adds); installed into a fresh venv it brings the runtime
only, and its one command seeds a store from the sample data it carries and serves the API and
the sync page."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request

from tests.procs import ROOT, free_port, stop_process


def pinned(path) -> set[str]:
    names = set()
    for line in (ROOT / path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-r")):
            names.add(normal(line))
    return names


def normal(requirement: str) -> str:
    return re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_requirements_pin_what_the_package_names():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {normal(d) for d in project["dependencies"]}
    assert runtime == pinned("requirements.txt")
    tools = {normal(d) for extra in project["optional-dependencies"].values() for d in extra} - {"coursesync"}
    assert tools == pinned("requirements-dev.txt")
    assert not runtime & tools
    assert {"pytest", "ruff", "mutmut", "playwright", "schemathesis"} <= tools


def test_installed_into_a_fresh_venv_it_seeds_and_serves(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # From a copy of what the package is built from: a build writes into its source tree.
    source = tmp_path / "source"
    for part in ("server", "data"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    subprocess.run([*pip, str(source)], check=True, timeout=600)
    python, command = str(venv / "bin" / "python"), str(venv / "bin" / "coursesync")
    missing = subprocess.run([python, "-c", "import pytest"], capture_output=True)
    assert missing.returncode != 0, "the test tools are not in the runtime"

    work = tmp_path / "work"  # no checkout here: the sample data is the package's own copy
    work.mkdir()
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PORT": str(port),
           "SQLITE_PATH": str(work / "courses.sqlite3"), "SYNC_PROCESS": "0"}
    seeded = subprocess.run([command, "seed", "--if-empty"], cwd=work, env=env, capture_output=True, text=True,
                            timeout=60)
    assert seeded.returncode == 0, seeded.stderr
    assert "seeded" in seeded.stdout and "courses" in seeded.stdout
    helped = subprocess.run([command, "hub", "--help"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "add-device" in helped.stdout
    assert subprocess.run([command, "nothing"], cwd=work, env=env, capture_output=True).returncode == 2

    server = subprocess.Popen([command, "serve"], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/v1/health", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        with urllib.request.urlopen(f"{base}/api/v1/courses", timeout=5) as resp:
            courses = json.load(resp)["data"]
        assert len(courses) >= 1
        with urllib.request.urlopen(f"{base}/", timeout=5) as resp:
            assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
    finally:
        stop_process(server, 10)
