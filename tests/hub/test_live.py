"""Live sync: an edit reaches the user's other devices while their timers are an hour away,
through the waiting call a hub server holds open (POST /hub/v1/wait), on real processes; and the
wait's own rules at the hub: news wakes it, a device's own changes do not, a newer wait of the
same device stands, a revoked token ends it with 401, a stopping hub answers it."""

from __future__ import annotations

import json
import signal
import threading
import time

import mongomock_ng
import pytest

from server.connectors.factory import get_db_connector
from server.core.config import Settings
from server.core.errors import HubRefused
from server.sync.engine import run_round
from server.sync.http_hub import HubClient
from server.sync.hub import Hub, StoreHub, WaitingHub
from server.sync.live import LiveWait
from server.sync.service import SyncService
from tests.e2e.test_e2e_devices import courses, create, wait_for
from tests.hub.test_crowds import one_change
from tests.hub.test_hub_process import USER, Hubs, waiting_devices
from tests.hub.test_hub_process import hubs as hub_processes
from tests.procs import ServerProcess
from tests.synckit import course

hubs = hub_processes  # the fixture: hub processes on SQLite and on the wire tier's MongoDB


@pytest.fixture
def sql_hubs(tmp_path):
    """Hub processes on a SQLite file only, for what does not depend on the hub's store."""
    made = Hubs(tmp_path, "sql", None)
    yield made
    made.stop()

LIVE = {"SYNC_LIVE": "1", "SYNC_PUSH_ON_WRITE": "1"}


def titles(srv: ServerProcess) -> set[str]:
    return {c["title"] for c in courses(srv)}


def client(hub: ServerProcess, token: str) -> HubClient:
    c = HubClient(f"http://127.0.0.1:{hub.port}", token, timeout_ms=3000)
    c.hub_epoch()
    return c


def until_waiting(hub: ServerProcess, n: int = 1) -> None:
    wait_for(lambda: waiting_devices(hub) >= n, 120, f"{n} wait(s) held at the hub")


class Timed:
    """A wait in a thread of its own: its answer (or error) and when it came."""

    def __init__(self, hub_client: HubClient, cursor: dict, seconds: float, exclude: str | None = "nobody"):
        self.answer, self.error, self.elapsed = None, None, None
        self._thread = threading.Thread(target=self._run, args=(hub_client, cursor, seconds, exclude))
        self._started = time.monotonic()
        self._thread.start()

    def _run(self, hub_client, cursor, seconds, exclude):
        try:
            self.answer = hub_client.wait(cursor, exclude_origin=exclude, seconds=seconds)
        except Exception as exc:
            self.error = exc
        self.elapsed = time.monotonic() - self._started

    def join(self, timeout: float = 90) -> "Timed":
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the wait never ended"
        return self


@pytest.mark.wire_when_real
def test_an_edit_reaches_the_other_device_with_no_round_of_its_own(hubs, tmp_path):
    """Timers an hour away: only push on write and the waiting pull can carry it."""
    hub = hubs.hub()
    a = hubs.device("A", hub, hubs.token(), **LIVE)
    b = hubs.device("B", hub, hubs.token(), **LIVE)
    wait_for(lambda: hubs.status("B")["state"] == "live", 120, "B to be live")
    assert hubs.status("B")["live"]["state"] == "waiting"
    create(a, "/api/v1/courses", {"title": "Made on A", "source": "https://a.b"})
    wait_for(lambda: "Made on A" in titles(b), 120, "A's course on B")
    # The round the wake-up ran (the course shows before the round's report is in).
    status = wait_for(lambda: (s := hubs.status("B"))["totals"]["pulled"] >= 1 and s, 120, "the round's report")
    assert status["live"]["wakes"] >= 1 and status["live"]["lastRemoteLagMs"] is not None, json.dumps(status)
    # And back: B's edit reaches A the same way.
    create(b, "/api/v1/courses", {"title": "Made on B", "source": "https://a.b"})
    wait_for(lambda: "Made on B" in titles(a), 120, "B's course on A")


def test_a_push_through_one_hub_process_wakes_a_device_waiting_on_another(hubs):
    first, second = hubs.hub(), hubs.hub()
    a = hubs.device("A", first, hubs.token(), **LIVE)
    b = hubs.device("B", second, hubs.token(), **LIVE)
    wait_for(lambda: hubs.status("B")["state"] == "live", 120, "B to be live")
    create(a, "/api/v1/courses", {"title": "Across processes", "source": "https://a.b"})
    wait_for(lambda: "Across processes" in titles(b), 120, "the course on B")
    assert hubs.status("B")["live"]["wakes"] >= 1


