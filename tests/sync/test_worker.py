"""The sync worker and its routes: when it starts, back-off, one lock, status, CLI."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import threading

import mongomock_ng
import pytest

from server.api import create_app
from server.connectors.factory import get_db_connector
from server.core.config import Settings
from server.core.errors import SyncBusy
from server.sync.hub import open_hub
from server.sync.report import RoundReport
from server.sync.service import SyncService
from server.sync.wiring import should_start_worker, stop_worker
from tests.sync.test_sync_process import wait_until
from tests.synckit import FlakyHub, course

HUB_URI = "mongodb://sync:hunter2@hub.invalid:27017/"


@pytest.fixture
def hub_client():
    return mongomock_ng.MongoClient()


@pytest.fixture
def device(sql_factory):
    conn = sql_factory("dev", user_id="learner", origin="dev")
    conn.connect()
    return conn


def make_app(device, hub_client, tmp_path, flaky: list | None = None, start_sync: bool = False, **kw):
    def open_test_hub():
        hub = get_db_connector("mongo", Settings(), client=hub_client, db_name="hub", user_id=device.user_id)
        hub.connect()
        if flaky is not None:
            hub = FlakyHub(hub)
            flaky.append(hub)
        return hub

    settings = Settings(sqlite_path=str(tmp_path / "x"), mongo_uri=HUB_URI, sync_interval_seconds=60)
    return create_app(settings, store=device, hub=open_test_hub, start_sync=start_sync, **kw)


def test_post_sync_runs_a_round_and_reports_it(device, hub_client, tmp_path):
    app = make_app(device, hub_client, tmp_path)
    course(device)
    body = app.test_client().post("/api/v1/sync", json={}).get_json()["data"]
    assert (body["pushed"], body["pulled"], body["conflicts"], body["error"]) == (1, 0, 0, None)
    assert 0 < body["durationMs"] < 10_000 and round(body["durationMs"], 1) == body["durationMs"]
    assert hub_client["hub"].records.count_documents({"kind": "course"}) == 1


@pytest.mark.parametrize("kwargs", [
    {"data": "a=1", "content_type": "application/x-www-form-urlencoded"},
    {"data": "", "content_type": "application/x-www-form-urlencoded"},
    {"data": "hello", "content_type": "text/plain"},
    {"data": b"--x--", "content_type": "multipart/form-data; boundary=x"},
    {},  # no body and no type: what a cross-site fetch can send without a preflight
])
def test_a_round_cannot_be_started_by_a_post_that_is_not_json(device, hub_client, tmp_path, kwargs):
    app = make_app(device, hub_client, tmp_path)
    resp = app.test_client().post("/api/v1/sync", **kwargs)
    assert resp.status_code == 415 and resp.get_json()["error"]["code"] == "unsupported_media_type"
    assert app.extensions["sync"].totals["rounds"] == 0


def test_a_round_takes_an_empty_json_body_or_an_empty_object_and_nothing_else(device, hub_client, tmp_path):
    client = make_app(device, hub_client, tmp_path).test_client()
    assert client.post("/api/v1/sync", data="", content_type="application/json").status_code == 200
    assert client.post("/api/v1/sync", json={}).status_code == 200
    assert client.post("/api/v1/sync", data="{nope", content_type="application/json").status_code == 400
    assert client.post("/api/v1/sync", json={"x": 1}).status_code == 400
    assert client.post("/api/v1/sync", json=[]).status_code == 400


def test_status_answers_every_field_and_hides_the_password(device, hub_client, tmp_path):
    app = make_app(device, hub_client, tmp_path)
    course(device)
    client = app.test_client()
    before = client.get("/api/v1/sync/status").get_json()["data"]
    assert before["pending"]["count"] == 1 and before["pending"]["oldestAt"]
    client.post("/api/v1/sync", json={})
    status = client.get("/api/v1/sync/status").get_json()["data"]
    for key in ["enabled", "deviceId", "userId", "hub", "state", "lastAttempt", "lastSuccess", "lastError",
                "nextRun", "pending", "totals", "openConflicts", "hubEpoch"]:
        assert key in status
    assert status["enabled"] and status["state"] == "idle" and status["deviceId"] == "dev"
    assert status["pending"]["count"] == 0 and status["totals"]["pushed"] == 1 and status["hubEpoch"]
    assert status["hub"] == "mongodb://sync:***@hub.invalid:27017/"
    assert "hunter2" not in json.dumps(status)


def test_the_status_names_the_origin_as_origin_and_keeps_device_id_for_one_release(device, hub_client, tmp_path):
    app = make_app(device, hub_client, tmp_path)
    api = app.test_client().get("/api/v1/sync/status").get_json()["data"]
    cli = json.loads(app.test_cli_runner().invoke(args=["sync", "status"]).output)
    assert (api["origin"], api["deviceId"]) == ("dev", "dev")
    assert (cli["origin"], cli["deviceId"]) == ("dev", "dev")
    page = app.test_client().get("/sync").get_data(as_text=True)
    assert "<dt>This device</dt><dd>dev (user learner)</dd>" in page


def test_a_hub_that_is_down_answers_503_in_the_envelope_and_backs_off(device, hub_client, tmp_path):
    flaky: list = []
    app = make_app(device, hub_client, tmp_path, flaky=flaky)
    client = app.test_client()
    client.post("/api/v1/sync", json={})
    flaky[0].down = True
    resp = client.post("/api/v1/sync", json={})
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "store_unavailable"
    status = client.get("/api/v1/sync/status").get_json()["data"]
    assert status["state"] == "backing_off" and status["lastError"] and status["consecutiveFailures"] == 1
    assert client.post("/api/v1/courses", json={"title": "t", "source": "https://a.b"}).status_code == 201
    flaky[0].down = False
    assert client.post("/api/v1/sync", json={}).status_code == 200
    status = client.get("/api/v1/sync/status").get_json()["data"]
    assert status["state"] == "idle" and status["consecutiveFailures"] == 0 and status["lastError"] is None


def test_a_real_unreachable_hub_fails_fast_with_the_configured_timeout(device, tmp_path):
    settings = Settings(sqlite_path=str(tmp_path / "x"), mongo_uri="mongodb://u:hunter2@127.0.0.1:1/",
                        hub_timeout_ms=300)
    app = create_app(settings, store=device, start_sync=False)
    resp = app.test_client().post("/api/v1/sync", json={})
    assert resp.status_code == 503 and "hunter2" not in resp.get_data(as_text=True)
    assert get_db_connector("mongo", settings, user_id=device.user_id, origin=None).timeout_ms == 300


class Clock:
    def __init__(self):
        self.now = 1_000.0

    def __call__(self):
        return self.now


def down_hub_service(device, hub_client, rng: float):
    """A service on a hub that is down, a 10 s interval, a fixed jitter and a clock to move."""
    clock = Clock()
    flaky = FlakyHub(get_db_connector("mongo", Settings(), client=hub_client, db_name="hub"))
    flaky.down = True

    def open_flaky():
        flaky.connect()
        return flaky

    svc = SyncService(Settings(mongo_uri=HUB_URI, sync_interval_seconds=10), device, open_flaky,
                      rng=lambda: rng, clock=clock)
    svc.open_flaky = open_flaky
    return svc, flaky, clock


def test_back_off_grows_exponentially_with_jitter_up_to_a_cap_and_resets(device, hub_client):
    svc, flaky, clock = down_hub_service(device, hub_client, rng=1.0)
    delays = []
    for _ in range(8):
        svc.run_once()
        delays.append(svc.backoff_until - clock.now)
    assert delays == [20, 40, 80, 160, 300, 300, 300, 300]
    jittered = SyncService(Settings(mongo_uri=HUB_URI, sync_interval_seconds=10), device, svc.open_flaky,
                           rng=lambda: 0.0, clock=clock)
    jittered.run_once()
    jittered.run_once()
    assert jittered.backoff_until - clock.now == 20  # half of 40, never under the interval
    flaky.down = False
    svc.run_once()
    assert svc.backoff_until is None and svc.failures == 0


def test_the_scheduled_job_skips_while_backing_off(device, hub_client):
    svc, flaky, clock = down_hub_service(device, hub_client, rng=1.0)
    svc.tick()
    assert svc.totals["rounds"] == 1 and svc.state() == "backing_off"
    clock.now += 5
    svc.tick()
    assert svc.totals["rounds"] == 1
    clock.now += 20
    flaky.down = False
    svc.tick()
    assert svc.totals["rounds"] == 2 and svc.state() == "idle"


def test_a_push_scheduled_before_a_round_failed_waits_for_the_retry(device, hub_client):
    """A write's push is scheduled a moment after the write; a round that fails in between puts
    the service into back-off, and the push already scheduled waits for the retry too."""
    svc, flaky, clock = down_hub_service(device, hub_client, rng=1.0)
    svc.tick()
    assert svc.totals["rounds"] == 1 and svc.state() == "backing_off"
    svc.push.job()  # the job fires now, scheduled before the failure
    assert svc.totals["rounds"] == 1
    clock.now += 25
    flaky.down = False
    svc.push.job()
    assert svc.totals["rounds"] == 2 and svc.state() == "idle"


def slow_first_push(hub_client):
    """A Mongo hub, and a hub opener whose first push holds until `release` is set (`entered`
    says it has begun)."""
    hub = get_db_connector("mongo", Settings(), client=hub_client, db_name="hub", user_id="learner")
    hub.connect()
    entered, release = threading.Event(), threading.Event()

    class SlowFirstPush:
        def __getattr__(self, name):
            return getattr(hub, name)

        def apply_changes(self, *args, **kwargs):
            if not entered.is_set():
                entered.set()
                assert release.wait(120)
            return hub.apply_changes(*args, **kwargs)

    return hub, entered, release, SlowFirstPush


def test_a_write_answered_while_its_push_round_runs_is_pushed_by_the_next_round(device, hub_client):
    """Each write's push is a job that fires a moment after it. A write answered while the round
    of an earlier one is still pushing gets a job of its own, which fires while that round runs:
    it waits for it and then pushes, rather than being skipped until the hour's timer."""
    hub, entered, release, SlowFirstPush = slow_first_push(hub_client)
    svc = SyncService(Settings(mongo_uri=HUB_URI, sync_interval_seconds=3600), device, SlowFirstPush)
    svc.start()
    try:
        assert wait_until(lambda: svc.totals["rounds"] == 1)  # the round at start-up
        course(device, id="c1")
        svc.nudge()
        assert entered.wait(60)
        course(device, id="c2")
        svc.nudge()
        assert wait_until(lambda: svc.scheduler.get_job("push-soon") is None)  # its job fired, mid-round
        release.set()
        assert wait_until(lambda: {c["id"] for c in hub.get_courses()} == {"c1", "c2"})
    finally:
        release.set()
        svc.shutdown()


