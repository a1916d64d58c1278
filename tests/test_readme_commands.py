"""The README's and docs/' commands, as printed: every shell line names a program a fresh clone has
(a make target, something in .venv/bin, curl), and the ones a newcomer runs first work in a
temporary clone of this repository: seeding, the status, the server with its sync page, the demo.
Every docs page is linked from the README, and every relative link between them resolves."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.procs import ROOT, free_port, linked_venv, stop_process

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README = "\n".join(page.read_text() for page in PAGES)  # all of it, as one text
ALLOWED = ("make", "curl", "export", "cd", "kill")


def shell_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def program(line: str) -> str:
    """The program a shell line runs: the first word after any VAR=value assignments (or, for
    VAR=$(command), the command's)."""
    captured = re.match(r"^[A-Z_][A-Z0-9_]*=\$\((.*)\)$", line)
    if captured:
        return program(captured.group(1).split("|")[0])
    words = shlex.split(line.rstrip("&").strip(), posix=True)
    return next(w for w in words if not re.match(r"^[A-Z_][A-Z0-9_]*=", w))


def test_every_shell_line_runs_a_program_a_fresh_clone_has():
    lines = shell_lines()
    assert len(lines) > 10
    for line in lines:
        first = program(line)
        assert first in ALLOWED or first.startswith(".venv/bin/"), f"README runs {first!r}: {line}"


def test_the_readme_is_one_screen_that_starts_with_run_test_and_try():
    top = (ROOT / "README.md").read_text()
    shown = [line for line in top.splitlines() if not line.startswith("<!--")]  # GitHub shows no comment
    assert len(shown) <= 60
    headings = [line for line in top.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## Run it", "## Test it", "## Try sync"]
    assert "```sh\nmake run\n```" in top and "```sh\nmake test\n```" in top


def test_every_docs_page_is_linked_from_the_readme_and_every_relative_link_resolves():
    top = (ROOT / "README.md").read_text()
    assert len(PAGES) > 5
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in top, f"the README does not link {page.name}"
    for page in PAGES:
        for target in re.findall(r"\]\(([^)]+)\)", page.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue  # an address elsewhere
            path, _, anchor = target.partition("#")
            where = (page.parent / path).resolve() if path else page
            assert where.exists(), f"{page.name} links {target}, which is not there"
            if anchor and where.suffix == ".md":
                assert anchor in anchors(where.read_text()), f"{page.name} links {target}: no such heading"


def anchors(markdown: str) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        found.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return found


def test_no_command_in_the_prose_needs_a_guess():
    spans = re.findall(r"`((?:python|flask|pytest|mutmut)\b[^`]*)`", README)
    assert spans == [], f"spell these with .venv/bin/ or a make target: {spans}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    where = tmp_path_factory.mktemp("clone") / "coursesync"
    done = subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    linked_venv(where)  # a fresh clone builds its own
    return where


def run(clone: Path, command: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("MONGO_URI", "DB_CONNECTOR", "SQLITE_PATH", "PORT")}
    return subprocess.run(command, shell=True, cwd=clone, env={**environ, **env}, capture_output=True, text=True,
                          timeout=300)


def get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.status, resp.read().decode()


def test_seed_status_and_the_pwa_sample(clone):
    seeded = run(clone, "make seed")
    assert seeded.returncode == 0, seeded.stderr
    assert (clone / "var" / "courses.sqlite3").exists()
    status = run(clone, "make --no-print-directory status")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout[status.stdout.index("{"):])["enabled"] is False
    sample = run(clone, ".venv/bin/python seed.py tests/fixtures/pwa_seed.json --reset")
    assert sample.returncode == 0, sample.stderr


def test_make_run_serves_the_api_and_the_sync_page(clone):
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k not in ("MONGO_URI", "DB_CONNECTOR", "SQLITE_PATH")}
    proc = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=clone, env={**environ, "PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get(port, "/api/v1/health")[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        status, body = get(port, "/api/v1/courses")
        assert status == 200 and json.loads(body)["data"], "make run seeds an empty store"
        status, page = get(port, "/")
        assert status == 200 and "Sync is off" in page
    finally:
        os.killpg(proc.pid, 15)
        stop_process(proc, 20)


def test_make_demo_as_printed(clone):
    env = {"DEMO_ONCE": "1", "DEMO_HUB_PORT": str(free_port()), "DEMO_A_PORT": str(free_port()),
           "DEMO_B_PORT": str(free_port())}
    done = run(clone, "make --no-print-directory demo", **env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Made on the laptop" in done.stdout
