"""What only the SQLite store has to prove: schema steps, WAL, atomic writes (also under kill -9),
concurrent writers, and a clock and device id that survive restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from freezegun import freeze_time

from server.connectors.sqlite.schema import SCHEMA_STEPS
from server.core.config import Settings
from server.core.errors import StoreUnavailable
from server.core.records import validate
from tests.conftest import COURSE, LECTURE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(sql_factory):
    conn = sql_factory(user_id="learner")
    conn.connect()
    return conn


def test_schema_steps_are_recorded_and_running_them_twice_is_harmless(store):
    assert store.migrate() == []
    store.connect()
    rows = store.pool.get().execute("SELECT step FROM schema_steps").fetchall()
    assert rows == [(step,) for step, _ in SCHEMA_STEPS]
    indexes = {r[0] for r in store.pool.get().execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "records_live" not in indexes and "records_by_course" in indexes


@pytest.mark.parametrize("pairs", [1, 2, 400])
def test_loading_records_by_key_searches_the_primary_key(store, pairs):
    for i in range(50):
        store.create("course", None, validate("course", {**COURSE, "title": f"c{i}"}, "create"))
    store.pool.get().execute("ANALYZE")  # with statistics, as a long-lived store would have them
    plan = store.pool.get().execute("EXPLAIN QUERY PLAN " + store.backend._load_sql(pairs),
                                 ["learner", *["course", "x"] * pairs]).fetchall()
    searches = [row[3] for row in plan if "records" in row[3]]
    assert searches and all("PRIMARY KEY (user_id=? AND kind=? AND key=?)" in s for s in searches), plan


def test_a_store_from_before_step_2_upgrades_and_keeps_its_pending_changes(sql_factory, monkeypatch):
    # Step 1 alone, written the old way: the own origin listed in `origins` with its top.
    from server.connectors.sqlite import schema as sql_schema

    monkeypatch.setattr(sql_schema, "SCHEMA_STEPS", sql_schema.SCHEMA_STEPS[:1])
    old = sql_factory("dev", user_id="learner", origin="dev-a")
    old.connect()
    course = old.create("course", None, validate("course", COURSE, "create"))[0]
    old.update("course", None, course["id"], {"title": "two"})
    old.pool.get().execute("INSERT INTO origins (user_id, origin, max_seq) VALUES ('learner', 'dev-a', 2)")
    old.close()
    monkeypatch.undo()
    new = sql_factory("dev", user_id="learner", origin="dev-a")
    new.connect()
    assert new.pool.get().execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'records_live'").fetchone()[0] == 0
    new.update("course", None, course["id"], {"title": "three"})
    assert [c["seq"] for c in new.changes_since({}, 10)] == [1, 2, 3]
    assert new.pending_since({"dev-a": 2})[0] == 1


def test_a_store_from_before_step_7_opens_with_its_origin_under_the_new_meta_key(sql_factory, monkeypatch):
    # Steps 1 to 6, with the origin under the meta key "device_id", as earlier versions wrote it.
    from server.connectors.sqlite import schema as sql_schema

    monkeypatch.setattr(sql_schema, "SCHEMA_STEPS", sql_schema.SCHEMA_STEPS[:6])
    old = sql_factory("dev", user_id="learner")
    old.connect()
    made = old.origin
    course = old.create("course", None, validate("course", COURSE, "create"))[0]
    old.pool.get().execute("UPDATE meta SET key = 'device_id' WHERE key = 'origin'")
    old.close()
    monkeypatch.undo()
    new = sql_factory("dev", user_id="learner")  # no origin pinned: it comes from the file
    new.connect()
    assert new.origin == made
    meta = dict(new.pool.get().execute("SELECT key, value FROM meta").fetchall())
    assert "device_id" not in meta and meta["origin"] == f'"{made}"'
    new.update("course", None, course["id"], {"title": "two"})
    assert [(c["origin"], c["seq"]) for c in new.changes_since({}, 10)] == [(made, 1), (made, 2)]


def test_a_new_device_id_still_pushes_what_the_old_one_had_not(sql_factory):
    first = sql_factory("dev", user_id="learner", origin="old-id")
    first.connect()
    first.create("course", None, validate("course", COURSE, "create"))
    first.create("course", None, validate("course", {**COURSE, "title": "second"}, "create"))
    first.close()
    renamed = sql_factory("dev", user_id="learner", origin="new-id")
    renamed.connect()
    renamed.create("course", None, validate("course", {**COURSE, "title": "third"}, "create"))
    pending = renamed.changes_since({"old-id": 1}, 10)
    assert [(c["origin"], c["seq"]) for c in pending] == [("new-id", 1), ("old-id", 2)]
    assert renamed.pending_since({"old-id": 1})[0] == 2
    assert pending[0]["hlc"] > pending[1]["hlc"]  # the clock kept going past the old id's stamps


def test_a_write_stamps_after_what_another_process_stored(sql_factory):
    # A sync process pulls a change stamped an hour ahead into the same file; the API process's
    # next write must still sort after it, or the edit the user makes on top of it would lose.
    api = sql_factory("dev", user_id="learner", origin="dev-a")
    api.connect()
    course = api.create("course", None, validate("course", COURSE, "create"))[0]
    syncer = sql_factory("dev", user_id="learner", origin="dev-a")
    syncer.connect()
    ahead = api.changes_since({}, 1)[0]["hlc"]
    ahead = f"{int(ahead[:15]) + 3_600_000:015d}-000000-dev-b"
    syncer.apply_changes([{"origin": "dev-b", "seq": 1, "hlc": ahead, "kind": "course", "id": course["id"],
                           "courseId": None, "op": "upsert", "fields": {"title": "from b"},
                           "bases": {"title": ""}}])
    assert api.get_course(course["id"])["title"] == "from b"
    api.update("course", None, course["id"], {"title": "mine, after seeing b's"})
    mine = [c for c in api.changes_since({}, 10) if c["origin"] == "dev-a"][-1]
    assert mine["hlc"] > ahead
    assert syncer.get_course(course["id"])["title"] == "mine, after seeing b's"


def test_the_store_runs_in_wal_mode_with_a_busy_timeout_and_full_durability(store):
    conn = store.pool.get()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: an fsync per commit


def test_sqlite_synchronous_normal_is_a_setting(tmp_path):
    from server.connectors.factory import get_db_connector
    from server.core.config import load_settings

    settings = load_settings({"SQLITE_SYNCHRONOUS": "NORMAL", "SQLITE_PATH": str(tmp_path / "n.sqlite3")})
    conn = get_db_connector("sql", settings)
    conn.connect()
    assert conn.pool.get().execute("PRAGMA synchronous").fetchone()[0] == 1
    conn.close()


def test_an_interrupted_write_leaves_neither_the_record_nor_its_change(store, monkeypatch):
    original = store.backend.persist

    def persist_then_crash(*args, **kwargs):
        original(*args, **kwargs)  # record and change rows are written...
        raise RuntimeError("power cut")  # ...and the transaction never commits

    monkeypatch.setattr(store.backend, "persist", persist_then_crash)
    with pytest.raises(RuntimeError):
        store.create("course", None, validate("course", COURSE, "create"))
    monkeypatch.undo()
    assert store.dump_records() == {} and store.changes_since({}, 10) == []
    course = store.create("course", None, validate("course", COURSE, "create"))[0]
    assert [c["seq"] for c in store.changes_since({}, 10)] == [1], "no sequence number was burnt"
    assert store.get_course(course["id"])["title"] == COURSE["title"]


def test_a_process_killed_inside_a_write_leaves_nothing_behind(tmp_path):
    db = tmp_path / "killed.sqlite3"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from server.connectors.sqlite.store import SqlConnector
        from server.core.records import validate
        store = SqlConnector({str(db)!r}, user_id="learner")
        store.connect()
        store.create("course", None, validate("course", {{"title": "kept", "source": "https://a.b"}}, "create"))
        original = store.backend.persist
        def slow(*a, **k):
            original(*a, **k)
            print("inside", flush=True)
            time.sleep(60)
        store.backend.persist = slow
        store.create("course", None, validate("course", {{"title": "lost", "source": "https://a.b"}}, "create"))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "inside"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    from server.connectors.sqlite.store import SqlConnector

    store = SqlConnector(str(db), user_id="learner")
    store.connect()
    assert [c["title"] for c in store.get_courses()] == ["kept"]
    assert len(store.changes_since({}, 10)) == 1
    store.close()


def test_eight_threads_writing_at_once_all_succeed(store):
    course = store.create("course", None, validate("course", COURSE, "create"))[0]
    errors: list[Exception] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                body = validate("lecture", {**LECTURE, "order": n * 100 + i + 1}, "create")
                lecture = store.create("lecture", course["id"], body)[0]
                store.update("lecture", course["id"], lecture["id"], {"status": "completed"})
                store.get_courses()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lectures = store.get_course(course["id"])["lectures"]
    assert len(lectures) == 200 and all(lec["status"] == "completed" for lec in lectures)
    assert [c["seq"] for c in store.changes_since({}, 1000)] == list(range(1, 402))


def test_device_id_and_clock_survive_a_restart_even_when_the_wall_clock_goes_back(sql_factory):
    first = sql_factory("dev", user_id="learner")
    first.connect()
    with freeze_time("2030-01-01"):
        first.create("course", None, validate("course", COURSE, "create"))
    stamp = first.changes_since({}, 10)[-1]["hlc"]
    device = first.origin
    first.close()
    again = sql_factory("dev", user_id="learner")
    with freeze_time("2020-01-01"):  # the wall clock was set back ten years
        again.connect()
        again.create("course", None, validate("course", {**COURSE, "title": "later"}, "create"))
    assert again.origin == device
    assert again.changes_since({}, 10)[-1]["hlc"] > stamp


def test_an_unwritable_path_is_a_store_error(tmp_path):
    from server.connectors.sqlite.store import SqlConnector

    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = SqlConnector(str(blocker / "db.sqlite3"))
    with pytest.raises(StoreUnavailable, match=rf"^The SQLite store's folder {blocker} cannot be made "
                                                r"\(.* is a file, not a folder\): set SQLITE_PATH to "):
        store.connect()
    assert store.ping() is False


def test_busy_database_from_another_process_waits_instead_of_failing(store, tmp_path):
    # Another connection (as another process would) holds the write lock; our write must wait
    # for it to let go, then succeed, rather than fail with "database is locked".
    import sqlite3

    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    events: list[str] = []

    def let_go() -> None:
        events.append("released")
        other.execute("COMMIT")

    release = threading.Timer(0.3, let_go)
    release.start()
    store.create("course", None, validate("course", COURSE, "create"))
    events.append("written")
    release.join()
    other.close()
    assert events == ["released", "written"] and len(store.get_courses()) == 1


def test_a_full_disk_says_so_and_writes_nothing(store, tmp_path):
    from server.api import create_app

    conn = store.pool.get()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own way to run out of room
    client = create_app(Settings(sqlite_path=str(tmp_path / "x")), store=store, start_sync=False).test_client()
    resp = client.post("/api/v1/courses", json={"title": "t" * 400, "source": "https://a.b", "notes": "n" * 60000})
    assert resp.status_code == 503
    assert resp.get_json()["error"] == {"code": "store_unavailable",
                                        "message": "The SQLite store failed: the disk is full."}
    assert store.get_courses() == [] and store.changes_since({}, 10) == []


def test_the_writer_lock_is_handed_over_in_the_order_it_was_asked_for():
    """A hub writes a large push in turns and asks for the lock again at once: a thread that
    waited for it must get it first (threading.RLock let the releasing thread take it back)."""
    from server.connectors.sqlite.pool import TurnLock

    lock, order, asked = TurnLock(), [], threading.Event()

    def writer(name: str) -> None:
        asked.set()
        with lock:
            order.append(name)

    with lock:
        with lock:  # reentrant
            waiting = threading.Thread(target=writer, args=("other",))
            waiting.start()
            asked.wait(10)
            while not lock.queued():
                threading.Event().wait(0.01)
    with lock:  # asked again at once, as a push's next turn does
        order.append("again")
    waiting.join(10)
    assert order == ["other", "again"]
    with pytest.raises(RuntimeError):
        lock.release()