def lost_titles(device, peer, n: int) -> dict[str, str]:
    """n courses whose title, edited on both stores, lost on `device`: record id -> conflict id."""
    for k in range(n):
        course(device, id=f"c{k}", title="first")
    peer.apply_changes(device.changes_since({}, 100))
    for k in range(n):
        device.update("course", None, f"c{k}", {"title": "mine"})
    for k in range(n):
        peer.update("course", None, f"c{k}", {"title": "theirs"})
    device.apply_changes(peer.changes_since({}, 100, exclude_origin=device.origin))
    return {c["recordId"]: c["id"] for c in device.list_conflicts()}


def test_the_scheduled_job_forgets_conflicts_resolved_long_ago_and_keeps_open_ones(device, hub_client, sql_factory):
    from server.core.times import iso_from_seconds
    from server.sync.service import LEDGER_AGEING_SECONDS
    from server.sync.status import sync_status

    peer = sql_factory("peer", user_id="learner", origin="peer")
    peer.connect()
    svc, flaky, clock = down_hub_service(device, hub_client, rng=1.0)
    start = clock.now = 2_000_000_000.0
    ids = lost_titles(device, peer, 4)
    day = 86_400

    def resolve(record: str, days_ago: float) -> None:
        device.resolve_conflict(ids[record], {"action": "dismissed", "at": iso_from_seconds(start - days_ago * day)})

    resolve("c0", 90.01)
    resolve("c1", 89.9)
    svc.tick()  # the hub is down: the ageing does not wait for it
    assert sorted(c["recordId"] for c in device.list_conflicts()) == ["c1", "c2", "c3"]
    assert svc.totals["rounds"] == 1
    resolve("c3", 200)
    clock.now = start + LEDGER_AGEING_SECONDS - 1
    svc.tick()
    assert sorted(c["recordId"] for c in device.list_conflicts()) == ["c1", "c2", "c3"], "once an hour at most"
    clock.now = start + LEDGER_AGEING_SECONDS
    svc.tick()
    assert sorted(c["recordId"] for c in device.list_conflicts()) == ["c1", "c2"]
    clock.now = start + 2 * LEDGER_AGEING_SECONDS + 0.1 * day
    svc.tick()
    [left] = device.list_conflicts()
    assert left["recordId"] == "c2" and left["resolution"] is None, "an open conflict stays whatever its age"
    assert sync_status(device, svc)["resolvedConflictsKeptDays"] == 90
    assert sync_status(device)["resolvedConflictsKeptDays"] is None


