"""A hub server's GET /metrics, read back with Prometheus's own text parser: its requests,
changes, refusals and standing figures; the scrape's token; and no label that names a user or a
device."""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.core.config import Settings
from tests.device.test_metrics import label_values, scrape
from tests.hub.test_hub_server import USER, Hub
from tests.synckit import course

# Wire tier: a real MongoDB only (conftest); the figures are read above the store.
pytestmark = pytest.mark.wire_when_real

SCRAPE_TOKEN = "scrape-" + "s" * 20


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
        assert figures[("coursesync_hub_user_stores_limit", ())] == 16_384
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
    from server.hub.metrics import refusal_kind

    assert refusal_kind(refusal) == kind
