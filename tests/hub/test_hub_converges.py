"""The five ways a hub's history broke a device (issue 35), each over real processes: hub servers
(`python -m server --hub`, on a SQLite file and on the wire tier's MongoDB) and devices
(`python -m server`), the hub restored as an operator does (stopped, its file copied back,
started; a MongoDB restored under it), a sibling device or a hostile body sent by the test
itself. Each failed on 0d20bb4. The same cases over every kind of hub store, in process, are in
tests/hub/test_hub_restores.py."""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
from pathlib import Path

import bson
import orjson
import pymongo
import pytest

from server.connectors.factory import get_db_connector
from server.core.config import Settings
from server.sync.http_hub import HubClient
from tests.conftest import WIRE
from tests.e2e.test_e2e_devices import courses, wait_for
from tests.hub.test_hub_process import USER, Hubs, add, assert_gapless, titles
from tests.procs import ServerProcess, raw_gzip_push
from tests.synckit import course


@pytest.fixture(params=["sql", WIRE])
def hubs(request, tmp_path):
    uri = request.getfixturevalue("wire_uri") if request.param == "wire" else None
    made = Hubs(tmp_path, request.param, uri)
    yield made
    made.stop()


# Each call of a device to the hub may take long on a loaded machine (the Hubs harness's 1.5 s is
# for its own tests of outages): the round must not fail for a slow answer.
PATIENT = {"HUB_TIMEOUT_MS": "10000"}


def kill_and_restore(hubs: Hubs, hub: ServerProcess, backup: object) -> None:
    """The hub process dies where it stands; its store is put back from `backup`; it starts again."""
    hub.kill()
    hubs.restore(backup)  # a SQLite hub is started again by it
    if hubs.kind != "sql":
        hub.start()


def bookmark(hubs: Hubs, name: str) -> dict:
    """The device's sync bookmark, read from its store file while it runs."""
    conn = sqlite3.connect(hubs.tmp_path / f"{name}.sqlite3", timeout=5)
    try:
        row = conn.execute("SELECT value FROM sync_state WHERE key = 'hub'").fetchone()
        return json.loads(row[0]) if row else {}
    finally:
        conn.close()


def client(hub: ServerProcess, token: str) -> HubClient:
    made = HubClient(f"http://127.0.0.1:{hub.port}", token, user_id=USER, timeout_ms=10_000)
    made.connect()
    return made


# 1 ------------------------------------------------------------------------------------------
def test_a_catch_up_cut_by_a_restore_leaves_the_new_device_short_of_nothing(hubs):
    hub = hubs.hub()
    phone = hubs.device("P", hub, hubs.token(), SYNC_PUSH_ON_WRITE="0", **PATIENT)
    tablet_token = hubs.token()  # before the backup: the restored hub knows it
    for n in range(120):
        add(phone, f"a{n:03d}")
    hubs.sync("P")
    backup = hubs.backup()
    for n in range(6):  # after the backup, and last in the records' order: on the pages after the cut
        add(phone, f"z{n}")
    hubs.sync("P")
    assert hubs.cli("compact", USER).returncode == 0  # a new device must catch up from the records
    # The tablet's first round (at its start) takes the records one a page; the hub dies in the middle.
    hubs.device("T", hub, tablet_token, SYNC_BATCH_SIZE="1", SYNC_PUSH_ON_WRITE="0", SYNC_LIVE="0", **PATIENT)
    wait_for(lambda: bookmark(hubs, "T").get("snapshot"), 120, "the tablet's catch-up under way")
    kill_and_restore(hubs, hub, backup)
    assert bookmark(hubs, "T").get("snapshot"), "the restore must land in the middle of the catch-up"
    hubs.sync("T")  # first, on the restored hub
    hubs.sync("P")  # gives back what the hub lost
    hubs.sync("T")
    expected = {*(f"a{n:03d}" for n in range(120)), *(f"z{n}" for n in range(6))}
    assert titles(hubs.devices["T"]) == titles(phone) == expected, "nothing silently missing"
    status = hubs.status("T")
    assert status["pending"]["count"] == 0 and status["lastError"] is None
    assert status["catchUpRestarts"], "it says it started the catch-up again"
    assert_gapless(hubs)