def test_a_manual_round_and_the_scheduled_one_share_one_lock(device, hub_client, tmp_path):
    app = make_app(device, hub_client, tmp_path, sync_wait_seconds=0.2)
    svc = app.extensions["sync"]
    entered, release = threading.Event(), threading.Event()
    original = svc._ensure_hub

    def slow_hub():
        entered.set()
        release.wait(10)
        return original()

    svc._ensure_hub = slow_hub
    scheduled = threading.Thread(target=svc.tick)
    scheduled.start()
    assert entered.wait(10)
    resp = app.test_client().post("/api/v1/sync", json={})
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "sync_running"
    svc.tick()  # a second scheduled run while one is running is skipped, not queued
    release.set()
    scheduled.join()
    assert svc.totals["rounds"] == 1
    with pytest.raises(SyncBusy):
        with svc._lock:
            svc.run_once(wait_seconds=0)


def test_the_worker_starts_once_per_store_and_only_with_a_hub(device, hub_client, tmp_path, monkeypatch):
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)
    no_hub = create_app(Settings(sqlite_path=str(tmp_path / "x")), store=device)
    assert "sync" not in no_hub.extensions
    first = make_app(device, hub_client, tmp_path, start_sync=True)
    second = make_app(device, hub_client, tmp_path, start_sync=True)
    try:
        svc = first.extensions["sync"]
        assert svc.scheduler is not None and second.extensions["sync"] is svc
        [job] = svc.scheduler.get_jobs()
        assert (job.max_instances, job.coalesce, job.trigger.interval.total_seconds()) == (1, True, 60)
    finally:
        stop_worker(device.origin)