def test_devices_back_off_while_the_hub_is_down_and_come_back_live(sql_hubs):
    hub = sql_hubs.hub()
    a = sql_hubs.device("A", hub, sql_hubs.token(), **LIVE)
    b = sql_hubs.device("B", hub, sql_hubs.token(), **LIVE)
    wait_for(lambda: sql_hubs.status("B")["state"] == "live", 120, "B to be live")
    hub.kill()
    wait_for(lambda: sql_hubs.status("B")["live"]["state"] == "retrying", 120, "B's wait to notice")
    create(a, "/api/v1/courses", {"title": "While down", "source": "https://a.b"})
    hub.start()
    # A's push (retried on its backoff or its next write) and B's wait both come back by themselves.
    create(a, "/api/v1/courses", {"title": "After", "source": "https://a.b"})
    wait_for(lambda: {"While down", "After"} <= titles(b), 120, "both courses on B")
    wait_for(lambda: sql_hubs.status("B")["state"] == "live", 120, "B live again")
    assert sorted(c["title"] for c in courses(b)).count("While down") == 1


def test_a_device_with_live_off_waits_for_its_timer(sql_hubs):
    hub = sql_hubs.hub()
    a = sql_hubs.device("A", hub, sql_hubs.token(), **LIVE)
    b = sql_hubs.device("B", hub, sql_hubs.token(), SYNC_LIVE="0")
    wait_for(lambda: sql_hubs.status("B")["state"] == "idle", 120, "B's first round to end")
    create(a, "/api/v1/courses", {"title": "Quiet", "source": "https://a.b"})
    wait_for(lambda: sql_hubs.status("A")["pending"]["count"] == 0, 120, "A to push")
    assert sql_hubs.status("B")["live"]["state"] == "off" and sql_hubs.status("B")["state"] == "idle"
    assert "Quiet" not in titles(b)
    assert b.sync()["error"] is None and "Quiet" in titles(b)


class TestTheWaitAtTheHub:
    """The call itself, on a hub process (SQLite and the wire tier's MongoDB)."""

    def test_news_of_another_origin_wakes_it_and_the_devices_own_do_not(self, hubs, tmp_path):
        hub = hubs.hub()
        waiting = client(hub, hubs.token())
        pusher = client(hub, hubs.token())
        change = one_change(tmp_path, USER)
        origin = change[0]["origin"]
        own = Timed(waiting, {}, 10, exclude=origin)
        until_waiting(hub)
        pusher.apply_changes(change)
        assert own.join().answer is False and own.elapsed >= 9.5  # its own origin is no news
        assert waiting.wait({}, exclude_origin="other", seconds=30) is True  # there already: at once
        news = Timed(waiting, {origin: 1}, 60, exclude="other")
        until_waiting(hub)
        more = one_change(tmp_path, USER)[1:] or _next_change(change[0])
        pusher.apply_changes(more)
        assert news.join().answer is True and news.elapsed < 30

    def test_a_newer_wait_of_the_same_device_ends_the_older(self, sql_hubs):
        hub = sql_hubs.hub()
        token = sql_hubs.token()
        older = Timed(client(hub, token), {}, 60)
        until_waiting(hub)
        newer = Timed(client(hub, token), {}, 2)
        assert older.join().answer is False and older.elapsed < 30
        assert newer.join().answer is False and newer.error is None

    @pytest.mark.wire_when_real
    def test_a_revoked_token_ends_the_wait_with_401(self, hubs):
        hub = hubs.hub()
        token = hubs.token()
        waiting = Timed(client(hub, token), {}, 60)
        until_waiting(hub)
        assert hubs.cli("revoke", token).returncode == 0  # another process: the CLI
        waiting.join()
        assert isinstance(waiting.error, HubRefused) and waiting.error.reason == "token_revoked"
        assert waiting.elapsed < 30

    def test_a_stopping_hub_answers_its_waits(self, sql_hubs):
        hub = sql_hubs.hub()
        waiting = Timed(client(hub, sql_hubs.token()), {}, 60)
        until_waiting(hub)
        hub.stop()
        waiting.join()
        assert waiting.answer is False and waiting.elapsed < 30

    def test_a_wait_that_runs_its_time_out_answers_in_the_envelope(self, sql_hubs):
        """Answered from its parked check (no second pass): the same envelope, its own trace id."""
        hub = sql_hubs.hub()
        token = sql_hubs.token()
        headers = {"Authorization": f"Bearer {token}", "X-Request-Id": "time-is-up-1"}
        start = time.monotonic()
        status, answer, sent = hub.request("POST", "/hub/v1/wait", {"cursor": {}, "seconds": 1}, headers=headers)
        assert status == 200 and answer == {"data": {"changed": False}, "meta": {"traceId": "time-is-up-1"}}, answer
        assert sent["Content-Type"] == "application/json" and time.monotonic() - start >= 0.9

    def test_bad_waits_are_refused_at_the_door(self, sql_hubs):
        hub = sql_hubs.hub()
        token = sql_hubs.token()
        for body, field in [({"seconds": 61}, "seconds"), ({"seconds": True}, "seconds"),
                            ({"cursor": {"o": -1}}, "cursor"), ({"extra": 1}, "extra")]:
            status, answer = _post(hub, "/hub/v1/wait", token, body)
            assert status == 400 and field in answer["error"]["fields"], answer
        assert _post(hub, "/hub/v1/wait", "csh_nope", {})[0] == 401


