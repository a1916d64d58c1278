"""The hub server's /heal, on a SQLite and a Mongo hub store: a device's records merged by the usual
rule and checked at the door, a hold only over the device's own origins, bad bodies refused with
nothing written; and, over real HTTP, a hub file put back from an old backup healed by devices
whose logs were trimmed."""

from __future__ import annotations

import shutil
import sqlite3
import threading

import pytest

from server.connectors.factory import get_db_connector
from server.core.config import Settings
from server.sync.engine import run_round
from server.sync.http_hub import HubClient
from tests.hub import test_hub_server
from tests.hub.test_hub_server import USER, Hub
from tests.synckit import course, visible

hub, device_changes = test_hub_server.hub, test_hub_server.device_changes  # its fixtures, here too


def records_of(sql_factory, name: str, **titles: str) -> list[dict]:
    dev = sql_factory(name, user_id=USER, origin=name)
    dev.connect()
    for record_id, title in titles.items():
        course(dev, id=record_id, title=title)
    return dev.snapshot_page(None, 100)["records"]


class TestHeal:
    def test_records_are_merged_and_the_devices_own_origins_held(self, hub, sql_factory):
        _, token = hub.token(name="phone")
        records = records_of(sql_factory, "dev-b", c1="one", c2="two")
        status, body = hub.call("POST", "/heal", token, {"records": records[:1], "hold": None})
        assert status == 200 and body["data"] == {"received": 1, "applied": 1, "conflicts": 0, "quarantined": [],
                                                  "held": {}, "logged": {}, "skipped": []}
        status, body = hub.call("POST", "/heal", token, {"records": records, "hold": [
            {"origin": "dev-b", "seq": 1}, {"origin": "h0001", "seq": 1}, {"origin": "dev-b", "seq": 2}]})
        assert status == 200 and body["data"]["applied"] == 1 and body["data"]["held"] == {"dev-b": 2, "h0001": 1}
        store = hub.app.extensions["hub_stores"].for_user(USER)
        assert {c["id"]: c["title"] for c in store.get_courses()} == {"c1": "one", "c2": "two"}
        assert store.changes_since({}, 10) == [], "nothing is logged"
        # A device whose cursor lacks the hold is sent the records.
        status, body = hub.call("POST", "/shortfall", token, {"cursor": {}})
        assert body["data"]["compacted"] == {"dev-b": 2, "h0001": 1}
        assert body["data"]["floors"] == {}, "floors only of the origins asked about"
        status, body = hub.call("POST", "/shortfall", token, {"cursor": {"dev-b": 2}})
        assert body["data"]["floors"] == {"dev-b": 2}
        assert hub.registry.origin_owner(USER, "h0001") == hub.registry.devices(USER)[0].device_id

    def test_a_waiting_device_hears_of_records_it_lacks(self, hub, sql_factory):
        _, healer = hub.token(name="laptop")
        _, waiting = hub.token(name="phone")
        records = records_of(sql_factory, "dev-b", c1="one")
        hub.call("POST", "/heal", healer, {"records": records, "hold": [{"origin": "h0001", "seq": 1}]})
        status, body = hub.call("POST", "/wait", waiting, {"cursor": {}, "excludeOrigin": "dev-c", "seconds": 0})
        assert status == 200 and body["data"]["changed"] is True, "the records it lacks are news: a round catches up"
        status, body = hub.call("POST", "/wait", waiting, {"cursor": {"h0001": 1}, "seconds": 0})
        assert body["data"]["changed"] is False, "once it holds them, nothing"

    def test_a_hold_over_another_devices_origin_is_refused_and_nothing_is_merged(self, hub, sql_factory,
                                                                                 device_changes):
        _, owner = hub.token(name="laptop")
        _, other = hub.token(name="phone")
        assert hub.call("POST", "/push", owner, {"changes": device_changes})[0] == 200
        store = hub.app.extensions["hub_stores"].for_user(USER)
        before = store.dump_records()
        records = records_of(sql_factory, "dev-b", c1="overwritten")
        status, body = hub.call("POST", "/heal", other, {"records": records, "hold": [{"origin": "dev-a", "seq": 99}]})
        assert status == 403 and body["error"]["code"] == "origin_not_yours"
        assert store.dump_records() == before and store.floors() == {}
        assert store.tops({"dev-a"}) == {"dev-a": 2}

    def test_a_record_the_door_refuses_is_quarantined_with_why_and_the_rest_merged(self, hub, sql_factory):
        _, token = hub.token()
        [good] = records_of(sql_factory, "dev-b", c1="one")
        bad = {**good, "id": "c2", "fields": {**good["fields"], "title": 7}}
        status, body = hub.call("POST", "/heal", token, {"records": [bad, good, {"kind": "course"}]})
        assert status == 200 and body["data"]["applied"] == 1
        reasons = [q["reason"] for q in body["data"]["quarantined"]]
        assert len(reasons) == 2 and all(r.startswith("a record a device gave back: ") for r in reasons)
        assert "fields.title" in reasons[0]
        store = hub.app.extensions["hub_stores"].for_user(USER)
        assert [c["id"] for c in store.get_courses()] == ["c1"] and store.count_quarantine() == 2

    def test_what_a_heal_changes_is_logged_under_the_healers_heal_origin_and_a_siblings_writes_are_not_taken(
            self, hub, sql_factory):
        from server.core.changes import is_heal_origin

        sibling_id, sibling = hub.token(name="laptop")
        _, healer = hub.token(name="phone")
        [own] = records_of(sql_factory, "dev-b", c1="the phone's")
        laptop = sql_factory("dev-l", user_id=USER, origin="dev-l")
        laptop.connect()
        course(laptop, id="c2", title="the laptop's")
        assert hub.call("POST", "/push", sibling, {"changes": laptop.changes_since({}, 10)})[0] == 200
        laptop.update("course", None, "c2", {"title": "written as the laptop"})  # never pushed by it
        forged = laptop.snapshot_page(None, 10)["records"]
        status, body = hub.call("POST", "/heal", healer, {"records": [own, *forged], "logAs": "h0123456789ab"})
        assert status == 200 and body["data"]["skipped"] == ["dev-l"] and body["data"]["logged"] == {
            "h0123456789ab": 1}
        store = hub.app.extensions["hub_stores"].for_user(USER)
        assert {c["id"]: c["title"] for c in store.get_courses()} == {"c1": "the phone's", "c2": "the laptop's"}
        [logged] = store.changes_since({"dev-l": 1}, 10)
        assert (logged["origin"], logged["seq"], logged["id"], logged["hlc"]) == (
            "h0123456789ab", 1, "c1", own["clocks"]["title"]), "under the heal origin, with the stamp it gives back"
        assert is_heal_origin(logged["origin"]) and hub.registry.origin_owner(USER, "h0123456789ab") != sibling_id
        again = hub.call("POST", "/heal", healer, {"records": [own], "logAs": "h0123456789ab"})[1]["data"]
        assert (again["applied"], again["logged"]) == (0, {}), "what the hub holds changes nothing, logs nothing"
        status, body = hub.call("POST", "/heal", sibling, {"records": [], "logAs": "h0123456789ab"})
        assert (status, body["error"]["code"]) == (403, "origin_not_yours"), "a heal origin is its healer's"
        hub.registry.revoke(sibling_id)  # gone for good: what only another device can give back, it does
        status, body = hub.call("POST", "/heal", healer, {"records": forged, "logAs": "h0123456789ab"})
        assert body["data"]["skipped"] == [] and body["data"]["logged"] == {"h0123456789ab": 2}
        assert {c["id"]: c["title"] for c in store.get_courses()}["c2"] == "written as the laptop"

    @pytest.mark.parametrize("body, field", [
        ({}, "records"), ({"records": {}}, "records"), ({"records": [{}] * 2001}, "records"),
        ({"records": [], "hold": {"dev-a": 1}}, "hold"),
        ({"records": [], "hold": [{"origin": "a b", "seq": 1}]}, "hold"),
        ({"records": [], "hold": [{"origin": "dev-a", "seq": 0}]}, "hold"),
        ({"records": [], "hold": [{"origin": "dev-a", "seq": "1"}]}, "hold"),
        ({"records": [], "hold": [{"origin": "dev-a", "seq": 1, "more": 1}]}, "hold"),
        ({"records": [], "hold": [{"origin": f"h{n}", "seq": 1} for n in range(9)]}, "hold"),
        ({"records": [], "more": 1}, "more"),
        ({"records": [], "logAs": "dev-a"}, "logAs"), ({"records": [], "logAs": "h0123456789AB"}, "logAs"),
        ({"records": [], "logAs": 7}, "logAs"),
    ])
    def test_a_heal_body_of_another_shape_is_refused(self, hub, body, field):
        _, token = hub.token()
        status, answer = hub.call("POST", "/heal", token, body)
        assert status == 400 and field in answer["error"]["fields"]
        assert hub.app.extensions["hub_stores"].for_user(USER).floors() == {}

    def test_no_token_no_heal(self, hub):
        assert hub.call("POST", "/heal", None, {"records": []})[0] == 401