def test_no_worker_in_the_reloader_watcher_or_cli_commands(monkeypatch):
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    monkeypatch.setattr("sys.argv", ["flask", "run", "--debug"])
    assert should_start_worker() is False  # the watcher process
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
    assert should_start_worker() is True  # the serving child
    monkeypatch.delenv("WERKZEUG_RUN_MAIN")
    monkeypatch.setattr("sys.argv", ["flask", "run", "--no-reload"])
    assert should_start_worker() is True
    monkeypatch.setattr("sys.argv", ["flask", "sync", "once"])
    assert should_start_worker() is False
    monkeypatch.delenv("FLASK_RUN_FROM_CLI")
    assert should_start_worker() is True  # python -m server


def test_flask_sync_once_and_status(device, hub_client, tmp_path):
    app = make_app(device, hub_client, tmp_path)
    course(device)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["sync", "once"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["pushed"] == 1
    status = json.loads(runner.invoke(args=["sync", "status"]).output)
    assert status["pending"]["count"] == 0 and "hunter2" not in json.dumps(status)


def test_the_status_has_one_shape_with_sync_on_or_off_in_the_api_and_the_cli(device, hub_client, tmp_path):
    on = make_app(device, hub_client, tmp_path)
    off = create_app(Settings(sqlite_path=str(tmp_path / "x")), store=device, start_sync=False)
    course(device)
    shapes = {}
    for name, app in (("on", on), ("off", off)):
        api = app.test_client().get("/api/v1/sync/status").get_json()["data"]
        cli = json.loads(app.test_cli_runner().invoke(args=["sync", "status"]).output)
        same = ("count", "oldestAt")  # the age is read at two moments
        assert set(cli) == set(api) and [cli["pending"][k] for k in same] == [api["pending"][k] for k in same]
        shapes[name] = (set(api), set(api["pending"]), set(api["totals"]))
    assert shapes["on"] == shapes["off"]
    off_status = off.test_client().get("/api/v1/sync/status").get_json()["data"]
    assert (off_status["enabled"], off_status["state"], off_status["pending"]["count"]) == (False, "disabled", 1)


def test_flask_sync_once_shows_progress_for_a_big_round(device, hub_client, tmp_path, monkeypatch):
    monkeypatch.setattr("server.device.commands.PROGRESS_THRESHOLD", 50)
    app = make_app(device, hub_client, tmp_path)
    for i in range(60):
        course(device, title=f"c{i}")
    result = app.test_cli_runner().invoke(args=["sync", "once"])
    assert result.exit_code == 0 and "pushing" in result.output


def test_flask_sync_without_a_hub_says_so(device, tmp_path):
    app = create_app(Settings(sqlite_path=str(tmp_path / "x")), store=device, start_sync=False)
    result = app.test_cli_runner().invoke(args=["sync", "once"])
    assert result.exit_code != 0 and "MONGO_URI" in result.output


def test_an_api_running_on_the_hub_itself_has_no_worker(hub_client, tmp_path):
    store = get_db_connector("mongo", Settings(), client=hub_client, db_name="hub", user_id="learner")
    store.connect()
    settings = Settings(db_connector="mongo", mongo_uri=HUB_URI, sqlite_path=str(tmp_path / "x"))
    app = create_app(settings, store=store)
    assert "sync" not in app.extensions
    assert app.test_client().get("/api/v1/sync/status").get_json()["data"]["enabled"] is False


def test_a_hub_that_cannot_connect_is_closed_every_time(device, monkeypatch):
    built = []

    class Unreachable:
        closed = False

        def connect(self):
            from server.core.errors import StoreUnavailable

            raise StoreUnavailable("The MongoDB hub failed (ServerSelectionTimeoutError).")

        def close(self):
            self.closed = True

    def connector(*args, **kwargs):
        built.append(Unreachable())
        return built[-1]

    monkeypatch.setattr("server.sync.hub.get_db_connector", connector)
    settings = Settings(mongo_uri=HUB_URI)
    svc = SyncService(settings, device, functools.partial(open_hub, settings, device.user_id))
    for _ in range(3):
        assert svc.run_once().error_code == "store_unavailable"
    assert len(built) == 3 and all(hub.closed for hub in built)


def test_a_round_that_outlasts_the_interval_is_said_at_debug_level_not_as_a_warning(caplog):
    from server.sync.service import SCHEDULER_LOG

    caplog.set_level(logging.DEBUG)
    SCHEDULER_LOG.warning('Execution of job "%s" skipped: maximum number of running instances reached (%d)', "j", 1)
    SCHEDULER_LOG.warning("something else")
    seen = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert seen == [("server.sync", "DEBUG", "a round outlasted the interval; the next scheduled one was skipped"),
                    ("apscheduler.scheduler", "WARNING", "something else")]


def test_the_status_tells_the_person_to_fix_a_clock_that_runs_ahead(device, hub_client, tmp_path):
    from freezegun import freeze_time

    app = make_app(device, hub_client, tmp_path)
    client = app.test_client()
    with freeze_time("2030-01-03T00:00:00Z"):  # this device's clock runs two days fast
        course(device, id="ahead")
    with freeze_time("2030-01-01T00:00:00Z"):
        assert client.post("/api/v1/sync", json={}).get_json()["data"]["quarantined"] == 1
        status = client.get("/api/v1/sync/status").get_json()["data"]
        assert status["warnings"] == [
            "The hub refused 1 of this device's edits because its clock is ahead of the hub's. "
            "Set this device's date and time right. The refused edits wait in the quarantine and are "
            "sent again by themselves once the hub's clock has caught up with them."]
    with freeze_time("2030-01-03T00:05:00Z"):  # the clock is right again
        course(device, id="later")
        # The refused edit is due again (the hub's clock has caught up with it): it goes too.
        answer = client.post("/api/v1/sync", json={}).get_json()["data"]
        assert (answer["pushed"], answer["quarantined"]) == (2, 0)
        assert client.get("/api/v1/sync/status").get_json()["data"]["warnings"] == []
        assert device.count_quarantine() == 0


def test_sync_now_waits_for_the_running_round_and_answers_one_that_started_after_it(device, hub_client, tmp_path):
    app = make_app(device, hub_client, tmp_path, sync_wait_seconds=120)
    svc = app.extensions["sync"]
    entered, release = threading.Event(), threading.Event()
    original = svc._ensure_hub

    def slow_hub():
        entered.set()
        release.wait(120)
        return original()

    svc._ensure_hub = slow_hub
    scheduled = threading.Thread(target=svc.tick)
    scheduled.start()
    assert entered.wait(120)
    answers: list = []
    asked = threading.Thread(target=lambda: answers.append(app.test_client().post("/api/v1/sync", json={})))
    asked.start()
    assert wait_until(lambda: svc._rounds._waiters, 120), "the request waiting for the running round"
    svc._ensure_hub = original
    release.set()
    scheduled.join(120)
    asked.join(120)
    [resp] = answers
    assert resp.status_code == 200, resp.get_json()
    assert svc.totals["rounds"] == 2, "the running round, then one that started after the request"


def test_sync_now_rides_along_with_a_round_that_started_after_it(device, hub_client, tmp_path):
    app = make_app(device, hub_client, tmp_path)
    svc = app.extensions["sync"]
    with svc._rounds:
        svc._started, svc.running = 5, True
    answers: list = []
    asked = threading.Thread(target=lambda: answers.append(svc.join(120)))
    with svc._lock:  # a round holds the lock; the request comes while it runs
        asked.start()
        assert wait_until(lambda: svc._rounds._waiters, 120), "the request waiting"
        ridden = RoundReport(pushed=3)
        with svc._rounds:
            svc._started, svc._ended, svc.running = 6, (6, ridden), False
            svc._rounds.notify_all()
    asked.join(120)
    assert answers == [ridden] and svc.totals["rounds"] == 0, "the round started after it: no round of its own"


def test_sync_now_says_what_to_do_when_no_round_ends_by_its_deadline(device, hub_client, tmp_path):
    app = make_app(device, hub_client, tmp_path, sync_wait_seconds=0.2)
    svc = app.extensions["sync"]
    with svc._lock:
        with svc._rounds:
            svc.running = True
        resp = app.test_client().post("/api/v1/sync", json={})
    err = resp.get_json()["error"]
    assert resp.status_code == 409 and err["code"] == "sync_running"
    assert "GET /api/v1/sync/status" in err["message"] and "Try again" in err["message"]



def test_a_write_after_a_quiet_spell_is_pushed_at_once(device, hub_client):
    from apscheduler.schedulers.background import BackgroundScheduler

    svc = SyncService(Settings(mongo_uri=HUB_URI, sync_interval_seconds=3600), device, lambda: None)
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start(paused=True)  # holds the job where the test can read when it is due
    svc.scheduler = scheduler
    try:
        svc.nudge()
        due = scheduler.get_job("push-soon").next_run_time
        assert due <= dt.datetime.now(dt.timezone.utc), "due now, not after a delay"
        svc.nudge()
        assert len(scheduler.get_jobs()) == 1, "one push job at a time: the next write goes with it"
    finally:
        scheduler.shutdown(wait=False)


def test_writes_answered_while_a_push_runs_go_together_in_the_next_round(device, hub_client):
    hub, entered, release, SlowFirstPush = slow_first_push(hub_client)
    svc = SyncService(Settings(mongo_uri=HUB_URI, sync_interval_seconds=3600), device, SlowFirstPush)
    svc.start()
    try:
        assert wait_until(lambda: svc.totals["rounds"] == 1, 120)  # the round at start-up
        course(device, id="c0")
        svc.nudge()
        assert entered.wait(120)
        for k in range(1, 51):
            course(device, id=f"c{k}")
            svc.nudge()
        release.set()
        assert wait_until(lambda: len(hub.get_courses()) == 51 and not svc.push.pushing, 120)
        assert svc.totals["rounds"] == 3 and svc.totals["pushed"] == 51, "c0's round, then all fifty in one"
    finally:
        release.set()
        svc.shutdown()