def _post(hub: ServerProcess, path: str, token: str, body: dict):
    status, answer, _ = hub.request("POST", path, body, headers={"Authorization": f"Bearer {token}"})
    return status, answer


def _next_change(change: dict) -> list[dict]:
    return [{**change, "seq": change["seq"] + 1, "hlc": change["hlc"][:16] + "000009" + change["hlc"][22:],
             "fields": {"notes": "more"}, "bases": {"notes": ""}, "op": "upsert"}]


def test_an_older_hub_server_without_the_call_leaves_the_device_on_its_timer(tmp_path):
    """A hub whose epoch names no "wait": the live thread says so and stops, the timer goes on."""
    class OldHub:
        def wait(self, cursor, *, exclude_origin, seconds):
            return None  # what HubClient.wait answers when the hub lacks the feature

        def interrupt(self):
            pass

        def close(self):
            pass

    local = get_db_connector("sql", Settings(), path=str(tmp_path / "d.sqlite3"), user_id=USER)
    local.connect()
    service = SyncService(Settings(), local, lambda: OldHub())
    live = LiveWait(service, OldHub)
    live.start()
    wait_for(lambda: live.state == "timer", 120, "the live thread to give way to the timer")
    live.stop()
    local.close()


@pytest.mark.parametrize("kind", ["mongo", "sql"])
def test_a_device_on_a_hub_store_it_opens_itself_polls_and_pulls_at_once(tmp_path, kind):
    """MongoDB (MONGO_URI) or a SQLite hub file: no hub server to hold a wait, so a short indexed
    poll; a change another device pushed is pulled without the timer."""
    mongo = mongomock_ng.MongoClient()

    def open_hub():
        if kind == "mongo":
            hub = get_db_connector("mongo", Settings(), client=mongo, db_name="hub", user_id=USER)
        else:
            hub = get_db_connector("sql", Settings(), path=str(tmp_path / "hub.sqlite3"), user_id=USER,
                                   origin=None)
        hub = StoreHub(hub)
        hub.connect()
        return hub

    stores = {}
    for name in ("a", "b"):
        stores[name] = get_db_connector("sql", Settings(), path=str(tmp_path / f"{name}.sqlite3"), user_id=USER,
                                        origin=name)
        stores[name].connect()
    hub_a = open_hub()
    service = SyncService(Settings(sync_interval_seconds=3600), stores["b"], open_hub)
    assert service.run_once(here=True).error is None
    live = LiveWait(service, open_hub)
    live.start()
    try:
        wait_for(lambda: live.state == "waiting", 120, "b to wait")
        course(stores["a"], title="polled")
        assert run_round(stores["a"], hub_a).error is None
        wait_for(lambda: any(c["title"] == "polled" for c in stores["b"].get_courses()), 120, "the course on b")
        assert live.wakes >= 1
    finally:
        live.stop()
        service.shutdown()
        hub_a.close()
        for store in stores.values():
            store.close()


class FakeSource:
    """Tops the test sets by hand, and a marker that moves on every look (another writer)."""

    interval = 0.05

    def __init__(self):
        self.tops_now: dict[str, tuple] = {}
        self.looks = 0

    def marker(self):
        self.looks += 1
        return self.looks

    def tops(self, users):
        return {u: t for u, t in self.tops_now.items() if u in users}


def test_the_watcher_wakes_only_the_users_whose_log_moved():
    from server.hub.waiters import Waiters, Watcher

    waiters, source = Waiters(), FakeSource()
    watcher = Watcher(waiters, source, lambda devices: set())
    source.tops_now = {"ann": (("o1", 3),)}  # bob has no change at all yet

    def wait_all():
        return {u: waiters.add(u, f"{u}-phone") for u in ("ann", "bob")}

    first = wait_all()
    watcher.look()
    assert {u: w.reason for u, w in first.items()} == {"ann": "news", "bob": "news"}  # first seen
    again = wait_all()
    watcher.look()
    watcher.look()
    assert {u: w.reason for u, w in again.items()} == {"ann": None, "bob": None}  # nothing moved
    source.tops_now["bob"] = (("o2", 1),)
    watcher.look()
    assert {u: w.reason for u, w in again.items()} == {"ann": None, "bob": "news"}


