"""Separate device processes (`python -m server`, each with its own SQLite file and DEVICE_ID)
and one hub over the MongoDB wire protocol, driven only over HTTP and documented commands."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pymongo
import pytest

from tests.procs import ROOT, ServerProcess, started
from tests.wire.hub import WireHub, unavailable_reason, wire_python

pytestmark = pytest.mark.wire
USER = "learner"


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def hub(tmp_path):
    """A hub this test may stop and restart: its own mongoeco process (or MONGO_URI, where
    tests that stop the hub are skipped)."""
    if os.environ.get("MONGO_URI"):
        yield None
        return
    if wire_python() is None:
        reason = unavailable_reason()
        if os.environ.get("CI") == "true":
            pytest.fail(f"wire tier unavailable under CI: {reason}")
        pytest.skip(reason)
    server = WireHub(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def net(hub, tmp_path):
    uri = hub.uri if hub else os.environ["MONGO_URI"]
    return Network(tmp_path, uri, f"e2e_{uuid.uuid4().hex[:8]}")


class Network:
    def __init__(self, tmp_path, uri: str, db: str):
        self.tmp_path, self.uri, self.db = tmp_path, uri, db
        self.devices: dict[str, ServerProcess] = {}

    def device(self, name: str, **env) -> ServerProcess:
        settings = {"MONGO_URI": self.uri, "MONGO_DB": self.db, "USER_ID": USER, "DEVICE_ID": name,
                    "SYNC_INTERVAL_SECONDS": "3600", "SYNC_BATCH_SIZE": "50", "HUB_TIMEOUT_MS": "5000",
                    "SYNC_LIVE": "0", "SYNC_PUSH_ON_WRITE": "0", **env}
        srv = self.devices[name] = started(self.tmp_path, name, settings)
        return srv

    def sync(self, name: str) -> dict:
        return self.devices[name].sync()

    def hub_collection(self, name: str):
        client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=3000)
        return client[self.db][name]

    def stop_all(self):
        for srv in self.devices.values():
            srv.stop()


@pytest.fixture
def network(net):
    yield net
    net.stop_all()


def courses(srv: ServerProcess) -> list:
    status, body, _ = srv.request("GET", "/api/v1/courses")
    assert status == 200
    return body["data"]


def create(srv: ServerProcess, path: str, body: dict) -> dict:
    status, answer, _ = srv.request("POST", path, body)
    assert status == 201, answer
    return answer["data"]


def test_an_edit_on_one_device_appears_on_the_other(network):
    a, b = network.device("A"), network.device("B")
    cid = create(a, "/api/v1/courses", {"title": "Shared", "source": "https://a.b"})["id"]
    create(a, f"/api/v1/courses/{cid}/lectures", {"title": "L1", "order": 1, "videoUrl": "https://a.b/1"})
    network.sync("A")  # the worker's first round, at start-up, may have moved some of it already
    network.sync("B")
    assert courses(b) == courses(a) and len(courses(b)[0]["lectures"]) == 1
    status, body, _ = b.request("PATCH", f"/api/v1/courses/{cid}", {"notes": "from B"})
    assert status == 200
    network.sync("B")
    network.sync("A")
    assert courses(a)[0]["notes"] == "from B"


def test_a_device_killed_in_the_middle_of_a_round_loses_and_doubles_nothing(network):
    a = network.device("A", SYNC_BATCH_SIZE="10")
    cid = create(a, "/api/v1/courses", {"title": "Big", "source": "https://a.b"})["id"]
    for i in range(199):
        create(a, f"/api/v1/courses/{cid}/lectures", {"title": f"L{i}", "order": i + 1, "videoUrl": "https://a.b/v"})
    changes = network.hub_collection("changes")
    def round_that_dies() -> None:
        try:
            a.request("POST", "/api/v1/sync", {}, timeout=300)
        except OSError:
            pass  # the device is killed while answering: that is the point

    round_thread = threading.Thread(target=round_that_dies, daemon=True)
    round_thread.start()
    wait_for(lambda: changes.count_documents({"origin": "A"}) >= 30, 120, "part of the push")
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait()
    taken = changes.count_documents({"origin": "A"})
    assert 0 < taken < 200, "the kill must land in the middle of the round"
    a.start()
    status, body, _ = a.request("GET", "/api/v1/sync/status")
    assert body["data"]["pending"]["count"] > 0
    network.sync("A")
    b = network.device("B")
    network.sync("B")
    seqs = sorted(d["seq"] for d in changes.find({"origin": "A"}, {"seq": 1}))
    assert seqs == list(range(1, 201)), "every change once, none twice"
    assert len(courses(a)[0]["lectures"]) == len(courses(b)[0]["lectures"]) == 199
    assert courses(a) == courses(b)
    assert network.hub_collection("records").count_documents({"userId": USER, "deleted": False}) == 200


def test_a_hub_outage_costs_nothing_but_time(network, hub):
    if hub is None:
        pytest.skip("needs a hub process this test can stop (the mongoeco wire server)")
    fast = {"SYNC_INTERVAL_SECONDS": "0.5", "HUB_TIMEOUT_MS": "500"}
    a, b = network.device("A", **fast), network.device("B", **fast)
    cid = create(a, "/api/v1/courses", {"title": "Shared", "source": "https://a.b"})["id"]
    wait_for(lambda: any(c["id"] == cid for c in courses(b)), 120, "the course on B")
    hub.stop()
    for i in range(5):
        create(a, f"/api/v1/courses/{cid}/lectures", {"title": f"a{i}", "order": i + 1, "videoUrl": "https://a.b/v"})
        create(b, f"/api/v1/courses/{cid}/assignments", {"title": f"b{i}"})
    for srv in (a, b):
        wait_for(lambda srv=srv: srv.request("GET", "/api/v1/sync/status")[1]["data"]["state"] == "backing_off",
                 60, "back-off in the status")
        status = srv.request("GET", "/api/v1/sync/status")[1]["data"]
        assert status["lastError"] and status["pending"]["count"] >= 5
    hub.start()
    for srv in (a, b):
        wait_for(lambda srv=srv: srv.round()[0] == 200, 300, "a round")
    network.sync("A")
    got_a, got_b = courses(a), courses(b)
    assert got_a == got_b
    assert len(got_a[0]["lectures"]) == 5 and len(got_a[0]["assignments"]) == 5


def test_a_hub_wiped_and_reseeded_keeps_the_devices_unsynced_edits(network):
    a, b = network.device("A"), network.device("B")
    cid = create(a, "/api/v1/courses", {"title": "Mine", "source": "https://a.b"})["id"]
    network.sync("A")
    network.sync("B")
    status, _, _ = a.request("PATCH", f"/api/v1/courses/{cid}", {"notes": "unsynced on A"})
    assert status == 200
    create(b, f"/api/v1/courses/{cid}/lectures", {"title": "unsynced on B", "order": 1, "videoUrl": "https://a.b/v"})
    command = [sys.executable, "seed_mongo.py", "data/seed.json", "--uri", network.uri, "--db", network.db]
    seeded = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert seeded.returncode == 0, seeded.stderr
    assert "removed" in seeded.stdout
    for name in ("A", "B", "A", "B"):
        network.sync(name)
    for srv in (a, b):
        status = srv.request("GET", "/api/v1/sync/status")[1]["data"]
        assert status["hubResets"], "the device must say it noticed the reset"
        [course] = courses(srv)
        assert course["notes"] == "unsynced on A"
        assert [lec["title"] for lec in course["lectures"]] == ["unsynced on B"]


def test_a_device_restored_from_a_backup_recovers_by_itself(network, tmp_path):
    a = network.device("A")
    cid = create(a, "/api/v1/courses", {"title": "Mine", "source": "https://a.b"})["id"]
    network.sync("A")
    a.stop()  # last night's backup of the laptop
    store = Path(a.env["SQLITE_PATH"])
    backup = tmp_path / "backup"
    backup.mkdir()
    for part in store.parent.glob(store.name + "*"):
        shutil.copy(part, backup / part.name)
    a.start()
    assert a.request("PATCH", f"/api/v1/courses/{cid}", {"notes": "written before the disk died"})[0] == 200
    network.sync("A")
    a.stop()  # the disk dies; the laptop is restored from the backup
    for part in store.parent.glob(store.name + "*"):
        part.unlink()
    for part in backup.iterdir():
        shutil.copy(part, store.parent / part.name)
    a.start()  # its first round may run before or after the edit below: either way nothing is lost
    assert a.request("PATCH", f"/api/v1/courses/{cid}", {"title": "after the restore"})[0] == 200
    assert network.sync("A")["error"] is None
    network.sync("A")
    status = a.request("GET", "/api/v1/sync/status")[1]["data"]
    [restart] = status["originRestarts"]
    assert restart["from"] == "A" and restart["to"] == status["deviceId"] and status["pending"]["count"] == 0
    b = network.device("B")
    network.sync("B")
    for srv in (a, b):
        [course] = courses(srv)
        assert (course["title"], course["notes"]) == ("after the restore", "written before the disk died")
    origins = {}
    for doc in network.hub_collection("changes").find({}, {"origin": 1, "seq": 1}):
        origins.setdefault(doc["origin"], []).append(doc["seq"])
    assert {o: sorted(s) for o, s in origins.items()} == {"A": [1, 2], restart["to"]: [1]}
