"""Schemathesis against a live `python -m server`, driven by the served OpenAPI document: no
server errors, answers that match their schemas, only declared status codes and content types,
schema-valid bodies accepted and schema-violating ones refused. Bounded; the seed is printed."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import ROOT, ServerProcess, started

CONFIG = Path(__file__).parent.parent / "fuzz" / "schemathesis.toml"
EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "25")


@pytest.fixture
def live_server(tmp_path):
    srv = ServerProcess(tmp_path, LOG_LEVEL="WARNING")
    seeded = subprocess.run([sys.executable, "seed.py"], cwd=ROOT, env=srv.env, capture_output=True, text=True)
    assert seeded.returncode == 0, seeded.stderr
    srv.start()
    yield srv
    srv.stop()


def test_schemathesis_finds_nothing(live_server):
    document = f"http://127.0.0.1:{live_server.port}/api/v1/openapi.json"
    schemathesis_passes(document, "--exclude-operation-id", "connectHub")
    # An invitation is valid only when a hub elsewhere honours its code, which no schema can say:
    # a schema-valid one is rightly refused (400, or 409 from its hub). Every other check runs.
    schemathesis_passes(document, "--include-operation-id", "connectHub", "--exclude-checks",
                        "positive_data_acceptance")


def schemathesis_passes(document: str, *options: str) -> None:
    """Run schemathesis against the served document (bounded, seeded, printed) and require a pass."""
    seed = int(os.environ.get("FUZZ_SEED") or random.randrange(1, 2**31))
    print(f"schemathesis seed: {seed} (replay with FUZZ_SEED={seed})")
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG), "run", document, *options,
        "--checks", "all", "--phases", "examples,coverage,fuzzing", "--max-examples", EXAMPLES,
        "--seed", str(seed), "--workers", "1", "--request-timeout", "10", "--no-color",
        # How fast examples are made says nothing of the server, and a busy machine makes them slowly.
        "--suppress-health-check", "too_slow",
    ]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    tail = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, f"seed {seed}:\n{tail}"
    assert f"Seed: {seed}" in proc.stdout and " passed" in proc.stdout


@pytest.fixture
def live_hub(tmp_path):
    from server.connectors.sqlite.registry import SqlRegistry
    from server.connectors.sqlite.store import SqlConnector

    path = str(tmp_path / "hub.sqlite3")
    store = SqlConnector(path, user_id="learner")
    store.connect()
    _, token = SqlRegistry(store.pool).add("learner", "fuzz")
    store.close()
    # Waits held 1 s: the fuzzer's requests time out after 10.
    env = {"DB_CONNECTOR": "sql", "SQLITE_PATH": path, "LOG_LEVEL": "WARNING", "HUB_MAX_WAIT_SECONDS": "1"}
    srv = started(tmp_path, "hub", env, args=("--hub",))
    yield srv, token
    srv.stop()


def test_schemathesis_finds_nothing_in_the_hub_protocol(live_hub):
    srv, token = live_hub
    schemathesis_passes(f"http://127.0.0.1:{srv.port}/hub/v1/openapi.json", "-H", f"Authorization: Bearer {token}")
