"""Devices syncing through hub servers, every one a real process over real HTTP: an embedded
SQLite hub (and a MongoDB one on the wire tier), tokens made with the documented command,
revoked ones refused, a hub killed in the middle of a round, two hub processes on one store."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pymongo
import pytest

from tests.conftest import WIRE
from tests.e2e.test_e2e_devices import courses, create, wait_for
from tests.procs import ROOT, ServerProcess, started
from tests.synckit import by_origin

USER, OTHER = "learner", "someone-else"
METRICS_TOKEN = "scrape-" + "m" * 24  # every hub process here serves /metrics to it


def waiting_devices(hub: ServerProcess) -> int:
    """How many devices wait at this hub process for news (its /metrics)."""
    req = urllib.request.Request(f"http://127.0.0.1:{hub.port}/metrics",
                                 headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("coursesync_hub_waiting_devices "):
                return int(float(line.split()[1]))
    raise AssertionError("the hub's /metrics names no coursesync_hub_waiting_devices")


class Hubs:
    """Hub processes on one store (a SQLite file, or a database of the wire tier's server), and
    devices syncing through them."""

    def __init__(self, tmp_path: Path, kind: str, wire_uri: str | None):
        self.tmp_path, self.kind = tmp_path, kind
        if kind == "sql":
            self.store_env = {"DB_CONNECTOR": "sql", "SQLITE_PATH": str(tmp_path / "hub.sqlite3")}
        else:
            self.store_env = {"DB_CONNECTOR": "mongo", "MONGO_URI": wire_uri,
                              "MONGO_DB": f"hub_{uuid.uuid4().hex[:12]}"}
        self.hubs: list[ServerProcess] = []
        self.devices: dict[str, ServerProcess] = {}

    def hub(self, **env: str) -> ServerProcess:
        settings = {**self.store_env, "HUB_METRICS_TOKEN": METRICS_TOKEN, **env}
        srv = started(self.tmp_path, f"hub{len(self.hubs)}", settings, args=("--hub",))
        self.hubs.append(srv)
        return srv

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        env = {**{k: v for k, v in os.environ.items() if k not in ("MONGO_URI", "DB_CONNECTOR")}, **self.store_env}
        return subprocess.run([sys.executable, "-m", "flask", "--app", "server.api", "hub", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)

    def token(self, user: str = USER) -> str:
        done = self.cli("add-device", user, "--name", "test")
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def device(self, name: str, hub: ServerProcess, token: str, user: str = USER, **env: str) -> ServerProcess:
        # Rounds run when the test asks for one (and on an hour's timer): a test of push on write
        # or live sync turns them on.
        settings = {"HUB_URL": f"http://127.0.0.1:{hub.port}", "HUB_TOKEN": token, "USER_ID": user,
                    "SYNC_INTERVAL_SECONDS": "3600", "HUB_TIMEOUT_MS": "5000", "SYNC_LIVE": "0",
                    "SYNC_PUSH_ON_WRITE": "0", **env}
        srv = self.devices[name] = started(self.tmp_path, name, settings)
        return srv

    def sync(self, name: str) -> dict:
        return self.devices[name].sync()

    def hub_seqs(self) -> dict[str, list[int]]:
        if self.kind == "sql":
            conn = sqlite3.connect(self.store_env["SQLITE_PATH"])
            rows = conn.execute("SELECT origin, seq FROM changes WHERE user_id = ?", (USER,)).fetchall()
            conn.close()
        else:
            client = pymongo.MongoClient(self.store_env["MONGO_URI"], serverSelectionTimeoutMS=3000)
            rows = [(d["origin"], d["seq"]) for d in client[self.store_env["MONGO_DB"]].changes.find({"userId": USER})]
            client.close()
        return by_origin(rows)

    def backup(self) -> object:
        """A copy of the hub's store as an operator's backup takes it, the hubs running."""
        if self.kind == "sql":
            path = self.tmp_path / f"backup-{len(list(self.tmp_path.glob('backup-*')))}.sqlite3"
            src, dst = sqlite3.connect(self.store_env["SQLITE_PATH"]), sqlite3.connect(path)
            src.backup(dst)
            src.close()
            dst.close()
            return path
        db = self._mongo()
        return {name: list(db[name].find()) for name in db.list_collection_names()}

    def restore(self, backup: object) -> None:
        """Put a backup back: the hub processes stopped, the file copied over, started again (for
        MongoDB, a restore with --drop under the running hubs)."""
        if self.kind == "sql":
            for hub in self.hubs:
                hub.stop()
            for suffix in ("", "-wal", "-shm"):
                Path(self.store_env["SQLITE_PATH"] + suffix).unlink(missing_ok=True)
            if backup is not None:
                shutil.copyfile(backup, self.store_env["SQLITE_PATH"])
            for hub in self.hubs:
                hub.start()
            return
        db = self._mongo()
        for name in db.list_collection_names():
            db[name].delete_many({})
        for name, docs in (backup or {}).items():
            if docs:
                db[name].insert_many(docs)

    def _mongo(self):
        client = pymongo.MongoClient(self.store_env["MONGO_URI"], serverSelectionTimeoutMS=3000)
        return client[self.store_env["MONGO_DB"]]

    def status(self, name: str) -> dict:
        return self.devices[name].request("GET", "/api/v1/sync/status")[1]["data"]

    def stop(self) -> None:
        for srv in [*self.devices.values(), *self.hubs]:
            srv.stop()


@pytest.fixture(params=["sql", WIRE])
def hubs(request, tmp_path):
    uri = request.getfixturevalue("wire_uri") if request.param == "wire" else None
    made = Hubs(tmp_path, request.param, uri)
    yield made
    made.stop()


def test_two_devices_converge_through_a_hub_and_another_user_sees_none_of_it(hubs):
    hub = hubs.hub()
    a, b = hubs.device("A", hub, hubs.token()), hubs.device("B", hub, hubs.token())
    stranger = hubs.device("C", hub, hubs.token(OTHER), user=OTHER)
    cid = create(a, "/api/v1/courses", {"title": "Shared", "source": "https://a.b"})["id"]
    create(a, f"/api/v1/courses/{cid}/lectures", {"title": "L1", "order": 1, "videoUrl": "https://a.b/1"})
    hubs.sync("A")
    hubs.sync("B")
    assert courses(b) == courses(a) and len(courses(b)[0]["lectures"]) == 1
    assert b.request("PATCH", f"/api/v1/courses/{cid}", {"notes": "from B"})[0] == 200
    hubs.sync("B")
    hubs.sync("A")
    assert courses(a)[0]["notes"] == "from B"
    hubs.sync("C")
    assert courses(stranger) == []
    status = a.request("GET", "/api/v1/sync/status")[1]["data"]
    assert status["hub"] == f"http://127.0.0.1:{hub.port}" and status["lastError"] is None


@pytest.mark.wire_when_real
def test_a_revoked_device_is_refused_and_told_why(hubs):
    hub = hubs.hub()
    a = hubs.device("A", hub, hubs.token())
    hubs.sync("A")
    devices = hubs.cli("list-devices", USER).stdout.strip().splitlines()
    assert len(devices) == 1 and "csh_" not in devices[0]
    device_id = devices[0].split('"deviceId": "')[1].split('"')[0]
    assert hubs.cli("revoke", device_id).returncode == 0
    create(a, "/api/v1/courses", {"title": "After", "source": "https://a.b"})
    status, body = a.round()
    assert status == 503 and body["error"]["code"] == "hub_refused" and "revoked" in body["error"]["message"]
    assert hubs.hub_seqs() == {}


def test_a_hub_killed_in_the_middle_of_a_round_loses_and_doubles_nothing(hubs):
    n = 200 if hubs.kind == "sql" else 80  # one push per change: sized to the mongoeco stand-in's speed
    hub = hubs.hub()
    a = hubs.device("A", hub, hubs.token(), SYNC_BATCH_SIZE="1")
    cid = create(a, "/api/v1/courses", {"title": "Big", "source": "https://a.b"})["id"]
    for i in range(n):
        create(a, f"/api/v1/courses/{cid}/lectures", {"title": f"L{i}", "order": i + 1, "videoUrl": "https://a.b/v"})
    origin = a.request("GET", "/api/v1/sync/status")[1]["data"]["deviceId"]

    def round_that_fails() -> None:
        a.request("POST", "/api/v1/sync", {}, timeout=300)

    thread = threading.Thread(target=round_that_fails, daemon=True)
    thread.start()
    wait_for(lambda: len(hubs.hub_seqs().get(origin, [])) >= 30, 120, "part of the push")
    os.kill(hub.proc.pid, signal.SIGKILL)
    hub.proc.wait()
    taken = len(hubs.hub_seqs().get(origin, []))
    assert 0 < taken < n + 1, "the kill must land in the middle of the round"
    thread.join(60)
    hub.start()
    hubs.sync("A")
    b = hubs.device("B", hub, hubs.token())
    hubs.sync("B")
    assert hubs.hub_seqs()[origin] == list(range(1, n + 2)), "every change once, none twice"
    assert courses(a) == courses(b) and len(courses(b)[0]["lectures"]) == n


def test_two_hub_processes_on_one_store_and_devices_alternating_between_them(hubs):
    first, second = hubs.hub(), hubs.hub()
    tokens = {"A": hubs.token(), "B": hubs.token()}
    a, b = hubs.device("A", first, tokens["A"]), hubs.device("B", second, tokens["B"])
    cid = create(a, "/api/v1/courses", {"title": "Shared", "source": "https://a.b"})["id"]
    create(b, "/api/v1/courses", {"id": "from-b", "title": "B's", "source": "https://a.b"})
    for name in ("A", "B", "A"):
        hubs.sync(name)
    for name, hub in (("A", second), ("B", first)):  # each device now goes through the other hub
        hubs.devices[name].stop()
        hubs.device(name, hub, tokens[name])
    a, b = hubs.devices["A"], hubs.devices["B"]
    assert b.request("PATCH", f"/api/v1/courses/{cid}", {"notes": "via the first hub"})[0] == 200
    assert a.request("PATCH", "/api/v1/courses/from-b", {"notes": "via the second hub"})[0] == 200
    for name in ("A", "B", "A"):
        hubs.sync(name)
    assert courses(a) == courses(b)
    notes = {c["id"]: c["notes"] for c in courses(a)}
    assert notes == {cid: "via the first hub", "from-b": "via the second hub"}


def test_make_demo_walks_an_edit_from_one_device_to_the_other(tmp_path):
    from tests.procs import free_port

    env = {**{k: v for k, v in os.environ.items() if k not in ("MONGO_URI", "DB_CONNECTOR")}, "DEMO_ONCE": "1",
           "DEMO_DIR": str(tmp_path), "DEMO_HUB_PORT": str(free_port()), "DEMO_A_PORT": str(free_port()),
           "DEMO_B_PORT": str(free_port())}
    done = subprocess.run(["scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"title":"Made on the laptop"' in done.stdout.splitlines()[-1]
    # Again on the same stores: the course is there already, so the laptop edits it, and the
    # phone is served the edit.
    again = subprocess.run(["scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert '"notes":"edited on the laptop at ' in again.stdout.splitlines()[-1]


def test_make_demo_says_which_port_is_taken(tmp_path):
    from tests.procs import free_port

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {**{k: v for k, v in os.environ.items() if k not in ("MONGO_URI", "DB_CONNECTOR")}, "DEMO_ONCE": "1",
               "DEMO_DIR": str(tmp_path), "DEMO_HUB_PORT": str(free_port()), "DEMO_A_PORT": str(port),
               "DEMO_B_PORT": str(free_port())}
        done = subprocess.run(["scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"make demo: port {port} is taken") and "DEMO_A_PORT" in done.stderr


@pytest.mark.wire_when_real
def test_a_hub_wiped_and_reseeded_gets_every_devices_edits_back(hubs):
    hub = hubs.hub()
    a, b = hubs.device("A", hub, hubs.token()), hubs.device("B", hub, hubs.token())
    cid = create(a, "/api/v1/courses", {"title": "Mine", "source": "https://a.b"})["id"]
    create(b, "/api/v1/courses", {"id": "b-course", "title": "B's", "source": "https://a.b"})
    for name in ("A", "B", "A"):
        hubs.sync(name)
    assert a.request("PATCH", f"/api/v1/courses/{cid}", {"notes": "unsynced on A"})[0] == 200
    if hubs.kind == "sql":
        command = [sys.executable, "seed.py", "data/seed.json", "--db", hubs.store_env["SQLITE_PATH"], "--reset"]
    else:
        command = [sys.executable, "seed_mongo.py", "data/seed.json", "--uri", hubs.store_env["MONGO_URI"],
                   "--db", hubs.store_env["MONGO_DB"]]
    seeded = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert seeded.returncode == 0, seeded.stderr
    for name in ("A", "B", "A", "B"):
        hubs.sync(name)
    for srv in (a, b):
        status = srv.request("GET", "/api/v1/sync/status")[1]["data"]
        assert status["hubResets"] and status["lastError"] is None
        notes = {c["id"]: c["notes"] for c in courses(srv)}
        assert notes == {cid: "unsynced on A", "b-course": ""}
    assert sorted(hubs.hub_seqs()) == sorted({a.request("GET", "/api/v1/sync/status")[1]["data"]["deviceId"],
                                              b.request("GET", "/api/v1/sync/status")[1]["data"]["deviceId"]})


@pytest.mark.wire_when_real
def test_a_device_set_up_for_another_user_refuses_the_token_and_writes_nothing(hubs):
    hub = hubs.hub()
    wrong = hubs.device("W", hub, hubs.token(USER), user=OTHER)
    create(wrong, "/api/v1/courses", {"title": "Someone else's", "source": "https://a.b"})
    status, body = wrong.round()
    assert status == 503 and body["error"]["code"] == "hub_refused"
    assert f"belongs to user '{USER}'" in body["error"]["message"]
    assert hubs.hub_seqs() == {}


def titles(srv: ServerProcess) -> set[str]:
    return {c["title"] for c in courses(srv)}


def assert_gapless(hubs: Hubs) -> None:
    for origin, seqs in hubs.hub_seqs().items():
        assert seqs == list(range(1, len(seqs) + 1)), f"the hub's log of {origin} has a hole: {seqs}"


def add(srv: ServerProcess, title: str) -> None:
    create(srv, "/api/v1/courses", {"id": title, "title": title, "source": "https://a.b"})


def test_a_hub_restored_from_an_older_backup_gets_every_acknowledged_edit_back(hubs):
    hub = hubs.hub()
    a, b = hubs.device("A", hub, hubs.token()), hubs.device("B", hub, hubs.token())
    add(a, "c1")
    for name in ("A", "B"):
        hubs.sync(name)
    backup = hubs.backup()
    add(a, "c2")
    add(b, "b2")
    for name in ("A", "B", "A", "B"):
        hubs.sync(name)
    assert titles(a) == titles(b) == {"c1", "c2", "b2"}
    hubs.restore(backup)
    add(a, "c3")
    first, second = hubs.sync("A"), hubs.sync("B")
    assert first["hubRolledBack"] and not first["hubReset"] and first["error"] is None
    assert second["hubRolledBack"] and second["error"] is None
    for name in ("A", "B"):
        hubs.sync(name)
    c = hubs.device("C", hub, hubs.token())
    hubs.sync("C")
    assert titles(a) == titles(b) == titles(c) == {"c1", "c2", "b2", "c3"}
    for name in ("A", "B"):
        status = hubs.status(name)
        assert status["pending"]["count"] == 0 and status["lastError"] is None
        assert len(status["hubRollbacks"]) == 1 and status["hubRollbacks"][0]["changes"] == 2
    assert [r["foundBy"] for name in ("A", "B") for r in hubs.status(name)["hubRollbacks"]] == [
        "this device", "another device"]
    assert hubs.status("C")["hubRollbacks"] == [], "a device that joined later lost nothing"
    with urllib.request.urlopen(f"http://127.0.0.1:{b.port}/sync", timeout=30) as resp:
        page = resp.read().decode()
    assert "Hub restored from a backup" in page and "another of your devices noticed" in page
    assert_gapless(hubs)


@pytest.mark.wire_when_real
def test_a_hub_recreated_empty_while_a_device_is_retired_gets_its_edits_from_another(hubs):
    hub = hubs.hub()
    a, b = hubs.device("A", hub, hubs.token()), hubs.device("B", hub, hubs.token())
    add(a, "c1")
    for name in ("A", "B"):
        hubs.sync(name)
    assert b.request("PATCH", "/api/v1/courses/c1", {"notes": "from the phone"})[0] == 200
    add(b, "b1")
    for name in ("B", "A"):
        hubs.sync(name)
    hubs.devices.pop("B").stop()  # the phone is retired
    hubs.restore(None)  # the hub's store is recreated empty: every token is gone with it
    hubs.devices.pop("A").stop()
    a = hubs.device("A", hub, hubs.token())
    assert hubs.sync("A")["error"] is None  # (the round at start has met the new hub already)
    status = hubs.status("A")
    assert len(status["hubResets"]) == 1 and status["pending"]["count"] == 0 and status["lastError"] is None
    assert len(hubs.hub_seqs()) == 2, "A's origin and the phone's, relayed"
    c = hubs.device("C", hub, hubs.token())
    hubs.sync("C")
    assert titles(c) == {"c1", "b1"}
    assert {x["id"]: x["notes"] for x in courses(c)}["c1"] == "from the phone"
    assert_gapless(hubs)


@pytest.mark.wire_when_real
def test_a_store_copied_to_a_new_laptop_with_a_new_token_goes_on_and_delivers_its_edits(hubs):
    hub = hubs.hub()
    a = hubs.device("A", hub, hubs.token())  # no push on write: "unsynced" stays so
    add(a, "c1")
    hubs.sync("A")
    add(a, "unsynced")
    old_origin = hubs.status("A")["deviceId"]
    hubs.devices.pop("A").stop()
    shutil.copyfile(hubs.tmp_path / "A.sqlite3", hubs.tmp_path / "A2.sqlite3")
    laptop = hubs.device("A2", hub, hubs.token())
    assert hubs.sync("A2")["error"] is None  # (the round at start has met the hub already)
    status = hubs.status("A2")
    assert [r["from"] for r in status["originRestarts"]] == [old_origin] and status["deviceId"] != old_origin
    assert status["pending"]["count"] == 0 and status["lastError"] is None
    assert hubs.sync("A2")["error"] is None, "the next round is an ordinary one"
    c = hubs.device("C", hub, hubs.token())
    hubs.sync("C")
    assert titles(c) == titles(laptop) == {"c1", "unsynced"}
    assert_gapless(hubs)


@pytest.mark.wire_when_real
def test_a_hub_put_back_to_each_earlier_point_of_a_history_loses_nothing(hubs):
    hub = hubs.hub()
    a, b = hubs.device("A", hub, hubs.token()), hubs.device("B", hub, hubs.token())
    script = [
        lambda: add(a, "c1"),
        lambda: add(b, "b1"),
        lambda: a.request("PATCH", "/api/v1/courses/b1", {"notes": "A's note"}),
        lambda: b.request("DELETE", "/api/v1/courses/c1"),
        lambda: add(a, "c2"),
    ]
    backups = []
    for step in script:
        backups.append(hubs.backup())
        step()
        for name in ("A", "B", "A"):
            hubs.sync(name)
    final = {c["id"]: c["notes"] for c in courses(a)}
    assert final == {"b1": "A's note", "c2": ""}
    for n, backup in reversed(list(enumerate(backups))):
        hubs.restore(backup)
        for name in ("B", "A", "B"):
            assert hubs.sync(name)["error"] is None
        for srv in (a, b):
            assert {c["id"]: c["notes"] for c in courses(srv)} == final, f"restored to before step {n}"
        assert hubs.status("A")["pending"]["count"] == hubs.status("B")["pending"]["count"] == 0
        assert_gapless(hubs)
    newcomer = hubs.device("C", hub, hubs.token())
    hubs.sync("C")
    assert {c["id"]: c["notes"] for c in courses(newcomer)} == final


@pytest.mark.wire_when_real
def test_a_write_is_pushed_soon_after_it_is_answered_and_a_burst_goes_in_one_round(hubs):
    hub = hubs.hub()
    a = hubs.device("A", hub, hubs.token(), SYNC_PUSH_ON_WRITE="1")  # its timer runs once an hour
    wait_for(lambda: a.request("GET", "/api/v1/sync/status")[1]["data"]["lastSuccess"], 120, "the first round")
    rounds = a.request("GET", "/api/v1/sync/status")[1]["data"]["totals"]["rounds"]
    for n in range(20):
        add(a, f"burst{n}")
    origin = hubs.status("A")["deviceId"]
    wait_for(lambda: len(hubs.hub_seqs().get(origin, [])) == 20, 120, "the burst at the hub")
    # The round that pushed the last of them moves the cursor a moment after the hub has them.
    status = wait_for(lambda: (s := hubs.status("A"))["pending"]["count"] == 0 and s, 120, "nothing pending")
    # 20 writes take some tens of ms; a round waits 0.05 s for the writes after the first, and
    # writes made while a round runs wait for one more.
    assert status["totals"]["rounds"] - rounds < 10, "a burst of writes is not a round per write"


@pytest.mark.wire_when_real
def test_writes_with_the_hub_down_are_answered_and_wait_for_the_retry(hubs):
    hub = hubs.hub()
    a = hubs.device("A", hub, hubs.token(), SYNC_PUSH_ON_WRITE="1")
    wait_for(lambda: a.request("GET", "/api/v1/sync/status")[1]["data"]["lastSuccess"], 120, "the first round")
    hub.stop()
    for n in range(5):
        add(a, f"offline{n}")
    wait_for(lambda: hubs.status("A")["state"] == "backing_off", 120, "a failed push to back off")
    rounds = hubs.status("A")["totals"]["rounds"]
    for n in range(5):
        add(a, f"more{n}")
    assert hubs.status("A")["totals"]["rounds"] == rounds, "while backing off a write starts no round"
    hub.start()
    assert hubs.sync("A")["pushed"] == 10


@pytest.mark.wire_when_real
def test_push_on_write_can_be_turned_off(hubs):
    hub = hubs.hub()
    a = hubs.device("A", hub, hubs.token(), SYNC_PUSH_ON_WRITE="0")
    wait_for(lambda: a.request("GET", "/api/v1/sync/status")[1]["data"]["lastSuccess"], 120, "the first round")
    add(a, "waits")
    time.sleep(1.5)
    assert hubs.hub_seqs() == {} and hubs.status("A")["pending"]["count"] == 1
    assert hubs.sync("A")["pushed"] == 1
