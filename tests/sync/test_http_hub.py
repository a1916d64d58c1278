"""The device's hub client against a hub that misbehaves: every answer it cannot trust ends the
round as a hub failure with words a person can read, never as a crash or a wrong sync."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from server.core.errors import HubRefused, StoreUnavailable
from server.sync.http_hub import HubClient
from server.sync.sized import within_bytes
from tests.procs import free_port


class FakeHub:
    """Answers every request with (status, body bytes, headers) from `answer`; counts connections."""

    def __init__(self):
        self.answer = (200, b"{}", {})
        self.route = None
        self.connections = 0
        self.requests: list[tuple[str, str, dict]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                hub.connections += 1
                super().setup()

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                request = json.loads(raw) if raw else None
                hub.requests.append((self.command, self.path, request))
                if hub.route is not None:  # an answer made for each request: (path, body) -> data
                    hub.says({"data": hub.route(self.path, request), "meta": {}})
                status, body, headers = hub.answer
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), "Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def says(self, data, status: int = 200, gz: bool = False):
        body = json.dumps(data).encode()
        self.answer = (status, gzip.compress(body) if gz else body, {"Content-Encoding": "gzip"} if gz else {})


@pytest.fixture
def fake():
    hub = FakeHub()
    yield hub
    hub.server.shutdown()


def client(url: str) -> HubClient:
    return HubClient(url, "csh_" + "t" * 40, timeout_ms=500)


def test_calls_speak_the_protocol_on_one_kept_alive_connection(fake):
    hub = client(fake.url)
    fake.says({"data": {"epoch": "e1"}, "meta": {}})
    assert hub.hub_epoch() == "e1"
    fake.says({"data": {"changes": []}, "meta": {}}, gz=True)
    assert hub.changes_since({"a": 3}, 10, exclude_origin="me") == []
    fake.says({"data": {"received": 1, "applied": 1, "conflicts": 0, "quarantined": []}, "meta": {}})
    assert hub.apply_changes([{"origin": "me", "seq": 1}])["applied"] == 1
    assert [r[:2] for r in fake.requests] == [("GET", "/hub/v1/epoch"), ("POST", "/hub/v1/pull"),
                                              ("POST", "/hub/v1/push")]
    assert fake.requests[1][2] == {"cursor": {"a": 3}, "limit": 10, "excludeOrigin": "me", "onlyOrigin": None}
    assert fake.connections == 1
    hub.close()


@pytest.mark.parametrize("call, answer", [
    ("epoch", {"data": {"epoch": 5}}),
    ("epoch", {"nope": 1}),
    ("epoch", [1, 2]),
    ("pull", {"data": {"changes": "x"}}),
    ("pull", {"data": {"changes": [{}] * 11}}),
    ("push", {"data": {"received": 1, "applied": 9, "conflicts": 0, "quarantined": []}}),
    ("push", {"data": {"received": 1, "applied": 1, "conflicts": 0, "quarantined": [{"seq": 1}]}}),
    ("push", {"data": {"received": "1", "applied": 1, "conflicts": 0, "quarantined": []}}),
    ("push", {"data": {"received": 1, "applied": 0, "conflicts": 0, "quarantined": [{"seq": [1], "reason": "r"}]}}),
])
def test_an_answer_of_another_shape_is_a_hub_failure(fake, call, answer):
    hub = client(fake.url)
    fake.says(answer)
    run = {"epoch": hub.hub_epoch, "pull": lambda: hub.changes_since({}, 10),
           "push": lambda: hub.apply_changes([{"origin": "me", "seq": 1}])}[call]
    with pytest.raises(StoreUnavailable, match="answered"):
        run()


def test_not_json_and_not_gzip(fake):
    hub = client(fake.url)
    fake.answer = (200, b"<html>a captive portal</html>", {})
    with pytest.raises(StoreUnavailable, match="envelope"):
        hub.hub_epoch()
    fake.answer = (200, b"not gzip", {"Content-Encoding": "gzip"})
    with pytest.raises(StoreUnavailable, match="gzip"):
        hub.hub_epoch()


def test_an_answer_that_inflates_past_the_limit_is_refused_not_cut(fake, monkeypatch):
    monkeypatch.setattr("server.sync.http_hub.MAX_ANSWER_BYTES", 1000)
    hub = client(fake.url)
    fake.answer = (200, gzip.compress(b'{"data": {"epoch": "' + b"e" * 2000 + b'"}}'), {"Content-Encoding": "gzip"})
    with pytest.raises(StoreUnavailable, match="inflates to more than 1000 bytes"):
        hub.hub_epoch()


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_says_why(fake, status):
    fake.says({"error": {"code": "token_revoked", "message": "This device's token was revoked."}}, status)
    with pytest.raises(HubRefused, match="revoked") as caught:
        client(fake.url).hub_epoch()
    assert caught.value.code == "hub_refused" and caught.value.status == 503


def test_a_hub_error_is_a_hub_failure(fake):
    fake.says({"error": {"code": "store_unavailable", "message": "The hub's store does not answer."}}, 503)
    with pytest.raises(StoreUnavailable, match="store does not answer"):
        client(fake.url).hub_epoch()


def test_nobody_listening():
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        client(f"http://127.0.0.1:{free_port()}").hub_epoch()


def test_https_verifies_the_certificate(fake):
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        client(fake.url.replace("http://", "https://")).hub_epoch()


def test_a_token_of_another_user_is_refused_by_the_device(fake):
    fake.says({"data": {"epoch": "e1", "userId": "bob", "deviceId": "hd_1"}, "meta": {}})
    assert HubClient(fake.url, "csh_" + "t" * 40, user_id="bob").hub_epoch() == "e1"
    with pytest.raises(HubRefused, match="belongs to user 'bob', but this device serves 'alice'"):
        HubClient(fake.url, "csh_" + "t" * 40, user_id="alice").hub_epoch()


def test_a_pull_of_garbage_is_quarantined_and_ends_the_round_without_a_loop(fake, sql_factory):
    from server.sync.engine import run_round

    local = sql_factory("dev", user_id="u", origin="dev")
    local.connect()
    garbage = ["not a change", 7, {"origin": 3}]

    def hub_answers(path, body):
        if path.endswith("/epoch"):
            return {"epoch": "e1"}
        return {"changes": [] if body.get("onlyOrigin") else garbage}  # the same pull, every time

    fake.route = hub_answers
    report = run_round(local, client(fake.url))
    assert report.error is None and report.pulled == 0 and report.quarantined == 3
    assert local.count_quarantine() == 3
    assert sum(path.endswith("/pull") for _, path, _ in fake.requests) == 2  # own log once, the pull once


def test_a_hub_answering_this_devices_log_out_of_order_is_not_trusted_with_it(fake, sql_factory):
    from server.sync.engine import run_round
    from tests.synckit import course

    local = sql_factory("dev", user_id="u", origin="dev")
    local.connect()
    course(local, id="c1")

    def hub_answers(path, body):
        if path.endswith("/epoch"):
            return {"epoch": "e1"}
        if path.endswith("/push"):
            return {"received": 1, "applied": 1, "conflicts": 0, "quarantined": []}
        return {"changes": ["junk", {"seq": 9}] if body.get("onlyOrigin") else []}

    fake.route = hub_answers
    report = run_round(local, client(fake.url))
    assert report.error is None and report.origin_restart is None and local.origin == "dev"
    assert report.pushed == 1


def featured(fake, *features: str) -> HubClient:
    """A client that has read an epoch answer listing `features`."""
    hub = client(fake.url)
    fake.says({"data": {"epoch": "e1", "features": list(features)}, "meta": {}})
    hub.hub_epoch()
    return hub


def test_an_older_hub_server_is_asked_for_no_shortfall_and_handed_no_relay(fake):
    hub = featured(fake)
    assert hub.shortfall({"a": 3}) == {"shortfall": {}, "rollbacks": [], "compacted": {}, "floors": {}}
    assert hub.relay_changes([{"origin": "a", "seq": 1}])["unsupported"] is True
    assert hub.heal([{"kind": "course"}], hold={"h1": 1})["unsupported"] is True
    assert [r[1] for r in fake.requests] == ["/hub/v1/epoch"], "nothing was sent past the epoch"


def test_a_shortfall_and_the_hubs_findings_are_read(fake):
    hub = featured(fake, "shortfall", "relay", "resume")
    finding = {"id": "f1", "at": 1.5, "origins": 1, "changes": 2, "extra": "dropped"}
    fake.says({"data": {"shortfall": {"a": 1}, "rollbacks": [finding]}, "meta": {}})
    assert hub.shortfall({"a": 3}) == {"shortfall": {"a": 1}, "compacted": {}, "floors": {},  # it compacts nothing
                                       "rollbacks": [{"id": "f1", "at": 1.5, "origins": 1, "changes": 2}]}
    assert fake.requests[-1] == ("POST", "/hub/v1/shortfall", {"cursor": {"a": 3}})
    fake.says({"data": {"shortfall": {}, "rollbacks": [], "compacted": {"a": 5, "b": 2}}, "meta": {}})
    assert hub.shortfall({"a": 3})["compacted"] == {"a": 5, "b": 2}
    fake.says({"data": {"received": 1, "applied": 1, "conflicts": 0, "quarantined": [], "resume": {}}, "meta": {}})
    hub.relay_changes([{"origin": "a", "seq": 1}])
    assert fake.requests[-1][2] == {"changes": [{"origin": "a", "seq": 1}], "relay": True}


GOOD_FINDING = {"id": "f1", "at": 1.0, "origins": 1, "changes": 1}


@pytest.mark.parametrize("answer", [
    {"shortfall": {"a": 3}, "rollbacks": []},  # not below the cursor
    {"shortfall": {"b": 0}, "rollbacks": []},  # an origin not asked about
    {"shortfall": {"a": -1}, "rollbacks": []},
    {"shortfall": [], "rollbacks": []},
    {"shortfall": {}},
    {"shortfall": {}, "rollbacks": [GOOD_FINDING] * 11},
    {"shortfall": {}, "rollbacks": [{**GOOD_FINDING, "at": "yesterday"}]},
    {"shortfall": {}, "rollbacks": [{**GOOD_FINDING, "id": ""}]},
    {"shortfall": {}, "rollbacks": [{**GOOD_FINDING, "changes": -4}]},
    {"shortfall": {}, "rollbacks": [{**GOOD_FINDING, "origins": True}]},
    {"shortfall": {}, "rollbacks": [], "compacted": {"a": 3}},  # compacted no further than the cursor holds
    {"shortfall": {}, "rollbacks": [], "compacted": {"b": "9"}},
    {"shortfall": {}, "rollbacks": [], "compacted": []},
])
def test_a_shortfall_of_another_shape_is_a_hub_failure(fake, answer):
    hub = featured(fake, "shortfall")
    fake.says({"data": answer, "meta": {}})
    with pytest.raises(StoreUnavailable, match="answered"):
        hub.shortfall({"a": 3})


def test_floors_are_taken_only_from_a_hub_server_that_can_be_healed(fake):
    answer = {"data": {"shortfall": {}, "rollbacks": [], "compacted": {}, "floors": {"a": 2}}, "meta": {}}
    hub = featured(fake, "shortfall", "snapshot")
    fake.says(answer)
    assert hub.shortfall({"a": 3})["floors"] == {}, "a hub that cannot get a log back is not one to drop it for"
    hub = featured(fake, "shortfall", "snapshot", "heal")
    fake.says(answer)
    assert hub.shortfall({"a": 3})["floors"] == {"a": 2}


@pytest.mark.parametrize("floors", [{"b": 1}, {"a": "1"}, {"a": -1}, []])
def test_floors_of_another_shape_are_a_hub_failure(fake, floors):
    hub = featured(fake, "shortfall", "heal")
    fake.says({"data": {"shortfall": {}, "rollbacks": [], "floors": floors}, "meta": {}})
    with pytest.raises(StoreUnavailable, match="answered"):
        hub.shortfall({"a": 3})


HEALED = {"received": 1, "applied": 1, "conflicts": 0, "quarantined": [], "held": {"h1": 1}}


def test_records_are_given_to_a_hub_server_that_takes_them(fake):
    hub = featured(fake, "heal")
    fake.says({"data": HEALED, "meta": {}})
    assert hub.heal([{"kind": "course"}], hold={"h1": 1}, log_as="h0123456789ab") == {
        **HEALED, "logged": {}, "skipped": []}
    assert fake.requests[-1] == ("POST", "/hub/v1/heal", {"records": [{"kind": "course"}],
                                                          "hold": [{"origin": "h1", "seq": 1}]}), \
        "no logAs to a hub server that does not log a heal"
    hub = featured(fake, "heal", "healLog")
    fake.says({"data": {**HEALED, "logged": {"h0123456789ab": 3}, "skipped": ["dev-l"]}, "meta": {}})
    assert hub.heal([{"kind": "course"}], hold={"h1": 1}, log_as="h0123456789ab")["logged"] == {"h0123456789ab": 3}
    assert fake.requests[-1][2]["logAs"] == "h0123456789ab"


@pytest.mark.parametrize("answer", [
    {**HEALED, "logged": {"h0000000000ff": 3}},  # under another origin than asked
    {**HEALED, "logged": {"h0123456789ab": -1}}, {**HEALED, "skipped": "dev-l"}, {**HEALED, "skipped": [7]},
])
def test_what_a_heal_logged_of_another_shape_is_a_hub_failure(fake, answer):
    hub = featured(fake, "heal", "healLog")
    fake.says({"data": answer, "meta": {}})
    with pytest.raises(StoreUnavailable, match="answered"):
        hub.heal([{"kind": "course"}], hold={"h1": 1}, log_as="h0123456789ab")


@pytest.mark.parametrize("answer", [
    {**HEALED, "held": {}},  # not what was asked to be held
    {**HEALED, "held": {"h1": 1, "b": 4}},
    {**HEALED, "applied": 2},  # more than it was given
    {**HEALED, "conflicts": "0"},
    {**HEALED, "quarantined": [{"seq": 1}]},
    {k: v for k, v in HEALED.items() if k != "held"},
])
def test_a_heal_result_of_another_shape_is_a_hub_failure(fake, answer):
    hub = featured(fake, "heal")
    fake.says({"data": answer, "meta": {}})
    with pytest.raises(StoreUnavailable, match="answered"):
        hub.heal([{"kind": "course"}], hold={"h1": 1})


@pytest.mark.parametrize("page", [
    {"cursor": {}, "records": [{}] * 3, "next": None},  # more than the limit
    {"cursor": [], "records": [], "next": None},
    {"cursor": {}, "records": {}, "next": None},
    {"cursor": {}, "records": [], "next": ["course"]},
    {"cursor": {}, "records": [], "next": ["course", "a"]},  # not past the page asked after
])
def test_a_snapshot_page_of_another_shape_is_a_hub_failure(fake, page):
    hub = featured(fake, "shortfall", "snapshot")
    fake.says({"data": page, "meta": {}})
    with pytest.raises(StoreUnavailable, match="answered"):
        hub.snapshot_page(("course", "b"), 2)


def test_an_older_hub_server_is_asked_for_no_snapshot(fake):
    hub = featured(fake, "shortfall")
    with pytest.raises(StoreUnavailable, match="serves no snapshot"):
        hub.snapshot_page(None, 10)
    assert [r[1] for r in fake.requests] == ["/hub/v1/epoch"]


@pytest.mark.parametrize("resume", [[], {"a": "1"}, {"a": -1}, {"a": 2**60}])
def test_a_resume_of_another_shape_is_a_hub_failure(fake, resume):
    hub = featured(fake, "resume")
    fake.says({"data": {"received": 1, "applied": 0, "conflicts": 0, "quarantined": [], "resume": resume}, "meta": {}})
    with pytest.raises(StoreUnavailable, match="answered"):
        hub.apply_changes([{"origin": "a", "seq": 1}])


@pytest.mark.parametrize("owned", [[], {"a": "1"}, {"a": -1}])
def test_an_owned_answer_of_another_shape_is_a_hub_failure(fake, owned):
    hub = featured(fake, "relay")
    fake.says({"data": {"received": 1, "applied": 0, "conflicts": 0, "quarantined": [], "owned": owned}, "meta": {}})
    with pytest.raises(StoreUnavailable, match="answered"):
        hub.relay_changes([{"origin": "a", "seq": 1}])


def test_an_answer_past_the_limit_before_inflating_is_refused_unread(fake, monkeypatch):
    """A hub that sends more than the client takes (gzip or not) is cut off at the limit: the
    client reads no further than one byte past it and the round ends as a hub failure."""
    monkeypatch.setattr("server.sync.http_hub.MAX_ANSWER_BYTES", 1000)
    hub = client(fake.url)
    fake.answer = (200, b'{"data": {"epoch": "' + b"e" * 5000 + b'"}}', {})
    with pytest.raises(StoreUnavailable, match="a body of more than 1000 bytes"):
        hub.hub_epoch()
    fake.says({"data": {"epoch": "e1", "features": []}})
    assert hub.hub_epoch() == "e1", "the connection cut off is not used again"


def test_a_batch_is_cut_to_its_bytes_and_keeps_the_json_it_was_measured_as():
    changes = [{"origin": "me", "seq": n, "fields": {"notes": "x" * 100}} for n in range(1, 11)]
    one = len(json.dumps(changes[0], separators=(",", ":"))) + 1
    cut = within_bytes(changes, 3 * one)
    assert cut == changes[:3] and json.loads(cut.json) == changes[:3]
    assert within_bytes(changes, 1) == changes[:1], "at least one, however large"
    assert json.loads(within_bytes([], 10).json) == []
    whole = within_bytes(changes, 11 * one)
    assert whole == changes and json.loads(whole.json) == changes


def test_a_push_sends_the_json_the_batch_was_measured_as_not_a_second_serialisation(fake):
    hub = featured(fake, "relay", "heal")
    batch = within_bytes([{"origin": "me", "seq": 1}, {"origin": "me", "seq": 2}], 1000)
    batch.json = b'[{"origin":"me","seq":7}]'  # what was measured is what goes, byte for byte
    fake.says({"data": {"received": 2, "applied": 1, "conflicts": 0, "quarantined": []}, "meta": {}})
    hub.apply_changes(batch)
    assert fake.requests[-1][2] == {"changes": [{"origin": "me", "seq": 7}]}
    hub.relay_changes(batch)
    assert fake.requests[-1][2] == {"changes": [{"origin": "me", "seq": 7}], "relay": True}
    fake.says({"data": {"received": 1, "applied": 1, "conflicts": 0, "quarantined": []}, "meta": {}})
    hub.apply_changes([{"origin": "me", "seq": 3}])  # a list no one measured is serialised here
    assert fake.requests[-1][2] == {"changes": [{"origin": "me", "seq": 3}]}
    records = within_bytes([{"kind": "course"}], 1000)
    records.json = b'[{"kind":"lecture"}]'
    fake.says({"data": HEALED, "meta": {}})
    hub.heal(records, hold={"h1": 1})
    assert fake.requests[-1][2] == {"records": [{"kind": "lecture"}], "hold": [{"origin": "h1", "seq": 1}]}
