"""The hub's side of pairing (server/hub/pairing.py), in process on a SQLite and a Mongo hub
store: `hub invite` prints an invitation as its last line, POST /hub/v1/pair trades its code for
the invited device's token (again until that token is used), and every refusal says why."""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import replace

import pytest

from server.connectors.factory import get_db_connector
from server.connectors.registry import CODE_PREFIX, token_hash
from server.core.config import Settings
from server.hub.pairing import Attempts, invitation_for
from tests.hub.test_hub_server import USER, Hub

pytestmark = pytest.mark.wire_when_real
INVITATION = re.compile(r"^coursesync\+http://127\.0\.0\.1:8010#(csi_[A-Za-z0-9_-]+)$")


@pytest.fixture
def hub(store_factory, tmp_path):
    base = store_factory("hub", user_id="hub-owner")
    base.connect()
    kind = "sql" if store_factory.kind == "sql" else "mongo"
    settings = Settings(db_connector=kind, sqlite_path=getattr(base, "path", str(tmp_path / "x.sqlite3")),
                        port=8010)
    made = Hub(base, settings)
    yield made
    made.app.extensions["hub_stores"].close()


def invite(hub: Hub, *args: str) -> str:
    """The invitation `hub invite` prints, as a person copies it: the last line."""
    done = hub.app.test_cli_runner().invoke(args=["hub", "invite", USER, *args])
    assert done.exit_code == 0, done.output
    return done.output.strip().splitlines()[-1]


def code_of(invitation: str) -> str:
    return invitation.rsplit("#", 1)[1]


def pair(hub: Hub, code: str, **headers):
    resp = hub.client.post("/hub/v1/pair", json={"code": code}, headers=headers)
    return resp.status_code, resp.get_json()


def states(hub: Hub) -> dict[str, str]:
    import json

    done = hub.app.test_cli_runner().invoke(args=["hub", "list-devices"])
    assert done.exit_code == 0, done.output
    return {d["deviceId"]: d["state"] for d in map(json.loads, done.output.splitlines())}


def test_invite_prints_the_invitation_last_and_keeps_only_the_codes_hash(hub):
    invitation = invite(hub, "--name", "phone")
    assert INVITATION.match(invitation), invitation
    [device] = hub.registry.devices(USER)
    assert device.name == "phone" and states(hub) == {device.device_id: "invited"}
    code = code_of(invitation)
    if hub.app.config["SETTINGS"].db_connector == "sql":
        dump = "\n".join(sqlite3.connect(hub.base.path).iterdump())
        assert code not in dump and token_hash(code) in dump


def test_invite_draws_the_invitation_as_a_qr_code_before_it_when_asked(hub):
    """--qr (the default when the output is a terminal): the QR code of the very string of the
    last line, drawn before it; --no-qr (and a pipe, as here by default): the lines alone."""
    import segno

    from server.hub.pairing import qr_text

    done = hub.app.test_cli_runner().invoke(args=["hub", "invite", USER, "--qr"])
    assert done.exit_code == 0, done.output
    lines = done.output.rstrip("\n").splitlines()
    invitation = lines[-1]
    assert INVITATION.match(invitation)
    drawn = "\n".join(lines[1:-1])
    assert drawn == qr_text(invitation)
    assert len(lines[1]) >= 4 + segno.make(invitation, error="m").symbol_size(border=0)[0]  # every module drawn
    assert set(drawn) <= set("█▀▄ \n")
    plain = hub.app.test_cli_runner().invoke(args=["hub", "invite", USER])
    assert len(plain.output.strip().splitlines()) == 2 and "█" not in plain.output


def test_the_invitations_address_is_hub_public_url_else_how_the_hub_is_served(hub):
    settings = hub.app.config["SETTINGS"]
    hub.app.config["SETTINGS"] = replace(settings, hub_public_url="https://hub.example.org/sync")
    assert invite(hub).startswith("coursesync://hub.example.org/sync#csi_")
    hub.app.config["SETTINGS"] = replace(settings, host="0.0.0.0")
    done = hub.app.test_cli_runner().invoke(args=["hub", "invite", USER])
    assert done.exit_code != 0 and "set HUB_PUBLIC_URL" in done.output and "HOST=0.0.0.0" in done.output
    assert invitation_for("https://h.example.org:8443", "csi_x") == "coursesync://h.example.org:8443#csi_x"


def test_a_code_is_traded_for_a_token_that_syncs_as_the_invited_device(hub):
    code = code_of(invite(hub))
    status, body = pair(hub, code)
    assert status == 200, body
    paired = body["data"]
    [device] = hub.registry.devices(USER)
    assert paired["userId"] == USER and paired["deviceId"] == device.device_id
    status, epoch = hub.call("GET", "/epoch", paired["token"])
    assert status == 200 and epoch["data"]["userId"] == USER and "pair" in epoch["data"]["features"]
    assert states(hub) == {device.device_id: "paired"}


