"""Sync rounds in a child process: they move changes both ways, the API's clock stays ahead of
what the child pulled, a child that dies is replaced, and a child outlives no killed server."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pymongo
import pytest

from server.api import create_app
from server.connectors.factory import get_db_connector
from server.core.config import Settings
from server.core.records import validate
from tests.conftest import COURSE
from tests.procs import ServerProcess

pytestmark = pytest.mark.wire
USER = "learner"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (FileNotFoundError, ProcessLookupError):  # gone, or reaped while being read
        return False


def wait_until(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def hub_db(wire_uri):
    name = f"proc_{uuid.uuid4().hex[:8]}"
    client = pymongo.MongoClient(wire_uri)
    yield client[name]
    client.drop_database(name)
    client.close()


@pytest.fixture
def api(hub_db, wire_uri, tmp_path):
    settings = Settings(sqlite_path=str(tmp_path / "dev.sqlite3"), mongo_uri=wire_uri, mongo_db=hub_db.name,
                        user_id=USER, origin="dev-a", sync_interval_seconds=3600)
    app = create_app(settings, start_sync=False)
    yield app
    app.extensions["sync"].shutdown()
    app.extensions["store"].close()


def other_device(wire_uri, hub_db):
    hub = get_db_connector("mongo", Settings(), uri=wire_uri, db_name=hub_db.name, user_id=USER, origin="dev-b")
    hub.connect()
    return hub


def test_rounds_run_in_a_child_process_and_move_changes_both_ways(api, hub_db, wire_uri):
    client = api.test_client()
    mine = client.post("/api/v1/courses", json=COURSE).get_json()["data"]
    report = client.post("/api/v1/sync", json={}).get_json()["data"]
    assert (report["pushed"], report["error"]) == (1, None)
    worker = client.get("/api/v1/sync/status").get_json()["data"]["worker"]
    assert worker["process"] == "child" and worker["pid"] not in (None, os.getpid()) and alive(worker["pid"])
    assert hub_db.records.count_documents({"kind": "course", "id": mine["id"]}) == 1

    # Device B edits the course with a clock an hour ahead; the child pulls it into the file.
    b = other_device(wire_uri, hub_db)
    later = time.time() + 3600
    from freezegun import freeze_time

    with freeze_time(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(later))):
        b.update("course", None, mine["id"], {"title": "from B, clock ahead"})
    b.close()
    report = client.post("/api/v1/sync", json={}).get_json()["data"]
    assert (report["pulled"], report["error"]) == (1, None)
    assert client.get(f"/api/v1/courses/{mine['id']}").get_json()["data"]["title"] == "from B, clock ahead"

    # The user edits after seeing B's title: that edit must win, on this device and on the hub.
    client.patch(f"/api/v1/courses/{mine['id']}", json={"title": "mine, after B's"})
    assert client.post("/api/v1/sync", json={}).get_json()["data"]["pushed"] == 1
    assert client.get(f"/api/v1/courses/{mine['id']}").get_json()["data"]["title"] == "mine, after B's"
    assert hub_db.records.find_one({"kind": "course", "id": mine["id"]})["fields"]["title"] == "mine, after B's"


def test_a_child_that_dies_is_replaced_and_nothing_is_lost(api, hub_db):
    client = api.test_client()
    client.post("/api/v1/courses", json=COURSE)
    assert client.post("/api/v1/sync", json={}).status_code == 200
    first = client.get("/api/v1/sync/status").get_json()["data"]["worker"]["pid"]
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: not alive(first))
    client.post("/api/v1/courses", json={**COURSE, "title": "written while the child was dead"})
    lost = client.post("/api/v1/sync", json={})
    if lost.status_code == 503:  # the pool noticed the death only when given the round
        assert lost.get_json()["error"]["code"] == "sync_process_lost"
        lost = client.post("/api/v1/sync", json={})
    assert lost.status_code == 200 and lost.get_json()["data"]["error"] is None
    second = client.get("/api/v1/sync/status").get_json()["data"]["worker"]["pid"]
    assert second != first and alive(second)
    titles = sorted(d["fields"]["title"] for d in hub_db.records.find({"kind": "course"}))
    assert titles == sorted([COURSE["title"], "written while the child was dead"])
    status = client.get("/api/v1/sync/status").get_json()["data"]
    assert status["pending"]["count"] == 0


def test_a_round_asked_for_after_shutdown_starts_no_child(api):
    client = api.test_client()
    assert client.post("/api/v1/sync", json={}).status_code == 200
    pid = api.extensions["sync"].child.pid
    api.extensions["sync"].shutdown()
    assert wait_until(lambda: not alive(pid))
    late = client.post("/api/v1/sync", json={})
    assert late.status_code == 503 and late.get_json()["error"]["code"] == "shutting_down"


def test_the_cli_round_runs_in_the_command_s_own_process(api, hub_db):
    runner = api.test_cli_runner()
    api.extensions["store"].create("course", None, validate("course", COURSE, "create"))
    result = runner.invoke(args=["sync", "once"])
    assert result.exit_code == 0, result.output
    assert '"pushed": 1' in result.output
    assert api.extensions["sync"].child.pid is None  # no child was started for it


def test_the_child_exits_when_its_server_is_killed(tmp_path, wire_uri, hub_db):
    server = ServerProcess(tmp_path, "dev", MONGO_URI=wire_uri, MONGO_DB=hub_db.name, USER_ID=USER,
                           DEVICE_ID="dev-k", SYNC_INTERVAL_SECONDS="3600").start()
    try:
        assert server.request("POST", "/api/v1/courses", COURSE)[0] == 201
        server.sync()
        pid = server.request("GET", "/api/v1/sync/status")[1]["data"]["worker"]["pid"]
        assert pid and alive(pid)
        server.kill()  # SIGKILL: no atexit, no shutdown of the pool
        assert wait_until(lambda: not alive(pid), timeout=60), "the sync child outlived its server"
    finally:
        server.stop()
