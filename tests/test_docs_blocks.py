"""Every ```sh block of the README and of docs/ runs as pasted, or says why not.

A block is left out only when the line just before its fence is an HTML comment
`<!-- not run by the docs test: <why> -->` (GitHub shows nothing of it; whoever edits the page
sees the reason). Every other block is pasted whole into `bash -e` in its own fresh clone of
HEAD, with the suite's .venv linked in and every port it names moved to a free one, and must exit
0 and print what it promises (PROMISES). So the docs are committed before this test sees them."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from tests.procs import ROOT, free_port, linked_venv

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"^<!-- not run by the docs test: (.+\S) -->$")

# What each runnable block prints when it worked, by page and the block's first line.
HUB_COMMAND = "SQLITE_PATH=var/hub.sqlite3 .venv/bin/flask --app server.api hub "
PROMISES = {
    ("docs/hub-operator.md", "SQLITE_PATH=var/hub.sqlite3 PORT=8100 .venv/bin/python -m server --hub &"):
        '"title":"Mine"',  # the course made on the laptop, as the phone serves it
    ("docs/hub-operator.md", HUB_COMMAND + "history learner"): '"userId": "learner"',
    ("docs/hub-operator.md", HUB_COMMAND + "compact learner"): '"dropped": 0',
    ("docs/testing.md", "make typecheck"): "Success: no issues found",
}

# Stops what a block started in the background when it fails half-way (a whole block stops them itself).
STOP_ON_FAILURE = "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"


def blocks() -> list[tuple[str, int, str, str | None]]:
    """(page, index, text, why it is not run or None) for every ```sh block, in order."""
    found = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        name = page.relative_to(ROOT).as_posix()
        i = 0
        while i < len(lines):
            if lines[i] == "```sh":
                end = lines.index("```", i + 1)
                why = NOT_RUN.match(lines[i - 1]) if i else None
                found.append((name, len([b for b in found if b[0] == name]), "\n".join(lines[i + 1:end]) + "\n",
                              why.group(1) if why else None))
                i = end
            i += 1
    return found


RUNNABLE = [(page, index, text) for page, index, text, why in blocks() if why is None]


def test_every_block_is_run_or_says_why_not():
    every = blocks()
    assert len(every) > 10
    text = "\n".join(page.read_text() for page in PAGES)
    fences = re.findall(r"^```(\w*)$", text, re.M)
    assert fences.count("sh") == len(every), "a ```sh fence not at the start of its line, or not closed"
    marks = re.findall(r"^<!-- not run by the docs test", text, re.M)
    assert len(marks) == len([b for b in every if b[3]]), "a not-run comment that is not just before a ```sh fence"
    assert RUNNABLE, "no block runs"
    firsts = {(page, text.splitlines()[0]) for page, _, text in RUNNABLE}
    assert firsts == set(PROMISES), "PROMISES names exactly the runnable blocks (by page and first line)"


def with_free_ports(block: str) -> str:
    """The block with each port it names (PORT=..., localhost:..., 127.0.0.1:...) moved to a free
    one, the same one wherever it recurs."""
    ports: dict[str, str] = {}
    return re.sub(r"(PORT=|localhost:|127\.0\.0\.1:)(\d{4,5})\b",
                  lambda m: m.group(1) + ports.setdefault(m.group(2), str(free_port())), block)


@pytest.mark.parametrize(("page", "index", "block"), RUNNABLE, ids=[f"{p}#{i}" for p, i, _ in RUNNABLE])
def test_the_block_runs_as_pasted(page, index, block, tmp_path):
    clone = tmp_path / "coursesync"
    done = subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    linked_venv(clone)
    environ = {k: v for k, v in os.environ.items()
               if k not in ("MONGO_URI", "DB_CONNECTOR", "SQLITE_PATH", "PORT", "HOST", "HUB_URL", "API_TOKEN")}
    script = STOP_ON_FAILURE + with_free_ports(block)
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=clone, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of it, after a timeout
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0, f"{page} block {index} failed:\n{out[-2000:]}\n{err[-3000:]}"
    promise = PROMISES[(page, block.splitlines()[0])]
    assert promise in out, f"{page} block {index} did not print {promise!r}:\n{out[-2000:]}"
