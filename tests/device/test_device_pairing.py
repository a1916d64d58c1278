"""Pairing a device by an invitation (server/device/pairing.py, server/sync/hub_settings.py):
the device's app in process, the hub a real HTTP server in a thread of the test (on a SQLite and
a mongomock hub store). Each way it can fail answers one sentence and keeps nothing; a seeded
`demo-learner` store takes the invitation's user with its sample courses, which a second device
then holds too."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import pytest

from server.api import create_app, create_hub_app
from server.connectors.factory import get_db_connector, registry_for
from server.connectors.seeding import default_seed_path, seed_from_file
from server.core.config import Settings
from server.web import serving
from tests.conftest import MongoFactory

USER = "learner"
SAMPLES = 4  # the courses of data/seed.json


class ServedHub:
    """A hub app over a store, served over HTTP by waitress in a thread of this process."""

    def __init__(self, tmp_path, kind: str):
        if kind == "sql":
            self.settings = Settings(sqlite_path=str(tmp_path / "hub.sqlite3"))
            self.base = get_db_connector("sql", self.settings, user_id="hub-owner")
        else:
            self.factory = MongoFactory("mongomock")
            self.settings = Settings(db_connector="mongo")
            self.base = self.factory("hub", user_id="hub-owner")
        self.base.connect()
        self.app = create_hub_app(self.settings, store=self.base)
        self.server = serving.create(self.app, "127.0.0.1", 0, self.app.config["MAX_CONTENT_LENGTH"])
        self.port = self.server.effective_port
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.registry = registry_for(self.base)

    def invitation(self, user: str = USER, hours: float = 1.0, path: str = "") -> str:
        _, code = self.registry.invite(user, "test", time.time() + hours * 3600)
        return f"coursesync+http://127.0.0.1:{self.port}{path}#{code}"

    def close(self) -> None:
        self.server.close()
        self.app.extensions["hub_stores"].close()


@pytest.fixture(params=["sql", "mongomock"])
def hub(request, tmp_path):
    made = ServedHub(tmp_path, request.param)
    yield made
    made.close()


def seeded_device(tmp_path, name: str, **settings):
    """A `make run` device: the store seeded from data/seed.json (user demo-learner)."""
    config = Settings(sqlite_path=str(tmp_path / f"{name}.sqlite3"), sync_process=False, sync_live=False,
                      sync_push_on_write=False, hub_timeout_ms=2000, **settings)
    assert seed_from_file(get_db_connector("sql", config), default_seed_path(), reset=False, if_empty=True)
    store = get_db_connector("sql", config)
    store.connect()
    return create_app(config, store=store, testing=True).test_client()


@pytest.fixture
def device(tmp_path):
    return seeded_device(tmp_path, "device")


def connect(client, invitation):
    resp = client.post("/api/v1/sync/hub", json={"invitation": invitation})
    return resp.status_code, resp.get_json()


def titles(client) -> set[str]:
    return {c["title"] for c in client.get("/api/v1/courses").get_json()["data"]}


def status(client) -> dict:
    return client.get("/api/v1/sync/status").get_json()["data"]


def untouched(client) -> bool:
    """Nothing kept: the store still serves demo-learner's samples, and sync is off."""
    me = client.get("/api/v1/users/me").get_json()["data"]
    s = status(client)
    return me["id"] == "demo-learner" and len(titles(client)) == SAMPLES and not s["enabled"] and s["hubFrom"] is None


def test_a_seeded_store_pairs_takes_the_users_name_and_a_second_device_gets_everything(hub, tmp_path, device):
    before = device.get("/api/v1/users/me").get_json()["data"]
    code, body = connect(device, hub.invitation())
    assert code == 200, body
    assert body["data"]["userId"] == USER and body["data"]["hubFrom"] == "store"
    assert body["data"]["moved"]["records"] > SAMPLES
    me = device.get("/api/v1/users/me").get_json()["data"]
    assert me["id"] == USER and me["createdAt"] == before["createdAt"] and me["displayName"] == before["displayName"]
    assert me["focusCourseId"] == before["focusCourseId"] and len(titles(device)) == SAMPLES
    s = status(device)
    assert s["enabled"] and s["hubFrom"] == "store" and s["userId"] == USER
    device.post("/api/v1/courses", json={"title": "Made before the second device", "source": "https://x.org"})
    assert device.post("/api/v1/sync", json={}).status_code == 200
    other = seeded_device(tmp_path, "other")
    assert connect(other, hub.invitation(path="/hub/v1"))[0] == 200  # the protocol's path is understood
    assert other.post("/api/v1/sync", json={}).status_code == 200
    assert titles(other) == titles(device) and len(titles(other)) == SAMPLES + 1