class StillSource(FakeSource):
    """A marker that moves only when the test says another writer committed."""

    def marker(self):
        return self.looks


def test_waits_that_came_while_nothing_was_written_are_noted_not_woken():
    from server.hub.waiters import Waiters, Watcher

    waiters, source = Waiters(), StillSource()
    watcher = Watcher(waiters, source, lambda devices: set())
    source.tops_now = {"ann": (("o1", 3),)}
    ann = waiters.add("ann", "ann-phone")
    watcher.look()  # the first look knows no marker: ann is woken, as any user first seen
    assert ann.reason == "news"
    crowd = {u: waiters.add(u, f"{u}-phone") for u in ("ann", "bob", "cid")}
    watcher.look()  # no commit since the last look's marker: they read the newest, and wait on
    assert {u: w.reason for u, w in crowd.items()} == {"ann": None, "bob": None, "cid": None}
    source.tops_now["cid"], source.looks = (("o2", 1),), 1  # another process writes cid's change
    watcher.look()
    assert {u: w.reason for u, w in crowd.items()} == {"ann": None, "bob": None, "cid": "news"}
    dan = waiters.add("dan", "dan-phone")
    source.looks = 2  # something committed: a newcomer may have missed it, and is woken
    watcher.look()
    assert dan.reason == "news" and crowd["bob"].reason is None


def test_revocations_are_looked_up_after_a_commit_at_most_once_a_while(monkeypatch):
    from server.hub import waiters as module

    monkeypatch.setattr(module, "REVOKED_SECONDS", 3600.0)
    waiters, source, asked = module.Waiters(), StillSource(), []
    revoked: set[str] = set()
    watcher = module.Watcher(waiters, source, lambda devices: asked.append(len(devices)) or revoked & set(devices))
    ann = waiters.add("ann", "ann-phone")
    watcher.look()  # the first look: revocations too
    assert asked == [1]
    revoked.add("ann-phone")
    source.looks = 1  # the revocation's commit, but within the hour: not looked up yet
    watcher.look()
    assert asked == [1] and ann.reason == "news"
    monkeypatch.setattr(watcher, "_revoked_next", 0.0)  # the hour is up: the next look, though
    watcher.look()  # nothing new was committed, finds it
    assert asked == [1, 1] and ann.reason == "revoked"
    watcher.look()
    assert asked == [1, 1]  # once per commit


def test_each_kind_of_hub_is_the_declared_interface(tmp_path):
    """The engine and the live wait see a hub only as hub.Hub / hub.WaitingHub: a hub server's
    client and a store opened as a hub are both WaitingHubs, a bare store is a Hub (a round can
    run on it, a live wait cannot)."""
    store = get_db_connector("sql", Settings(), path=str(tmp_path / "h.sqlite3"), user_id=USER, origin=None)
    client = HubClient("http://127.0.0.1:9", "t")
    assert isinstance(client, WaitingHub) and isinstance(StoreHub(store), WaitingHub)
    assert isinstance(store, Hub) and not isinstance(store, WaitingHub)


def test_sync_now_with_live_sync_busy_joins_rather_than_refuses(sql_hubs):
    """The hub stops answering mid-round (SIGSTOP) for longer than "Sync now" used to wait (10 s),
    then comes back: the request gets the report of a round that started after it, and by then
    everything written before it is at the hub."""
    hub = sql_hubs.hub()
    a = sql_hubs.device("A", hub, sql_hubs.token(), HUB_TIMEOUT_MS="60000", **LIVE)
    wait_for(lambda: sql_hubs.status("A")["state"] == "live", 120, "A to be live")
    hub.proc.send_signal(signal.SIGSTOP)
    try:
        create(a, "/api/v1/courses", {"title": "Before sync now", "source": "https://a.b"})
        wait_for(lambda: sql_hubs.status("A")["state"] == "running", 120, "the push round to hang on the hub")
        answers: list = []
        asked = threading.Thread(target=lambda: answers.append(a.request("POST", "/api/v1/sync", {})))
        asked.start()
        asked.join(12)  # past the old 10 s wait, which answered 409 while the hub did not answer
        assert asked.is_alive(), f"Sync now answered while the hub was stopped: {answers}"
    finally:
        hub.proc.send_signal(signal.SIGCONT)
    asked.join(120)
    [(code, body, _)] = answers
    assert code == 200, body
    assert sql_hubs.status("A")["pending"]["count"] == 0, "all written before the request is at the hub"
