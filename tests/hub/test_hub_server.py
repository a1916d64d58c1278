"""The hub server's protocol (`python -m server --hub`) in process, on a SQLite and a Mongo hub
store: tokens decide the user, origins belong to the device that first pushed them, bad bodies
and bad changes are refused with a reason, and nothing refused is written."""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest

from server.api import create_hub_app
from server.connectors.factory import registry_for
from server.connectors.registry import SEEN_EVERY_SECONDS, Position
from server.core.config import Settings
from tests.synckit import course

# Wire tier: a real MongoDB only (conftest); the hub's routes in process.
pytestmark = pytest.mark.wire_when_real

USER, OTHER = "learner", "someone-else"


class Hub:
    def __init__(self, base, settings):
        self.base = base
        self.app = create_hub_app(settings, store=base, testing=True)
        self.client = self.app.test_client()
        self.registry = registry_for(base)

    def token(self, user: str = USER, name: str = "") -> tuple[str, str]:
        device, token = self.registry.add(user, name)
        return device.device_id, token

    def call(self, method: str, path: str, token: str | None, body=None, gzipped: bool = False, **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
            if gzipped:
                data = gzip.compress(data)
                headers["Content-Encoding"] = "gzip"
        resp = self.client.open(f"/hub/v1{path}", method=method, data=data, headers={**headers, **kw})
        return resp.status_code, resp.get_json()

    def everything(self, user: str = USER) -> list:
        return self.app.extensions["hub_stores"].for_user(user).changes_since({}, 10_000)


@pytest.fixture
def hub(store_factory, tmp_path):
    base = store_factory("hub", user_id="hub-owner")
    base.connect()
    kind = "sql" if store_factory.kind == "sql" else "mongo"
    settings = Settings(db_connector=kind, sqlite_path=getattr(base, "path", str(tmp_path / "x.sqlite3")))
    made = Hub(base, settings)
    yield made
    made.app.extensions["hub_stores"].close()


@pytest.fixture
def device_changes(sql_factory):
    """A device of USER with origin dev-a and two changes in its log."""
    dev = sql_factory("dev-a", user_id=USER, origin="dev-a")
    dev.connect()
    course(dev, id="c1", title="Mine")
    dev.update("course", None, "c1", {"notes": "private notes"})
    return dev.changes_since({}, 100)


class TestTokens:
    @pytest.mark.parametrize("header", [None, "Bearer ", "Basic abc", "Bearer csh_not-a-token-anyone-made"])
    def test_no_token_or_an_unknown_one_is_refused_and_changes_nothing(self, hub, device_changes, header):
        extra = {"Authorization": header} if header is not None else {}
        resp = hub.client.post("/hub/v1/push", json={"changes": device_changes}, headers=extra)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] in ("unauthorized", "unknown_token")
        for path in ("/epoch",):
            assert hub.client.get(f"/hub/v1{path}", headers=extra).status_code == 401
        assert hub.everything() == []

    @pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
    def test_the_scheme_is_read_in_any_case(self, hub, scheme):
        _, token = hub.token()
        assert hub.client.get("/hub/v1/epoch", headers={"Authorization": f"{scheme} {token}"}).status_code == 200

    def test_a_revoked_token_is_refused_at_once(self, hub, device_changes):
        device, token = hub.token()
        assert hub.call("GET", "/epoch", token)[0] == 200
        assert [d.device_id for d in hub.registry.revoke(device)] == [device]
        status, body = hub.call("POST", "/push", token, {"changes": device_changes})
        assert status == 401 and body["error"]["code"] == "token_revoked"
        revoked_at = hub.registry.find(token).revoked_at
        assert revoked_at and body["error"]["revokedAt"] == revoked_at and revoked_at in body["error"]["message"]
        assert hub.everything() == [] and hub.registry.origin_owner(USER, "dev-a") is None
        assert hub.registry.revoke(device) == []  # already revoked

    def test_revoking_by_token_works_too_and_only_a_hash_is_kept(self, hub):
        device, token = hub.token(name="laptop")
        [listed] = hub.registry.devices(USER)
        assert listed.device_id == device and listed.name == "laptop" and token not in json.dumps(listed.as_dict())
        assert [d.device_id for d in hub.registry.revoke(token)] == [device]
        assert hub.registry.devices(USER)[0].revoked_at is not None
        assert hub.registry.devices(OTHER) == []