def test_a_hub_file_put_back_from_an_old_backup_is_healed_by_devices_that_trimmed_their_logs(tmp_path):
    from waitress import create_server

    path = tmp_path / "hub.sqlite3"
    settings = Settings(db_connector="sql", sqlite_path=str(path))

    def serve():
        base = get_db_connector("sql", Settings(), path=str(path), user_id="hub-owner")
        base.connect()
        hub = Hub(base, settings)
        server = create_server(hub.app, host="127.0.0.1", port=0, threads=4)
        threading.Thread(target=server.run, daemon=True).start()
        return hub, server, base

    served, server, base = serve()
    tokens = {name: served.token(name=name)[1] for name in ("laptop", "phone")}
    devices = {}
    for name in tokens:
        devices[name] = get_db_connector("sql", Settings(), path=str(tmp_path / f"{name}.sqlite3"), user_id=USER)
        devices[name].connect()

    def sync(name: str):
        client = HubClient(f"http://127.0.0.1:{server.effective_port}", tokens[name], user_id=USER)
        try:
            report = run_round(devices[name], client)
        finally:
            client.close()
        assert report.error is None, report.error
        return report

    laptop, phone = devices["laptop"], devices["phone"]
    course(laptop, id="c1", title="first")
    for name in ("laptop", "phone", "laptop"):
        sync(name)
    src, dst = sqlite3.connect(path), sqlite3.connect(tmp_path / "backup.sqlite3")
    src.backup(dst)  # the operator's nightly copy (SQLite's backup: a live file copied misses its WAL)
    src.close()
    dst.close()
    course(laptop, id="c2", title="second")
    course(phone, id="p1", title="phone's")
    for name in ("laptop", "phone", "laptop", "phone"):
        sync(name)
    assert served.app.test_cli_runner().invoke(args=["hub", "compact", USER]).exit_code == 0
    trimmed = sum(sync(name).trimmed for name in ("laptop", "phone"))
    assert trimmed >= 3, "the devices dropped what every device had pulled"

    server.close()
    served.app.extensions["hub_stores"].close()
    base.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"hub.sqlite3{suffix}").unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "backup.sqlite3", path)
    served, server, base = serve()
    try:
        healed = sync("laptop").healed + sync("phone").healed
        assert healed > 0
        for name in ("laptop", "phone", "laptop", "phone"):
            sync(name)
        store = served.app.extensions["hub_stores"].for_user(USER)
        assert {c["id"] for c in store.get_courses()} == {"c1", "c2", "p1"}
        assert visible(laptop) == visible(phone) == visible(store)
        tokens["tablet"] = served.token(name="tablet")[1]
        devices["tablet"] = get_db_connector("sql", Settings(), path=str(tmp_path / "tablet.sqlite3"), user_id=USER)
        devices["tablet"].connect()
        joined = sync("tablet")  # the heals' changes are in the log: no records needed
        assert joined.pulled > 0 and joined.from_snapshot == 0
        assert visible(devices["tablet"]) == visible(laptop)
    finally:
        server.close()
        served.app.extensions["hub_stores"].close()
        for dev in devices.values():
            dev.close()
