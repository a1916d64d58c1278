"""A device's GET /metrics, read back with Prometheus's own text parser: its rounds and store, and
no label that names a user or a device (a hub's: tests/hub/test_hub_metrics.py)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.api import create_app
from server.core.config import Settings
from tests.sync.test_worker import make_app
from tests.synckit import course

# Wire tier: a real MongoDB only (conftest); the figures are read above the store.
pytestmark = pytest.mark.wire_when_real

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