def test_the_code_may_be_traded_again_until_its_token_is_used_then_it_is_spent(hub):
    code = code_of(invite(hub))
    first = pair(hub, code)[1]["data"]["token"]
    second = pair(hub, code)[1]["data"]["token"]  # the first answer lost on the way
    assert first != second
    assert hub.call("GET", "/epoch", first)[0] == 401  # replaced
    assert hub.call("GET", "/epoch", second)[0] == 200  # the check a pairing device makes: not a use
    third = pair(hub, code)[1]["data"]["token"]
    assert hub.call("POST", "/pull", third, {"cursor": {}})[0] == 200  # a sync call: the code is spent
    status, body = pair(hub, code)
    assert status == 410 and body["error"]["code"] == "invitation_used"
    assert "new one" in body["error"]["message"] and "hub invite" in body["error"]["message"]
    assert hub.call("GET", "/epoch", third)[0] == 200  # and the device keeps its token


def test_an_unknown_a_revoked_and_an_expired_code_are_refused_with_why(hub):
    status, body = pair(hub, CODE_PREFIX + "x" * 32)
    assert status == 401 and body["error"]["code"] == "pairing_code_unknown"
    revoked = code_of(invite(hub))
    [device] = hub.registry.devices(USER)
    done = hub.app.test_cli_runner().invoke(args=["hub", "revoke", device.device_id])
    assert done.exit_code == 0, done.output
    status, body = pair(hub, revoked)
    assert status == 410 and body["error"]["code"] == "invitation_revoked"
    expired = code_of(invite(hub, "--expires-hours", "0.01"))
    outcome, _, token = hub.registry.exchange(expired, time.time() + 3600)
    assert (outcome, token) == ("expired", None)
    late = [d for d in hub.registry.devices(USER) if d.device_id != device.device_id][0]
    assert states(hub) == {device.device_id: "revoked", late.device_id: "invited"}
    # Expiry is read against the hub's clock: an hour on, the unused invitation is expired.
    assert {s for s in states_at(hub, time.time() + 3600).values()} == {"revoked", "expired"}


def states_at(hub: Hub, now: float) -> dict[str, str]:
    from server.hub.pairing import state_of

    invitations = hub.registry.invitations(USER)
    return {d.device_id: state_of(d, invitations.get(d.device_id), now) for d in hub.registry.devices(USER)}


@pytest.mark.parametrize("body, field", [({}, "code"), ({"code": "csh_abc"}, "code"), ({"code": 5}, "code"),
                                         ({"code": "csi_x", "userId": "me"}, "userId")])
def test_a_bad_pairing_body_is_refused_and_changes_nothing(hub, body, field):
    code = code_of(invite(hub))
    resp = hub.client.post("/hub/v1/pair", json=body)
    assert resp.status_code == 400 and field in resp.get_json()["error"]["fields"]
    assert states(hub) == {hub.registry.devices(USER)[0].device_id: "invited"}
    assert pair(hub, code)[0] == 200


def test_a_large_pairing_body_is_refused_unread(hub):
    resp = hub.client.post("/hub/v1/pair", data=b'{"code": "' + b"c" * 5000 + b'"}',
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and "at most 1024 bytes" in resp.get_json()["error"]["message"]


def test_pairing_calls_are_limited_per_client_address(hub):
    hub.app.extensions["pair_attempts"] = Attempts(per_minute=3)
    codes = [pair(hub, CODE_PREFIX + "y" * 32)[0] for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    other = hub.client.post("/hub/v1/pair", json={"code": CODE_PREFIX + "y" * 32},
                            environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 401


def test_a_full_table_of_addresses_says_so_not_that_this_address_called_too_often(hub):
    hub.app.extensions["pair_attempts"] = Attempts(per_minute=3, addresses=1)
    assert pair(hub, CODE_PREFIX + "y" * 32)[0] == 401
    other = hub.client.post("/hub/v1/pair", json={"code": CODE_PREFIX + "y" * 32},
                            environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 429
    assert "more than 1 addresses in the last minute" in other.get_json()["error"]["message"]


def test_the_protocol_document_describes_pairing_as_public(hub):
    doc = hub.client.get("/hub/v1/openapi.json").get_json()
    post = doc["paths"]["/pair"]["post"]
    assert "security" not in post and {"200", "400", "401", "410", "413", "429"} <= set(post["responses"])
    assert {"HubPairRequest", "HubPaired"} <= set(doc["components"]["schemas"])


def test_an_old_hub_file_gets_the_invitations_table(tmp_path):
    path = str(tmp_path / "old.sqlite3")
    store = get_db_connector("sql", Settings(), path=path, user_id="hub-owner")
    store.connect()
    store.close()
    conn = sqlite3.connect(path)  # as a hub file made before step 8 is
    conn.executescript("DROP TABLE hub_invitations; DELETE FROM schema_steps WHERE step = 8;")
    conn.close()
    again = get_db_connector("sql", Settings(), path=path, user_id="hub-owner")
    again.connect()
    again.close()
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "hub_invitations" in tables


def test_pairing_attempts_count_an_ipv6_subscriber_once_and_hold_a_bounded_table():
    now = [0.0]
    attempts = Attempts(per_minute=2, clock=lambda: now[0], addresses=3)
    assert [attempts.take(a) for a in ("2001:db8::1", "2001:db8::2", "2001:db8::ffff")] == [True, True, False]
    assert attempts.take("2001:db8:0:1::1"), "another /64 is another subscriber"
    assert attempts.take("::ffff:10.0.0.1") and attempts.take("10.0.0.1") and not attempts.take("10.0.0.1")
    assert not attempts.take("10.0.0.2"), "a full table takes no new address this minute"
    now[0] = 60.0
    assert attempts.take("10.0.0.2") and attempts.take("2001:db8::3"), "the next minute starts afresh"