def test_a_malformed_invitation_is_refused_in_one_sentence(device):
    for text in ("hello", "https://hub.example.org", "coursesync://hub.example.org", "coursesync://#csi_abc",
                 "coursesync://hub.example.org#not-a-code-at-all"):
        code, body = connect(device, text)
        assert code == 400 and body["error"]["code"] == "invalid_invitation", text
        assert "hub invite" in body["error"]["message"]
    assert untouched(device)


def test_a_plain_http_invitation_off_this_machine_is_refused(device):
    code, body = connect(device, "coursesync+http://hub.example.org#csi_" + "a" * 30)
    assert code == 400 and "only for a hub on this machine" in body["error"]["message"]
    assert "http://hub.example.org" in body["error"]["message"] and untouched(device)


def test_a_bad_body_is_refused_and_changes_nothing(device):
    for body in ({}, {"invitation": 5}, {"invitation": "x", "token": "y"}):
        resp = device.post("/api/v1/sync/hub", json=body)
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_fields"
    resp = device.post("/api/v1/sync/hub", data="invitation=x", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 415 and untouched(device)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_hub_that_cannot_be_reached_is_named(device):
    port = closed_port()
    code, body = connect(device, f"coursesync+http://127.0.0.1:{port}#csi_" + "a" * 30)
    assert code == 502 and body["error"]["code"] == "hub_unreachable"
    assert f"http://127.0.0.1:{port}" in body["error"]["message"] and untouched(device)


def test_a_server_that_is_not_a_hub_is_named(device, tmp_path):
    not_hub = create_app(Settings(sqlite_path=str(tmp_path / "x.sqlite3")), start_sync=False)
    server = serving.create(not_hub, "127.0.0.1", 0, 1 << 20)  # a device answers 404 at /hub/v1/pair
    threading.Thread(target=server.run, daemon=True).start()
    try:
        code, body = connect(device, f"coursesync+http://127.0.0.1:{server.effective_port}#csi_" + "a" * 30)
    finally:
        server.close()
    assert code == 502 and body["error"]["code"] == "not_a_hub"
    assert f"127.0.0.1:{server.effective_port} is not a coursesync hub" in body["error"]["message"]
    assert untouched(device)


@contextmanager
def one_answer(answer):
    """A port whose server reads the one request made to it and then runs `answer(conn, stop)`;
    `stop` is set when the test is done with it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        conn, _ = listener.accept()
        conn.recv(4096)
        try:
            answer(conn, stop)
        except OSError:
            pass
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


def test_a_hub_whose_tls_fails_is_named(device):
    # A server that answers a TLS hello with plain text: the handshake fails as with a bad certificate.
    with one_answer(lambda conn, _: conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")) as port:
        code, body = connect(device, f"coursesync://127.0.0.1:{port}#csi_" + "a" * 30)
    assert code == 502 and body["error"]["code"] == "hub_tls_refused", body
    assert f"https://127.0.0.1:{port} failed this device's TLS check" in body["error"]["message"]
    assert untouched(device)


def test_a_hub_that_drips_its_answer_is_cut_off_at_the_deadline(device):
    """Each byte comes well within the read timeout, but the answer would take minutes: the
    exchange has a deadline of its own (twice the 6 s the 2 s HUB_TIMEOUT_MS gives a read), so a
    request thread is never held longer."""
    def drip(conn, stop):
        body = b'{"data": {"userId": "demo-learner", "deviceId": "d1", "token": "' + b"t" * 200 + b'"}}'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        for byte in body:  # about 80 s in all: never a whole answer within the deadline
            if stop.wait(0.3):
                return
            conn.sendall(bytes([byte]))

    with one_answer(drip) as port:
        code, body = connect(device, f"coursesync+http://127.0.0.1:{port}#csi_" + "a" * 30)
    assert code == 502 and body["error"]["code"] == "hub_unreachable", body
    assert f"http://127.0.0.1:{port} cannot be reached (no whole answer within 12 s)" in body["error"]["message"]
    assert untouched(device)


def test_codes_the_hub_refuses_are_said_and_nothing_is_kept(hub, device):
    unknown = f"coursesync+http://127.0.0.1:{hub.port}#csi_" + "z" * 30
    assert connect(device, unknown)[1]["error"]["code"] == "pairing_code_unknown"
    revoked = hub.invitation()
    hub.registry.revoke(hub.registry.devices(USER)[-1].device_id)
    expired = hub.invitation(hours=-1)
    for invitation, why in ((revoked, "invitation_revoked"), (expired, "invitation_expired")):
        code, body = connect(device, invitation)
        assert code == 409 and body["error"]["code"] == why and "hub invite" in body["error"]["message"]
    assert untouched(device)


def test_a_used_invitation_is_refused_on_another_device(hub, tmp_path, device):
    invitation = hub.invitation()
    assert connect(device, invitation)[0] == 200
    assert device.post("/api/v1/sync", json={}).status_code == 200  # the token is used: the code is spent
    other = seeded_device(tmp_path, "other")
    code, body = connect(other, invitation)
    assert code == 409 and body["error"]["code"] == "invitation_used" and untouched(other)


def test_an_invitation_for_another_user_than_user_id_is_refused(hub, tmp_path):
    pinned = seeded_device(tmp_path, "pinned", user_id="demo-learner")
    code, body = connect(pinned, hub.invitation())
    assert code == 409 and body["error"]["code"] == "user_mismatch"
    assert "USER_ID=demo-learner" in body["error"]["message"] and repr(USER) in body["error"]["message"]
    assert untouched(pinned)


def test_a_store_that_synced_for_another_user_is_refused_saying_which(hub, device):
    assert connect(device, hub.invitation())[0] == 200
    assert device.post("/api/v1/sync", json={}).status_code == 200
    assert device.delete("/api/v1/sync/hub", json={}).status_code == 200
    code, body = connect(device, hub.invitation(user="someone-else"))
    assert code == 409 and body["error"]["code"] == "store_holds_another_user"
    assert f"synced as user {USER!r}" in body["error"]["message"] and "SQLITE_PATH" in body["error"]["message"]
    assert status(device)["hubFrom"] is None and device.get("/api/v1/users/me").get_json()["data"]["id"] == USER
    assert connect(device, hub.invitation())[0] == 200  # the same user again is fine


def test_disconnect_forgets_the_hub_and_keeps_everything(hub, device):
    assert connect(device, hub.invitation())[0] == 200
    resp = device.delete("/api/v1/sync/hub", json={})
    assert resp.status_code == 200 and resp.get_json()["data"]["hub"] == f"http://127.0.0.1:{hub.port}"
    s = status(device)
    assert not s["enabled"] and s["hubFrom"] is None and len(titles(device)) == SAMPLES
    again = device.delete("/api/v1/sync/hub", json={})
    assert again.status_code == 404 and again.get_json()["error"]["code"] == "not_paired"


def test_settings_win_and_pairing_says_so(tmp_path, hub):
    pinned = seeded_device(tmp_path, "set", hub_url="http://127.0.0.1:9", hub_token="t" * 20)
    assert status(pinned)["hubFrom"] == "settings"
    code, body = connect(pinned, hub.invitation())
    assert code == 409 and body["error"]["code"] == "hub_from_settings" and "HUB_URL" in body["error"]["message"]
    assert pinned.delete("/api/v1/sync/hub", json={}).status_code == 409


def test_a_kept_hub_is_in_force_after_a_restart(hub, tmp_path, device):
    assert connect(device, hub.invitation())[0] == 200
    config = Settings(sqlite_path=str(tmp_path / "device.sqlite3"), sync_process=False, sync_live=False)
    store = get_db_connector("sql", config)
    store.connect()
    again = create_app(config, store=store, testing=True, start_sync=False).test_client()
    s = status(again)
    assert s["enabled"] and s["hubFrom"] == "store" and s["userId"] == USER
    assert again.post("/api/v1/sync", json={}).status_code == 200

