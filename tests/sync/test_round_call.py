"""One exchange per round (feature "round"): a device opens its round with POST /hub/v1/round,
which answers the epoch, the shortfall, the hub's part of the device's own origin and the first
pull page; an idle round is one request, a round that pushes one change two. An older hub
server (or COURSESYNC_ROUND_CALL=0) gets the old calls. Counted on a real hub process."""

from __future__ import annotations

import pytest

from server.connectors.factory import get_db_connector
from server.core.config import Settings
from server.sync import http_hub
from server.sync.engine import run_round
from server.sync.http_hub import HubClient
from server.sync.live import LiveWait
from server.sync.service import SyncService
from tests.e2e.test_e2e_devices import wait_for
from tests.hub.test_hub_process import USER, Hubs
from tests.synckit import course


class Counting(HubClient):
    """A hub client that notes the path of every call it makes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    def _call(self, method, path, body=None, timeout=None):
        self.calls.append(path)
        return super()._call(method, path, body, timeout)

    def round(self, store):
        self.calls = []
        report = run_round(store, self)
        assert report.error is None, report.error
        return report, self.calls


@pytest.fixture
def setup(tmp_path, request):
    hubs = Hubs(tmp_path, "sql", None)
    hub = hubs.hub()
    stores, clients, tokens = {}, {}, {}
    for name in ("a", "b"):
        stores[name] = get_db_connector("sql", Settings(), path=str(tmp_path / f"{name}.sqlite3"), user_id=USER,
                                        origin=name)
        stores[name].connect()
        tokens[name] = hubs.token()
        clients[name] = Counting(f"http://127.0.0.1:{hub.port}", tokens[name], timeout_ms=20_000, user_id=USER)
        clients[name].connect()
    request.node.hub, request.node.tokens = hub, tokens
    yield stores, clients
    for name in stores:
        clients[name].close()
        stores[name].close()
    hubs.stop()


def test_an_idle_round_is_one_request_and_a_one_change_push_two(setup):
    stores, clients = setup
    a, b = clients["a"], clients["b"]
    assert "round" in a.features
    a.round(stores["a"])
    b.round(stores["b"])
    assert a.round(stores["a"])[1] == ["/round"]
    course(stores["a"], id="c1", title="one change")
    report, calls = a.round(stores["a"])
    assert report.pushed == 1 and calls == ["/round", "/push"]
    report, calls = b.round(stores["b"])
    assert report.pulled == 1 and calls == ["/round"], "the change came in the round's first page"
    assert [c["title"] for c in stores["b"].get_courses()] == ["one change"]
    assert a.round(stores["a"])[1] == ["/round"]


def test_the_old_calls_without_the_round_call(setup, monkeypatch):
    stores, clients = setup
    a, b = clients["a"], clients["b"]
    monkeypatch.setattr(http_hub, "ROUND_CALL", False)
    a.round(stores["a"])
    course(stores["a"], id="c1", title="one change")
    report, calls = a.round(stores["a"])
    assert report.pushed == 1 and "/round" not in calls and calls[:2] == ["/epoch", "/shortfall"]
    report, calls = b.round(stores["b"])
    assert report.pulled == 1 and "/round" not in calls
    # An older hub server: no "round" in its features.
    monkeypatch.setattr(http_hub, "ROUND_CALL", True)
    a.features = a.features - {"round"}
    a.open_round({}, "a", 500)
    assert a.calls[-1] != "/round"


def test_the_round_call_answers_what_the_opening_calls_answer(setup):
    stores, clients = setup
    a, b = clients["a"], clients["b"]
    course(stores["a"], id="c1")
    a.round(stores["a"])
    opened = b._call("POST", "/round", {"cursor": {"b": 0}, "origin": "b", "limit": 10})
    epoch = b._call("GET", "/epoch")
    short = b._call("POST", "/shortfall", {"cursor": {"b": 0}})
    pulled = b._call("POST", "/pull", {"cursor": {"b": 0}, "limit": 10, "excludeOrigin": "b"})["changes"]
    own = b._call("POST", "/pull", {"cursor": {"b": 0}, "limit": 10, "onlyOrigin": "b"})["changes"]
    assert opened == {**epoch, **short, "own": own, "changes": pulled}
    assert [c["origin"] for c in opened["changes"]] == ["a"]
    with pytest.raises(Exception, match="400|refused"):
        b._call("POST", "/round", {"cursor": {"b": 0}, "limit": 10})


def test_a_live_wake_brings_the_changes_and_they_are_applied_with_no_round(setup, request):
    stores, clients = setup
    a, b = clients["a"], clients["b"]
    a.round(stores["a"])
    b.round(stores["b"])
    waiting = Counting(f"http://127.0.0.1:{request.node.hub.port}", request.node.tokens["b"], timeout_ms=20_000,
                       user_id=USER)
    waiting.connect()
    assert "waitChanges" in waiting.features
    b.calls = []
    service = SyncService(Settings(sync_interval_seconds=3600), stores["b"], lambda: b)
    live = LiveWait(service, lambda: waiting)
    live.start()
    try:
        wait_for(lambda: live.state == "waiting", 120, "b to wait")
        course(stores["a"], id="c1", title="woken with it")
        a.round(stores["a"])
        wait_for(lambda: [c["title"] for c in stores["b"].get_courses()] == ["woken with it"], 120, "the course on b")
        wait_for(lambda: service.totals["pulled"] == 1, 120, "the wake recorded")
        assert b.calls == [], "no round: the wait's answer was applied as a pull"
        assert set(waiting.calls) == {"/epoch", "/wait"} and live.wakes >= 1
    finally:
        live.stop()


def test_a_wake_answered_after_a_round_took_its_changes_is_no_alarm(setup, caplog):
    """The wait's page is read at the hub from the cursor the wait was asked with; a round may
    have pulled the same changes meanwhile. What the cursor has passed is left out, quietly; the
    rest of the page is applied."""
    from server.sync.bookmark import load_bookmark

    stores, clients = setup
    a, b = clients["a"], clients["b"]
    course(stores["a"], id="c1", title="first")
    a.round(stores["a"])
    b.round(stores["b"])  # b holds c1 now
    service = SyncService(Settings(sync_interval_seconds=3600), stores["b"], lambda: b)
    epoch = load_bookmark(stores["b"]).epoch
    held = stores["a"].changes_since({}, 10)
    caplog.set_level("WARNING", logger="server.sync")
    assert service.apply_woken({"changed": True, "epoch": epoch, "changes": held}) is True
    assert service.totals["pulled"] == 0 and caplog.records == []
    course(stores["a"], id="c2", title="second")
    page = stores["a"].changes_since({}, 10)  # the stale part and the new change, as one page
    assert len(page) == len(held) + 1
    assert service.apply_woken({"changed": True, "epoch": epoch, "changes": page}) is True
    assert sorted(c["title"] for c in stores["b"].get_courses()) == ["first", "second"]
    assert service.totals["pulled"] == 1 and caplog.records == []


def test_a_wake_page_that_does_not_follow_on_from_the_cursor_is_left_to_a_round(setup):
    """A page with a gap before it (the hub compacted or lost what lies between) or a change twice
    is not applied at all: applied, its changes would sit past a cursor that cannot pass them,
    and the round that must run anyway catches up from the hub's records instead."""
    from server.sync.bookmark import load_bookmark

    stores, clients = setup
    a, b = clients["a"], clients["b"]
    for n in range(3):
        course(stores["a"], id=f"c{n}", title=f"t{n}")
    a.round(stores["a"])
    b.round(stores["b"])
    service = SyncService(Settings(sync_interval_seconds=3600), stores["b"], lambda: b)
    epoch = load_bookmark(stores["b"]).epoch
    course(stores["a"], id="c3", title="after a gap")
    course(stores["a"], id="c4", title="next")
    newer = stores["a"].changes_since({}, 100)[-2:]
    before = load_bookmark(stores["b"]).cursor
    assert service.apply_woken({"changed": True, "epoch": epoch, "changes": newer[1:]}) is False  # c3's is missing
    assert service.apply_woken({"changed": True, "epoch": epoch, "changes": [newer[0], newer[0]]}) is False
    assert load_bookmark(stores["b"]).cursor == before
    assert "c3" not in {c["id"] for c in stores["b"].get_courses()} and service.totals["pulled"] == 0
    assert service.apply_woken({"changed": True, "epoch": epoch, "changes": newer}) is True
    assert {"c3", "c4"} <= {c["id"] for c in stores["b"].get_courses()}
    assert service.apply_woken({"changed": True, "epoch": "another", "changes": newer}) is False