# 2 ------------------------------------------------------------------------------------------
def test_restores_one_after_another_wedge_no_device(hubs):
    hub = hubs.hub(HUB_MAX_ORIGINS="3")  # an origin of its own, and room for two more
    laptop = hubs.device("L", hub, hubs.token(), SYNC_PUSH_ON_WRITE="0", **PATIENT)
    phone = hubs.device("P", hub, hubs.token(), SYNC_PUSH_ON_WRITE="0", **PATIENT)
    add(laptop, "c1")
    for name in ("L", "P"):
        hubs.sync(name)
    for n in range(5):  # each night's backup put back the next day, after the logs were trimmed
        backup = hubs.backup()
        for field in ("title", "notes"):
            assert laptop.request("PATCH", "/api/v1/courses/c1", {field: f"{field} {n}"})[0] == 200
        for name in ("L", "P", "L", "P"):
            hubs.sync(name)
        assert hubs.cli("compact", USER).returncode == 0
        for name in ("L", "P"):
            hubs.sync(name)  # each drops what every device has pulled from its log
        hubs.restore(backup)
        report = hubs.sync("L")
        assert report["error"] is None and report["healed"] > 0, f"restore {n}: {report}"
    add(laptop, "after")
    for name in ("L", "P", "L", "P"):
        assert hubs.sync(name)["error"] is None
    assert titles(phone) == titles(laptop) == {"title 4", "after"}
    assert hubs.status("L")["pending"]["count"] == 0


# 3 ------------------------------------------------------------------------------------------
def test_a_siblings_relays_under_another_devices_origin_are_not_taken_and_wedge_nothing(hubs):
    hub = hubs.hub(HUB_MAX_ORIGINS="3")
    victim = hubs.device("V", hub, hubs.token(), SYNC_PUSH_ON_WRITE="0", **PATIENT)
    sibling = client(hub, hubs.token())
    add(victim, "c0")
    hubs.sync("V")
    origin = hubs.status("V")["deviceId"]
    try:
        for n in range(5):  # before each of the victim's rounds, a no-op at its next number
            top = max(hubs.hub_seqs()[origin])
            forged = {"origin": origin, "seq": top + 1, "hlc": f"000000000000001-000000-{origin}", "kind": "user",
                      "id": USER, "courseId": None, "op": "upsert", "fields": {"displayName": "not mine"},
                      "bases": {"displayName": ""}}
            answer = sibling.relay_changes([forged])
            assert answer["applied"] == 0 and answer.get("owned") == {origin: top}, answer
            add(victim, f"c{n + 1}")
            assert hubs.sync("V")["error"] is None
    finally:
        sibling.close()
    status = hubs.status("V")
    assert status["originRestarts"] == [] and status["deviceId"] == origin and status["pending"]["count"] == 0
    newcomer = hubs.device("N", hub, hubs.token(), **PATIENT)
    hubs.sync("N")
    assert titles(newcomer) == {f"c{n}" for n in range(6)} and "not mine" not in json.dumps(courses(newcomer))
    assert_gapless(hubs)