class TestOneUserAndTheNext:
    def test_two_devices_of_a_user_share_and_another_user_sees_nothing(self, hub, device_changes):
        _, a = hub.token()
        _, b = hub.token()
        _, stranger = hub.token(OTHER)
        status, body = hub.call("POST", "/push", a, {"changes": device_changes})
        assert status == 200 and body["data"]["applied"] == 2 and body["data"]["quarantined"] == []
        status, body = hub.call("POST", "/pull", b, {"cursor": {}, "limit": 100})
        assert status == 200 and body["data"]["changes"] == device_changes
        # The stranger asks in every way it can think of; the body names no user it could use.
        for ask in ({"cursor": {}}, {"cursor": {"dev-a": 0}}, {"cursor": {}, "onlyOrigin": "dev-a"}):
            status, body = hub.call("POST", "/pull", stranger, ask)
            assert status == 200 and body["data"]["changes"] == []
        status, body = hub.call("POST", "/pull", stranger, {"cursor": {}, "userId": USER})
        assert status == 400
        assert hub.everything(OTHER) == []

    def test_a_device_cannot_push_under_another_devices_origin(self, hub, device_changes, sql_factory):
        _, a = hub.token()
        _, b = hub.token()
        assert hub.call("POST", "/push", a, {"changes": device_changes[:1]})[0] == 200
        other = sql_factory("dev-b", user_id=USER, origin="dev-b")
        other.connect()
        course(other, id="c2")
        mixed = [*other.changes_since({}, 10), *device_changes[1:]]
        status, body = hub.call("POST", "/push", b, {"changes": mixed})
        assert status == 403 and body["error"]["code"] == "origin_not_yours" and "dev-a" in body["error"]["message"]
        assert body["error"]["origin"] == "dev-a"
        assert [ch["origin"] for ch in hub.everything()] == ["dev-a"]
        assert hub.registry.origin_owner(USER, "dev-b") is None  # a refused batch claims nothing
        # The same origin id under another user is that user's own.
        _, stranger = hub.token(OTHER)
        assert hub.call("POST", "/push", stranger, {"changes": device_changes[:1]})[0] == 200

    def test_the_origin_of_a_user_belongs_to_its_first_pusher(self, hub, device_changes):
        first, a = hub.token()
        assert hub.call("POST", "/push", a, {"changes": device_changes[:1]})[0] == 200
        assert hub.registry.origin_owner(USER, "dev-a") == first
        assert hub.call("POST", "/push", a, {"changes": device_changes})[0] == 200  # again: its own


class TestWhatComesIn:
    def test_gzip_bodies_and_answers(self, hub, sql_factory):
        dev = sql_factory("dev-z", user_id=USER, origin="dev-z")
        dev.connect()
        course(dev, id="c1")
        for i in range(10):
            dev.update("course", None, "c1", {"notes": f"note {i}"})
        device_changes = dev.changes_since({}, 100)
        _, a = hub.token()
        status, body = hub.call("POST", "/push", a, {"changes": device_changes}, gzipped=True)
        assert status == 200 and body["data"]["applied"] == 11
        resp = hub.client.post("/hub/v1/pull", json={"cursor": {}, "limit": 100},
                               headers={"Authorization": f"Bearer {a}", "Accept-Encoding": "gzip"})
        assert resp.status_code == 200 and resp.headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(resp.data))["data"]["changes"] == device_changes

    @pytest.mark.parametrize("body, code", [
        ({"changes": "nope"}, "invalid_fields"),
        ({"changes": [], "extra": 1}, "invalid_fields"),
        ({"changes": [{}] * 2001}, "invalid_fields"),
    ])
    def test_a_bad_push_body_is_refused(self, hub, body, code):
        _, a = hub.token()
        status, answer = hub.call("POST", "/push", a, body)
        assert status == 400 and answer["error"]["code"] == code
        assert hub.everything() == []

    @pytest.mark.parametrize("body", [
        {"cursor": []}, {"cursor": {"a": -1}}, {"cursor": {"a": True}}, {"cursor": {}, "limit": 0},
        {"cursor": {}, "limit": 2001}, {"cursor": {}, "excludeOrigin": 5}, {"cursor": {}, "onlyOrigin": ""},
    ])
    def test_a_bad_pull_body_is_refused(self, hub, body):
        _, a = hub.token()
        status, answer = hub.call("POST", "/pull", a, body)
        assert status == 400 and answer["error"]["code"] == "invalid_fields"

    def test_not_json_not_gzip_and_not_an_object(self, hub):
        _, a = hub.token()
        auth = {"Authorization": f"Bearer {a}"}
        resp = hub.client.post("/hub/v1/push", data="changes=1", headers=auth, content_type="text/plain")
        assert resp.status_code == 415
        resp = hub.client.post("/hub/v1/push", data=b"\x1f\x8bnot gzip", content_type="application/json",
                               headers={**auth, "Content-Encoding": "gzip"})
        assert resp.status_code == 400 and "gzip" in resp.get_json()["error"]["message"]
        resp = hub.client.post("/hub/v1/push", data=b"[1]", content_type="application/json", headers=auth)
        assert resp.status_code == 400
        bomb = gzip.compress(b" " * (65 * 1024 * 1024))
        resp = hub.client.post("/hub/v1/push", data=bomb, content_type="application/json",
                               headers={**auth, "Content-Encoding": "gzip"})
        assert resp.status_code == 400 and "inflates" in resp.get_json()["error"]["message"]

    def test_bad_changes_are_refused_one_by_one_with_why(self, hub, device_changes):
        _, a = hub.token()
        bad = {**device_changes[1], "fields": {**device_changes[1]["fields"], "notes": 5}}
        status, body = hub.call("POST", "/push", a, {"changes": [device_changes[0], bad, {"origin": 3}]})
        assert status == 200
        assert body["data"]["applied"] == 1
        reasons = [q["reason"] for q in body["data"]["quarantined"]]
        assert len(reasons) == 2 and any("notes" in r for r in reasons)
        assert [{k: q[k] for k in q if k not in ("reason", "origin", "seq")} for q in body["data"]["quarantined"]] == [
            {"code": "invalid_field", "field": "notes"},
            {"code": "missing_keys", "keys": ["bases", "courseId", "fields", "hlc", "id", "kind", "op", "seq"]}]
        assert [ch["fields"] for ch in hub.everything() if ch["kind"] == "course"] == [device_changes[0]["fields"]]
        # Text no UTF-8 can hold, in a key, a value and an origin: refused and kept, not a crash.
        lone = b'{"changes": [{"origin": "dev-a\\udb9b", "seq": 9, "k\\ud800": "\\udfff"}]}'
        resp = hub.client.post("/hub/v1/push", data=lone, content_type="application/json",
                               headers={"Authorization": f"Bearer {a}"})
        assert resp.status_code == 200 and len(resp.get_json()["data"]["quarantined"]) == 1


