"""GET /metrics, read back with Prometheus's own text parser: a device's rounds and store, a hub's
requests, changes, refusals and standing figures; the token rules; and no label that names a
user or a device."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.api import create_app
from server.core.config import Settings
from tests.hub.test_hub_server import USER, Hub
from tests.sync.test_worker import make_app
from tests.synckit import course

# Wire tier: a real MongoDB only (conftest); the figures are read above the store.
pytestmark = pytest.mark.wire_when_real

SCRAPE_TOKEN = "scrape-" + "s" * 20


def parsed(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, from the exposition format."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def label_values(figures: dict) -> set[str]:
    return {value for _, labels in figures for name, value in labels if name != "le"}


def scrape(client, token: str | None = None) -> tuple[dict, str]:
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = resp.get_data(as_text=True)
    return parsed(text), text


class TestDevice:
    def test_rounds_changes_and_the_store_are_counted(self, device, hub_client, tmp_path):
        flaky: list = []
        app = make_app(device, hub_client, tmp_path, flaky=flaky)
        client = app.test_client()
        course(device, id="c1")
        course(device, id="c2")
        before, _ = scrape(client)
        assert before[("coursesync_sync_pending_changes", ())] == 2
        assert before[("coursesync_sync_pending_oldest_age_seconds", ())] >= 0
        assert before[("coursesync_sync_rounds_total", (("result", "ok"),))] == 0
        assert before[("coursesync_sync_enabled", ())] == 1
        assert ("coursesync_sync_last_success_timestamp_seconds", ()) not in before, "no round has succeeded yet"

        assert client.post("/api/v1/sync", json={}).status_code == 200
        flaky[0].down = True
        client.post("/api/v1/sync", json={})
        after, _ = scrape(client)
        assert after[("coursesync_sync_rounds_total", (("result", "ok"),))] == 1
        assert after[("coursesync_sync_rounds_total", (("result", "failed"),))] == 1
        assert after[("coursesync_sync_round_seconds_count", ())] == 2
        assert after[("coursesync_sync_changes_total", (("direction", "pushed"),))] == 2
        assert after[("coursesync_sync_pending_changes", ())] == 0
        assert after[("coursesync_sync_consecutive_failures", ())] == 1
        assert after[("coursesync_sync_last_success_timestamp_seconds", ())] > 1.7e9
        assert after[("coursesync_sync_open_conflicts", ())] == 0 and after[("coursesync_sync_quarantined", ())] == 0
        assert label_values(after) <= {"ok", "failed", "pushed", "pulled", "relayed", "from_snapshot", "conflicts"}, \
            "no label names the device or its user"

    def test_without_a_hub_it_says_sync_is_off_and_what_waits(self, connector):
        app = create_app(Settings(), store=connector, start_sync=False, testing=True)
        course(connector)
        figures, _ = scrape(app.test_client())
        assert figures[("coursesync_sync_enabled", ())] == 0
        assert figures[("coursesync_sync_pending_changes", ())] == 1
        assert figures[("coursesync_sync_rounds_total", (("result", "ok"),))] == 0

    def test_behind_the_api_token_like_the_rest(self, connector, tmp_path):
        token = "t" * 20
        app = create_app(Settings(api_token=token), store=connector, start_sync=False, testing=True)
        client = app.test_client()
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "unauthorized"
        scrape(client, token)


@pytest.fixture
def device(sql_factory):
    conn = sql_factory("dev", user_id="learner", origin="dev")
    conn.connect()
    return conn


@pytest.fixture
def hub_client():
    import mongomock_ng

    return mongomock_ng.MongoClient()


def hub_with_metrics(store_factory, tmp_path, token: str | None = SCRAPE_TOKEN) -> Hub:
    base = store_factory("hub", user_id="hub-owner")
    base.connect()
    kind = "sql" if store_factory.kind == "sql" else "mongo"
    settings = Settings(db_connector=kind, sqlite_path=getattr(base, "path", str(tmp_path / "x.sqlite3")))
    return Hub(base, replace(settings, hub_metrics_token=token))


class TestHub:
    def test_requests_changes_refusals_and_what_stands(self, store_factory, tmp_path, sql_factory):
        hub = hub_with_metrics(store_factory, tmp_path)
        try:
            dev = sql_factory("dev-a", user_id=USER, origin="dev-a")
            dev.connect()
            course(dev, id="c1")
            dev.update("course", None, "c1", {"notes": "n"})
            device_id, token = hub.token(name="phone")
            hub.token(name="tablet")
            assert hub.call("POST", "/push", token, {"changes": dev.changes_since({}, 10)})[0] == 200
            bad = {**dev.changes_since({}, 1)[0], "seq": 3, "fields": {"title": 7}, "bases": {"title": ""}}
            assert hub.call("POST", "/push", token, {"changes": [{"x": 1}, bad]})[0] == 200
            assert hub.call("POST", "/pull", token, {"cursor": {}})[0] == 200
            assert hub.call("POST", "/pull", "csh_" + "x" * 43, {"cursor": {}})[0] == 401
            assert hub.call("POST", "/push", token, {"changes": "no"})[0] == 400
            figures, text = scrape(hub.client, SCRAPE_TOKEN)
        finally:
            hub.app.extensions["hub_stores"].close()
        requests = {labels: v for (name, labels), v in figures.items() if name == "coursesync_hub_requests_total"}
        assert requests[(("call", "hubPush"), ("status", "200")) ] == 2
        assert requests[(("call", "hubPull"), ("status", "200"))] == 1
        assert requests[(("call", "hubPull"), ("status", "401"))] == 1
        assert requests[(("call", "hubPush"), ("status", "400"))] == 1
        assert figures[("coursesync_hub_changes_total", (("direction", "pushed"),))] == 2
        assert figures[("coursesync_hub_changes_total", (("direction", "pulled"),))] == 3  # two, and a filler
        assert figures[("coursesync_hub_refusals_total", (("reason", "shape"),))] == 1
        assert figures[("coursesync_hub_refusals_total", (("reason", "field"),))] == 1
        assert figures[("coursesync_hub_refusals_total", (("reason", "unknown_token"),))] == 1
        assert figures[("coursesync_hub_devices", ())] == 2
        assert figures[("coursesync_hub_devices_seen_last_day", ())] == 1
        assert figures[("coursesync_hub_user_stores_cached", ())] == 1
        assert figures[("coursesync_hub_user_stores_limit", ())] == 4096
        assert figures[("coursesync_hub_waiting_devices", ())] == 0
        assert figures[("coursesync_hub_log_changes", ())] == 3
        assert figures[("coursesync_hub_log_compacted_changes", ())] == 0
        assert not label_values(figures) & {device_id, USER, "dev-a"}, "no label names a device or a user"
        assert device_id not in text and "dev-a" not in text

    def test_a_scrape_brings_the_metrics_token_and_a_devices_token_is_not_enough(self, store_factory, tmp_path):
        hub = hub_with_metrics(store_factory, tmp_path)
        try:
            _, device_token = hub.token()
            for headers in ({}, {"Authorization": f"Bearer {device_token}"}, {"Authorization": "Bearer nope"}):
                resp = hub.client.get("/metrics", headers=headers)
                assert resp.status_code == 401 and "HUB_METRICS_TOKEN" in resp.get_json()["error"]["message"]
            for scheme in ("Bearer", "bearer", "BEARER"):  # the scheme in any case (RFC 9110)
                resp = hub.client.get("/metrics", headers={"Authorization": f"{scheme} {SCRAPE_TOKEN}"})
                assert resp.status_code == 200 and b"coursesync_hub_devices" in resp.data
        finally:
            hub.app.extensions["hub_stores"].close()

    def test_unset_the_hub_serves_no_metrics_and_says_how_to(self, store_factory, tmp_path):
        hub = hub_with_metrics(store_factory, tmp_path, token=None)
        try:
            resp = hub.client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
            assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "metrics_off"
        finally:
            hub.app.extensions["hub_stores"].close()


@pytest.mark.parametrize("refusal, kind", [
    ({"code": "clock_ahead", "aheadSeconds": 90000, "limitSeconds": 86400}, "clock_ahead"),
    ({"code": "foreign_stamp"}, "stamp"), ({"code": "bad_stamp"}, "stamp"), ({"code": "bad_bases"}, "stamp"),
    ({"code": "bad_base", "field": "title"}, "stamp"), ({"code": "bases_mismatch"}, "stamp"),
    ({"code": "invalid_field", "field": "title"}, "field"), ({"code": "bad_fields"}, "field"),
    ({"code": "bad_delete"}, "field"), ({"code": "unknown_keys", "keys": ["x"]}, "shape"),
    ({"code": "missing_keys", "keys": ["hlc"]}, "shape"), ({"code": "not_an_object"}, "shape"),
    ({"code": "bad_record", "problem": "record_fields"}, "record"),
    ({"code": "bad_op"}, "other"), ({"code": "something_new"}, "other"),
    ({"reason": "hlc is 90000 s ahead of this clock (the limit is 86400 s)"}, "other"),  # no code: never parsed
])
def test_a_refusals_code_becomes_one_of_a_few_kinds(refusal, kind):
    from server.device.metrics import refusal_kind

    assert refusal_kind(refusal) == kind