def test_claims_made_at_once_through_two_hub_processes_never_pass_the_quota(hubs):
    hubs_up = [hubs.hub(HUB_MAX_ORIGINS="2"), hubs.hub(HUB_MAX_ORIGINS="2")]
    token = hubs.token()
    clients = [client(hubs_up[n % 2], token) for n in range(8)]
    start, answers = threading.Barrier(8), []

    def push(n: int) -> None:
        start.wait()
        change = {"origin": f"o{n}", "seq": 1, "hlc": f"000000000000001-000000-o{n}", "kind": "user", "id": USER,
                  "courseId": None, "op": "upsert", "fields": {"displayName": "x"}, "bases": {"displayName": ""}}
        try:
            answers.append(clients[n].apply_changes([change])["applied"])
        except Exception as exc:  # the 429s: the hub refused past the quota
            answers.append(str(exc))

    threads = [threading.Thread(target=push, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c in clients:
        c.close()
    assert len(answers) == 8 and answers.count(1) <= 2, answers
    assert len(hubs.hub_seqs()) == answers.count(1) <= 2, "four at once to each of two hubs: two origins at most"


# 4 ------------------------------------------------------------------------------------------
def test_what_a_heal_changes_reaches_every_device_and_a_heal_writes_as_no_sibling(hubs, tmp_path):
    hub = hubs.hub()
    laptop = hubs.device("L", hub, hubs.token(), SYNC_PUSH_ON_WRITE="0", **PATIENT)
    phone = hubs.device("P", hub, hubs.token(), SYNC_PUSH_ON_WRITE="0", **PATIENT)
    add(laptop, "c1")
    for name in ("L", "P"):
        hubs.sync(name)
    laptop_origin = hubs.status("L")["deviceId"]
    # A device of the same user (buggy or hostile) with records of its own and a forged one.
    own = get_db_connector("sql", Settings(), path=str(tmp_path / "hostile.sqlite3"), user_id=USER, origin="dhostile1")
    own.connect()
    course(own, id="given", title="given back")
    forger = get_db_connector("sql", Settings(), path=str(tmp_path / "forger.sqlite3"), user_id=USER,
                              origin=laptop_origin)
    forger.connect()
    course(forger, id="c1", title="written as the laptop")
    hostile = client(hub, hubs.token())
    try:
        forged = hostile.heal(forger.snapshot_page(None, 10)["records"])  # no hold: on 0d20bb4 heard by nobody
        assert forged["applied"] == 0 and forged["skipped"] == [laptop_origin], forged
        given = hostile.heal(own.snapshot_page(None, 10)["records"], log_as="h0123456789ab")
        assert given["applied"] == 1 and given["logged"] == {"h0123456789ab": 1}, given
    finally:
        hostile.close()
        own.close()
        forger.close()
    for name in ("P", "L"):
        hubs.sync(name)
    for srv in (laptop, phone):
        assert {c["id"]: c["title"] for c in courses(srv)} == {"c1": "c1", "given": "given back"}
    newcomer = hubs.device("N", hub, hubs.token(), **PATIENT)
    hubs.sync("N")
    assert courses(newcomer) == courses(phone) == courses(laptop)


# 5 ------------------------------------------------------------------------------------------
BURST = 20  # refused changes, each with a 2 MB key name (2 KB gzipped)
KEPT = 10  # HUB_MAX_QUARANTINED
BOUND = KEPT * 2048 + 256 * 1024  # what the burst may add to the hub's store at most


def test_a_burst_of_the_worst_refusals_grows_the_hub_by_a_bounded_amount(hubs):
    hub = hubs.hub(HUB_MAX_QUARANTINED=str(KEPT))
    token = hubs.token()
    before, reasons = stored_bytes(hubs), []
    for seq in range(1, BURST + 1):
        change = {"origin": "d-flood", "seq": seq, "hlc": "000000000000001-000000-d-flood", "kind": "user",
                  "id": USER, "courseId": None, "op": "upsert", "fields": {}, "bases": {}, f"{seq}" + "k" * 2**21: 1}
        body = gzip.compress(orjson.dumps({"changes": [change]}), 9)
        assert len(body) < 8192
        status, answer = raw_gzip_push(hub.port, token, body)
        assert status == 200, answer[:300]
        reasons += [q["reason"] for q in json.loads(answer)["data"]["quarantined"]]
    grown = stored_bytes(hubs) - before
    assert grown < BOUND, f"{BURST} refusals grew the hub by {grown} bytes (bound {BOUND})"
    assert len(quarantine(hubs)) == KEPT and len(reasons) == BURST, "every refusal is answered, so many kept"
    assert all(len(r) <= 300 and r.startswith("unknown keys ['") for r in reasons)


def stored_bytes(hubs: Hubs) -> int:
    """What the hub's store takes: the SQLite file with its log folded in, or the quarantine's
    documents on MongoDB (as BSON)."""
    if hubs.kind != "sql":
        return sum(len(bson.encode(doc)) for doc in quarantine(hubs))
    path = Path(hubs.store_env["SQLITE_PATH"])
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def quarantine(hubs: Hubs) -> list[dict]:
    if hubs.kind == "sql":
        conn = sqlite3.connect(hubs.store_env["SQLITE_PATH"], timeout=30)
        try:
            return [json.loads(r[0]) for r in conn.execute("SELECT body FROM quarantine")]
        finally:
            conn.close()
    client = pymongo.MongoClient(hubs.store_env["MONGO_URI"], serverSelectionTimeoutMS=3000)
    try:
        return list(client[hubs.store_env["MONGO_DB"]].quarantine.find({}))
    finally:
        client.close()