class TestTheRest:
    def test_health_says_hub_and_needs_no_token(self, hub):
        resp = hub.client.get("/api/v1/health")
        assert resp.status_code == 200 and resp.get_json()["data"]["role"] == "hub"

    def test_the_device_api_is_not_served_by_a_hub(self, hub):
        assert hub.client.get("/api/v1/courses").status_code == 404

    def test_the_openapi_document_describes_the_protocol(self, hub):
        resp = hub.client.get("/hub/v1/openapi.json")
        assert resp.status_code == 200
        doc = resp.get_json()
        assert set(doc["paths"]) == {"/epoch", "/pull", "/push", "/shortfall", "/wait", "/snapshot", "/heal",
                                     "/round", "/openapi.json", "/pair"}
        assert doc["paths"]["/push"]["post"]["security"] == [{"bearer": []}]
        assert {"401", "403"} <= set(doc["paths"]["/push"]["post"]["responses"])
        assert "Change" in doc["components"]["schemas"]

    def test_the_epoch_is_the_stores(self, hub):
        _, a = hub.token()
        status, body = hub.call("GET", "/epoch", a)
        assert status == 200 and body["data"]["epoch"] == hub.base.hub_epoch()


def test_a_device_of_the_hub_is_made_with_the_cli(hub):
    runner = hub.app.test_cli_runner()
    result = runner.invoke(args=["hub", "add-device", USER, "--name", "phone"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("csh_") and len(token) > 40
    assert hub.call("GET", "/epoch", token)[0] == 200
    listed = runner.invoke(args=["hub", "list-devices", USER])
    [row] = [json.loads(line) for line in listed.output.splitlines()]
    assert row["name"] == "phone" and token not in listed.output
    assert row["quotas"] == {"origins": 0, "originsAllowed": 16, "relayedOrigins": 0, "relayedOriginsAllowed": 64}
    hub.call("POST", "/push", token, {"changes": [noop("o1")]})
    listed = runner.invoke(args=["hub", "list-devices", USER])
    assert json.loads(listed.output.splitlines()[0])["quotas"]["origins"] == 1
    assert runner.invoke(args=["hub", "revoke", row["deviceId"]]).exit_code == 0
    assert hub.call("GET", "/epoch", token)[0] == 401
    assert runner.invoke(args=["hub", "revoke", row["deviceId"]]).exit_code != 0
    assert runner.invoke(args=["hub", "add-device", "../etc"]).exit_code != 0



def test_two_devices_converge_over_http_through_a_mongomock_hub(tmp_path):
    """The whole path in one process: devices' HubClients over real HTTP (waitress on a loopback
    port) to the hub app on a mongomock-ng store."""
    import threading

    import mongomock_ng
    from waitress import create_server

    from server.connectors.factory import get_db_connector
    from server.sync.engine import run_round
    from server.sync.http_hub import HubClient
    from tests.synckit import assert_converged, lecture

    base = get_db_connector("mongo", Settings(), client=mongomock_ng.MongoClient(), db_name="hub", user_id="x")
    base.connect()
    hub = Hub(base, Settings(db_connector="mongo"))
    server = create_server(hub.app, host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.effective_port}"
        devices = {}
        for name in ("a", "b"):
            store = get_db_connector("sql", Settings(), path=str(tmp_path / f"{name}.sqlite3"), user_id=USER,
                                     origin=name)
            store.connect()
            devices[name] = (store, HubClient(url, hub.token()[1]))
        a, b = devices["a"][0], devices["b"][0]
        course(a, id="c1", title="from a")
        lecture(a, "c1", id="l1")
        for name in ("a", "b", "a"):
            assert run_round(*devices[name]).error is None
        b.update("course", None, "c1", {"notes": "from b"})
        for name in ("b", "a"):
            assert run_round(*devices[name]).error is None
        assert a.get_course("c1") == b.get_course("c1") and a.get_course("c1")["notes"] == "from b"

        # What assert_converged compares: every device against the hub's records of the user.
        assert_converged(SimpleNamespace(hub=hub.app.extensions["hub_stores"].for_user(USER),
                                         devices={"a": a, "b": b}))
    finally:
        server.close()
        for store, client in devices.values():
            client.close()
            store.close()


def noop(origin: str, seq: int = 1) -> dict:
    """A valid change that changes next to nothing, under `origin`."""
    return {"origin": origin, "seq": seq, "hlc": f"000000000000001-{seq:06d}-{origin}", "kind": "user", "id": USER,
            "courseId": None, "op": "upsert", "fields": {"displayName": "x"}, "bases": {"displayName": ""}}


class TestQuotas:
    def test_a_device_owns_at_most_its_quota_of_origins_and_others_are_unharmed(self, store_factory, tmp_path,
                                                                              device_changes):
        base = store_factory("hub", user_id="hub-owner")
        base.connect()
        kind = "sql" if store_factory.kind == "sql" else "mongo"
        hub = Hub(base, Settings(db_connector=kind, sqlite_path=getattr(base, "path", ""), hub_max_origins=3))
        try:
            flooder_id, flooder = hub.token()
            _, victim = hub.token()
            status, body = hub.call("POST", "/push", flooder, {"changes": [noop(f"f{n}") for n in range(3)]})
            assert status == 200 and body["data"]["applied"] == 3
            status, body = hub.call("POST", "/push", flooder, {"changes": [noop("f3")]})
            assert (status, body["error"]["code"]) == (429, "origin_quota")
            assert "holds 3 origins of its own; the hub allows 3" in body["error"]["message"]
            assert (body["error"]["limit"], body["error"]["retryAfterSeconds"]) == (3, 3600)
            status, body = hub.call("POST", "/push", flooder, {"changes": [noop("f0", 2)]})
            assert status == 200, "an origin it owns goes on"
            # Relays bring in unknown origins within four times the quota.
            status, body = hub.call("POST", "/push", flooder, {"changes": [noop(f"r{n}") for n in range(13)],
                                                               "relay": True})
            assert (status, body["error"]["code"]) == (429, "origin_quota")
            assert hub.call("POST", "/push", victim, {"changes": device_changes})[1]["data"]["applied"] == 2
            assert sorted({c["origin"] for c in hub.everything()}) == ["dev-a", "f0", "f1", "f2"]
        finally:
            hub.app.extensions["hub_stores"].close()

    def test_claims_made_at_once_never_pass_the_quota_together(self, store_factory):
        import threading

        from server.connectors.factory import registry_for

        base = store_factory("hub", user_id="hub-owner")
        base.connect()
        registry = registry_for(base)
        start = threading.Barrier(8)
        got = []

        def claim(n: int) -> None:
            start.wait()
            got.append(registry.claim_origin(USER, f"o{n}", "dev-x", 3))

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert 1 <= got.count("dev-x") <= 3 and got.count(None) == 8 - got.count("dev-x")
        assert registry.origins_held(USER, "dev-x") == got.count("dev-x")
        assert registry.claim_origin(USER, "o0", "dev-y", 3) in ("dev-x", "dev-y"), "a claimed one keeps its owner"
        registry.claim_origin(USER, "r1", "relay:dev-y")
        assert registry.take_relayed(USER, "r1", "dev-x", registry.origins_held(USER, "dev-x")) is None
        assert registry.origin_owner(USER, "r1") == "relay:dev-y", "no room: the relayed origin stays as it was"
        assert registry.take_relayed(USER, "r1", "dev-x", 10) is True and registry.origin_owner(USER, "r1") == "dev-x"

    def test_an_origin_brought_in_by_a_relay_is_still_its_own_devices(self, hub, device_changes):
        _, relayer = hub.token()
        _, owner = hub.token()
        status, body = hub.call("POST", "/push", relayer, {"changes": device_changes[:1], "relay": True})
        assert status == 200 and body["data"]["applied"] == 1
        status, body = hub.call("POST", "/push", owner, {"changes": device_changes})
        assert status == 200 and body["data"]["applied"] == 1, "the owner pushes its origin as its own"
        status, body = hub.call("POST", "/push", relayer, {"changes": [{**device_changes[1], "seq": 3}]})
        assert (status, body["error"]["code"]) == (403, "origin_not_yours")

    def test_a_relay_takes_nothing_of_an_origin_another_device_owns_until_that_device_is_revoked(
            self, hub, device_changes):
        owner_id, owner = hub.token()
        _, sibling = hub.token()
        assert hub.call("POST", "/push", owner, {"changes": device_changes[:1]})[1]["data"]["applied"] == 1
        forged = {**noop("dev-a", 2), "hlc": device_changes[1]["hlc"]}  # the owner's next number, not its change
        status, body = hub.call("POST", "/push", sibling, {"changes": [forged, noop("gone", 1)], "relay": True})
        assert status == 200 and body["data"]["owned"] == {"dev-a": 1} and body["data"]["applied"] == 1
        assert body["data"]["received"] == 2 and body["data"]["quarantined"] == []
        assert [(c["origin"], c["seq"]) for c in hub.everything()] == [("dev-a", 1), ("gone", 1)]
        status, body = hub.call("POST", "/push", owner, {"changes": device_changes})
        assert status == 200 and body["data"]["applied"] == 1, "the owner's own next change, not the sibling's"
        assert hub.call("POST", "/push", sibling, {"changes": [noop("dev-a", 3)], "relay": True}
                        )[1]["data"]["owned"] == {"dev-a": 2}
        hub.registry.revoke(owner_id)  # gone for good: what only a relay can give back, it does
        status, body = hub.call("POST", "/push", sibling, {"changes": [noop("dev-a", 3)], "relay": True})
        assert (status, body["data"]["owned"], body["data"]["applied"]) == (200, {}, 1)

    def test_a_device_refused_too_often_is_told_to_wait(self, store_factory, device_changes):
        base = store_factory("hub", user_id="hub-owner")
        base.connect()
        kind = "sql" if store_factory.kind == "sql" else "mongo"
        hub = Hub(base, Settings(db_connector=kind, sqlite_path=getattr(base, "path", ""),
                                 hub_max_refusals_per_minute=5, hub_max_quarantined=3))
        try:
            _, bad = hub.token()
            _, good = hub.token()
            junk = [{"origin": "junk", "seq": n, "note": "x" * 5000} for n in range(1, 7)]
            status, body = hub.call("POST", "/push", bad, {"changes": junk})
            assert status == 200 and len(body["data"]["quarantined"]) == 6
            status, body = hub.call("POST", "/push", bad, {"changes": junk})
            assert (status, body["error"]["code"]) == (429, "refusal_quota")
            assert (body["error"]["limit"], body["error"]["retryAfterSeconds"]) == (5, 60)
            store = hub.app.extensions["hub_stores"].for_user(USER)
            kept = store.list_quarantine()
            assert len(kept) == 3, "the hub keeps its quota of refused changes, no more"
            assert all(len(q["change"]) < 1200 and "sha256" in q["change"] for q in kept)
            assert hub.call("POST", "/push", good, {"changes": device_changes})[1]["data"]["applied"] == 2
        finally:
            hub.app.extensions["hub_stores"].close()


def test_the_hub_server_turns_nagle_off_for_its_connections(hub):
    """asyncio turns Nagle off only on sockets that say IPPROTO_TCP; with it on, an answer's
    body waited for the client's delayed ACK of its head (40 ms a call, measured)."""
    import socket

    from server.hub.front import HubServer

    server = HubServer(hub.app, "127.0.0.1", 0)
    try:
        assert server.sock.proto == socket.IPPROTO_TCP
        assert server.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        server.sock.close()


class TestWhereEachDeviceIs:
    """The hub knows what each device has pulled, and so what of the user's history every device
    still served holds (`hub history`): the part that compaction may drop."""

    def history(self, hub, user: str = USER) -> dict:
        result = hub.app.test_cli_runner().invoke(args=["hub", "history", user])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    def test_a_pull_with_a_whole_cursor_is_the_devices_position(self, hub, device_changes):
        laptop, laptop_token = hub.token(name="laptop")
        phone, phone_token = hub.token(name="phone")
        assert hub.call("POST", "/push", laptop_token, {"changes": device_changes})[0] == 200
        assert hub.call("POST", "/pull", phone_token, {"cursor": {}, "excludeOrigin": "p1"})[0] == 200
        assert hub.registry.positions(USER)[phone].pulled == {}
        report = self.history(hub)
        # The phone has pulled nothing yet: it holds all of the laptop's origin back.
        assert report["origins"] == {"dev-a": {"top": 2, "floor": 0, "heldBackBy": phone}}
        assert report["devicesHoldingHistory"] == [phone] and report["changesAtOrBelowFloor"] == 0
        hub.call("POST", "/pull", phone_token, {"cursor": {"dev-a": 2}, "excludeOrigin": "p1"})
        # A partial pull (one origin, to check a device's own log) is not a position.
        hub.call("POST", "/pull", phone_token, {"cursor": {"dev-a": 1}, "onlyOrigin": "dev-a"})
        assert hub.registry.positions(USER)[phone].pulled == {"dev-a": 2}
        report = self.history(hub)
        assert report["origins"] == {"dev-a": {"top": 2, "floor": 2, "heldBackBy": None}}
        assert report["changesAtOrBelowFloor"] == report["changes"] == 2
        # The laptop owns dev-a: its own pulls never hold its own origin back.
        hub.call("POST", "/pull", laptop_token, {"cursor": {}, "excludeOrigin": "dev-a"})
        assert self.history(hub)["origins"]["dev-a"]["floor"] == 2 and laptop in hub.registry.positions(USER)

    def test_a_revoked_device_or_one_unseen_past_the_retention_holds_nothing_back(self, hub, device_changes):
        _, laptop_token = hub.token(name="laptop")
        phone, phone_token = hub.token(name="phone")
        tablet, tablet_token = hub.token(name="tablet")
        hub.call("POST", "/push", laptop_token, {"changes": device_changes})
        hub.call("POST", "/pull", phone_token, {"cursor": {"dev-a": 1}})
        hub.call("POST", "/pull", tablet_token, {"cursor": {}})
        assert self.history(hub)["origins"]["dev-a"] == {"top": 2, "floor": 0, "heldBackBy": tablet}
        hub.registry.revoke(tablet)
        report = self.history(hub)
        assert report["origins"]["dev-a"] == {"top": 2, "floor": 1, "heldBackBy": phone}
        assert report["devicesNotHolding"] == [tablet]
        # The phone was last seen 181 days ago (the retention is 180): it holds nothing back now.
        [who] = [d for d in hub.registry.devices(USER) if d.device_id == phone]
        hub.registry.note_pulled(who, {"dev-a": 0}, time.time() - 181 * 86_400)
        report = self.history(hub)
        assert report["origins"]["dev-a"] == {"top": 2, "floor": 2, "heldBackBy": None}
        assert sorted(report["devicesNotHolding"]) == sorted([phone, tablet])

    def compact(self, hub, *args: str) -> list[dict]:
        result = hub.app.test_cli_runner().invoke(args=["hub", "compact", *args])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.output.splitlines()]

    def test_compaction_drops_what_every_device_holds_and_a_device_below_it_is_sent_the_records(
            self, hub, device_changes):
        _, laptop_token = hub.token(name="laptop")
        phone, phone_token = hub.token(name="phone")
        hub.call("POST", "/push", laptop_token, {"changes": device_changes})
        hub.call("POST", "/pull", phone_token, {"cursor": {"dev-a": 1}})
        assert self.compact(hub, USER) == [{"userId": USER, "dropped": 1}]  # the phone holds #2 back
        assert self.history(hub)["origins"]["dev-a"] == {"top": 2, "floor": 1, "heldBackBy": phone}
        status, body = hub.call("POST", "/shortfall", phone_token, {"cursor": {"dev-a": 1}})
        assert status == 200 and body["data"]["compacted"] == {}, "the phone can go on from the log"
        status, body = hub.call("POST", "/pull", phone_token, {"cursor": {"dev-a": 1}})
        assert [ch["seq"] for ch in body["data"]["changes"]] == [2]
        # Unseen past the retention, the phone holds nothing back: all of it goes, and a cursor
        # below the floor is told to catch up from the records.
        [who] = [d for d in hub.registry.devices(USER) if d.device_id == phone]
        hub.registry.note_pulled(who, {"dev-a": 0}, time.time() - 181 * 86_400)
        assert self.compact(hub) == [{"userId": USER, "dropped": 1}]
        status, body = hub.call("POST", "/shortfall", phone_token, {"cursor": {"dev-a": 1}})
        assert body["data"]["compacted"] == {"dev-a": 2}
        status, body = hub.call("POST", "/snapshot", phone_token, {"after": None, "limit": 1})
        page = body["data"]
        assert status == 200 and page["cursor"] == {"dev-a": 2} and len(page["records"]) == 1
        status, body = hub.call("POST", "/snapshot", phone_token, {"after": page["next"], "limit": 1})
        assert status == 200 and body["data"]["next"] is None
        records = page["records"] + body["data"]["records"]
        assert {(r["kind"], r["id"]) for r in records} == {(ch["kind"], ch["id"]) for ch in device_changes}
        assert self.compact(hub, OTHER) == [{"userId": OTHER, "dropped": 0}]

    def test_the_hubs_own_job_compacts_every_user_and_can_be_turned_off(self, hub, device_changes):
        from server.hub import compactor as hub_compactor

        _, laptop_token = hub.token(name="laptop")
        hub.token(OTHER, name="other's")
        hub.call("POST", "/push", laptop_token, {"changes": device_changes})
        settings, stores = hub.app.config["SETTINGS"], hub.app.extensions["hub_stores"]
        # No other device of the user holds history back: all of the laptop's origin may go.
        assert hub_compactor.compact_all(settings, hub.base, stores) == {USER: 2, OTHER: 0}
        assert hub.everything() == [] and stores.for_user(USER).floors() == {"dev-a": 2}
        assert hub_compactor.start(replace(settings, hub_compact_every_minutes=0), hub.base, stores) is None
        job = hub_compactor.start(settings, hub.base, stores)
        try:
            [scheduled] = job.get_jobs()
            assert scheduled.id == "compact-history" and scheduled.trigger.interval.total_seconds() == 3600
        finally:
            job.shutdown(wait=False)

    @pytest.mark.parametrize("body, field", [({"after": "c1"}, "after"), ({"after": ["a", 1]}, "after"),
                                             ({"limit": 0}, "limit"), ({"limit": 2001}, "limit"),
                                             ({"cursor": {}}, "cursor")])
    def test_a_snapshot_request_of_another_shape_is_refused(self, hub, body, field):
        _, token = hub.token()
        status, answer = hub.call("POST", "/snapshot", token, body)
        assert status == 400 and field in answer["error"]["fields"]

    def test_an_unchanged_position_is_not_written_again_until_it_is_old(self, hub, device_changes):
        phone, _ = hub.token(name="phone")
        [device] = hub.registry.devices(USER)
        hub.registry.note_pulled(device, {"a": 1}, 1000.0)
        hub.registry.note_pulled(device, {"a": 1}, 1000.0 + SEEN_EVERY_SECONDS - 1)
        assert hub.registry.positions(USER)[phone].seen_at == 1000.0  # an idle round writes nothing
        hub.registry.note_pulled(device, {"a": 1}, 1000.0 + SEEN_EVERY_SECONDS + 1)
        assert hub.registry.positions(USER)[phone].seen_at == 1000.0 + SEEN_EVERY_SECONDS + 1
        hub.registry.note_pulled(device, {"a": 2}, 1000.0 + SEEN_EVERY_SECONDS + 2)  # it moved: written
        assert hub.registry.positions(USER)[phone] == Position({"a": 2}, 1000.0 + SEEN_EVERY_SECONDS + 2)
        assert hub.registry.positions(OTHER) == {}

    def test_list_devices_shows_each_devices_position(self, hub, device_changes):
        _, token = hub.token(name="phone")
        hub.call("POST", "/pull", token, {"cursor": {"dev-a": 0}})
        listed = hub.app.test_cli_runner().invoke(args=["hub", "list-devices", USER])
        [row] = [json.loads(line) for line in listed.output.splitlines()]
        assert row["position"]["pulled"] == {"dev-a": 0} and row["position"]["seenAt"].endswith("Z")
        assert hub.app.test_cli_runner().invoke(args=["hub", "history", "../x"]).exit_code != 0


class TestPurge:
    """`flask hub purge DEVICE`: a revoked device's origins leave the user's log at once; what
    its changes did to the records stays, and nobody loses or gets back anything."""

    def purge(self, hub, device_id: str):
        return hub.app.test_cli_runner().invoke(args=["hub", "purge", device_id])

    def test_a_revoked_devices_flood_leaves_the_log_and_its_changes_are_held(self, hub, device_changes):
        flooder, flooder_token = hub.token(name="flooder")
        victim, victim_token = hub.token(name="victim")
        flood = [noop(f"f{n}", seq) for n in range(3) for seq in (1, 2, 3)]
        assert hub.call("POST", "/push", flooder_token, {"changes": flood})[1]["data"]["applied"] == 9
        junk = {"origin": "f1", "seq": 4, "kind": "course", "note": "x"}
        status, body = hub.call("POST", "/push", flooder_token, {"changes": [junk]})
        assert status == 200 and len(body["data"]["quarantined"]) == 1
        hub.call("POST", "/push", victim_token, {"changes": device_changes})
        hub.call("POST", "/pull", victim_token, {"cursor": {"f0": 1}, "excludeOrigin": "dev-a"})
        store = hub.app.extensions["hub_stores"].for_user(USER)
        before = store.dump_records()

        refused = self.purge(hub, flooder)
        assert refused.exit_code != 0 and "not revoked: revoke it first" in refused.output
        assert len(hub.everything()) == 12 and store.count_quarantine() == 1, "a refused purge changes nothing"
        assert self.purge(hub, "no-such-device").exit_code != 0

        hub.registry.revoke(flooder)
        done = self.purge(hub, flooder)
        assert done.exit_code == 0, done.output
        assert json.loads(done.output) == {"deviceId": flooder, "userId": USER, "origins": 3, "dropped": 10,
                                           "refusedReleased": 1, "floors": {"f0": 3, "f1": 4, "f2": 3}}
        assert hub.everything() == device_changes, "only the victim's own changes are left in the log"
        assert store.count_quarantine() == 0
        assert store.dump_records() == before, "a purge is not an undo: the records stay as they were"
        # The victim had pulled f0 up to 1: it is told to catch up from the records.
        status, body = hub.call("POST", "/shortfall", victim_token, {"cursor": {"f0": 1}})
        assert body["data"]["compacted"] == {"f0": 3, "f1": 4, "f2": 3}
        # A relay of the purged changes (a device healing what it thinks the hub lost) is held.
        status, body = hub.call("POST", "/push", victim_token, {"changes": flood, "relay": True})
        assert status == 200 and body["data"]["applied"] == 0 and body["data"]["quarantined"] == []
        assert hub.everything() == device_changes
        assert json.loads(self.purge(hub, flooder).output)["dropped"] == 0, "a second purge finds nothing"

    def test_after_a_purge_a_device_that_had_not_pulled_it_catches_up_and_keeps_its_edits(self, tmp_path):
        import threading

        from waitress import create_server

        from server.connectors.factory import get_db_connector
        from server.sync.engine import run_round
        from server.sync.http_hub import HubClient
        from tests.synckit import assert_converged

        base = get_db_connector("sql", Settings(), path=str(tmp_path / "hub.sqlite3"), user_id="hub-owner")
        base.connect()
        hub = Hub(base, Settings(db_connector="sql", sqlite_path=str(tmp_path / "hub.sqlite3")))
        server = create_server(hub.app, host="127.0.0.1", port=0, threads=4)
        threading.Thread(target=server.run, daemon=True).start()
        stores = []
        try:
            url = f"http://127.0.0.1:{server.effective_port}"

            def device(name: str):
                store = get_db_connector("sql", Settings(), path=str(tmp_path / f"{name}.sqlite3"), user_id=USER,
                                         origin=name)
                store.connect()
                stores.append(store)
                device_id, token = hub.token(name=name)
                return store, HubClient(url, token), device_id

            flooder, flooder_hub, flooder_id = device("f")
            victim, victim_hub, _ = device("v")
            course(victim, id="c0", title="the victim's")
            assert run_round(victim, victim_hub).error is None
            assert run_round(flooder, flooder_hub).error is None
            course(flooder, id="c1", title="from the flooder")
            flooder.update("course", None, "c0", {"notes": "the flooder's note"})
            assert run_round(flooder, flooder_hub).error is None
            victim.update("course", None, "c0", {"title": "renamed while the flooder was purged"})

            hub.registry.revoke(flooder_id)
            assert json.loads(TestPurge().purge(hub, flooder_id).output)["dropped"] == 2
            report = run_round(victim, victim_hub)
            assert report.error is None and report.from_snapshot > 0 and report.pushed_sent == 1
            c0 = victim.get_course("c0")
            assert c0["title"] == "renamed while the flooder was purged" and c0["notes"] == "the flooder's note"
            assert victim.get_course("c1")["title"] == "from the flooder", "what the flood did stays"
            newcomer, newcomer_hub, _ = device("n")
            assert run_round(newcomer, newcomer_hub).error is None and run_round(victim, victim_hub).error is None
            assert_converged(SimpleNamespace(hub=hub.app.extensions["hub_stores"].for_user(USER),
                                             devices={"v": victim, "n": newcomer}))
            assert {ch["origin"] for ch in hub.everything()} == {"v"}
        finally:
            server.close()
            hub.app.extensions["hub_stores"].close()
            for store in stores:
                store.close()


def test_a_push_larger_than_a_turn_is_written_in_turns_and_answers_as_one(hub, monkeypatch):
    from server.hub import fair as hub_fair
    from tests.hub.test_hostile import changes

    turns = []
    monkeypatch.setattr(hub_fair, "TURN", 40)  # small, for the wire tier's hub ($in of 200 at most)
    store_apply = type(hub.app.extensions["hub_stores"].for_user(USER)).apply_changes
    monkeypatch.setattr(type(hub.app.extensions["hub_stores"].for_user(USER)), "apply_changes",
                        lambda self, part, **kw: (turns.append(len(part)), store_apply(self, part, **kw))[1])
    _, token = hub.token()
    batch = changes(USER, "dev-a", 2 * 40 + 10)
    status, body = hub.call("POST", "/push", token, {"changes": batch})
    assert status == 200 and body["data"]["applied"] == len(batch) and body["data"]["resume"] == {}
    assert turns == [40, 40, 10]
    status, body = hub.call("POST", "/push", token, {"changes": batch})  # again: each held, none twice
    assert body["data"]["applied"] == 0 and body["data"]["received"] == len(batch)
    gap = changes(USER, "dev-a", 2 * 40, first_seq=len(batch) + 2)  # starts one past the top plus one
    status, body = hub.call("POST", "/push", token, {"changes": gap})
    assert body["data"]["applied"] == 0 and body["data"]["resume"] == {"dev-a": len(batch)}
    assert [ch["seq"] for ch in hub.everything()] == list(range(1, len(batch) + 1))


class TestWaitChanges:
    def test_a_wait_with_a_limit_answers_the_changes_and_the_epoch(self, hub, device_changes):
        _, a = hub.token()
        _, b = hub.token()
        assert hub.call("POST", "/push", a, {"changes": device_changes})[0] == 200
        epoch = hub.call("GET", "/epoch", b)[1]["data"]["epoch"]
        asked = {"cursor": {}, "excludeOrigin": "dev-b", "seconds": 0}
        woke = hub.call("POST", "/wait", b, {**asked, "limit": 1, "epoch": epoch})[1]["data"]
        assert woke["changed"] and woke["epoch"] == epoch and [c["seq"] for c in woke["changes"]] == [1]
        other = hub.call("POST", "/wait", b, {**asked, "cursor": {"dev-a": 2}, "limit": 9, "epoch": "old"})[1]["data"]
        assert other == {"changed": True, "epoch": epoch}, "another epoch: the epoch only, run a round"
        assert hub.call("POST", "/wait", b, asked)[1]["data"] == {"changed": True}, "no limit: the old answer"
        status, body = hub.call("POST", "/wait", b, {**asked, "limit": 0})
        assert status == 400 and "limit" in json.dumps(body)
