"""Seeding both stores: validation of the whole file, refusal of a non-empty store, the PWA's
own sample file served back unchanged, and identical states for a later sync."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import seed as seed_sql
import seed_mongo
from server.api import create_app
from server.connectors.factory import get_db_connector
from server.connectors.seeding import load_seed_file
from server.core.config import Settings
from server.core.seeding import SeedError, validate_seed
from server.sync.engine import run_round

ROOT = Path(__file__).resolve().parents[2]
PWA_SEED = ROOT.parent / "shared" / "fixtures" / "pwa_seed.json"  # the PWA's own file (../shared)
PWA_SEED_COPY = ROOT / "tests" / "fixtures" / "pwa_seed.json"  # for a checkout without ../shared
OUR_SEED = ROOT / "data" / "seed.json"
RECORD_DEFAULTS = {"lecture": {"note": "", "durationMinutes": None, "status": "not_started"},
                   "assignment": {"note": "", "dueDate": None, "link": None, "status": "not_started"}}


def pwa_seed_path() -> Path:
    """The PWA's sample file: ../shared's when it is there (and then the copy must match it),
    else the copy kept in tests/fixtures."""
    if PWA_SEED.exists():
        if PWA_SEED.read_bytes() != PWA_SEED_COPY.read_bytes():
            pytest.fail(f"{PWA_SEED_COPY} is out of date: copy {PWA_SEED} over it")
        return PWA_SEED
    return PWA_SEED_COPY


def test_our_sample_data_is_valid_and_rich_enough():
    seed = validate_seed(load_seed_file(str(OUR_SEED)))
    assert len(seed["courses"]) >= 3
    assert all(c["lectures"] and c["source"].startswith("https://") for c in seed["courses"])
    assert sum(len(c["assignments"]) for c in seed["courses"]) >= 3


def test_every_problem_is_named_by_its_path_and_nothing_is_written(tmp_path, capsys):
    bad = {"user": {"id": "u", "displayName": ""}, "courses": [
        {"id": "c", "title": "t", "source": "https://a.b", "lectures": [
            {"id": "l", "order": 0, "title": "x", "videoUrl": "https://a.b/1"},
            {"id": "l", "order": 2, "title": "y", "videoUrl": "nope", "courseId": "other"}]},
        {"id": "c", "title": "dup", "source": "https://a.b", "colour": "red"}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    db = tmp_path / "store.sqlite3"
    assert seed_sql.main([str(path), "--db", str(db)]) == 1
    err = capsys.readouterr().err
    for fragment in ["user.displayName", "courses[0].lectures[0].order", "courses[0].lectures[1].videoUrl",
                     "courses[0].lectures[1].courseId", "courses[0].lectures[1].id: duplicate",
                     "courses[1].id: duplicate", "courses[1].colour: unknown field"]:
        assert fragment in err
    assert not db.exists()


def test_a_file_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{nope")
    with pytest.raises(SeedError):
        validate_seed(load_seed_file(str(path)))


def test_seed_refuses_a_store_with_data_unless_reset(tmp_path, capsys):
    db = str(tmp_path / "s.sqlite3")
    assert seed_sql.main([str(OUR_SEED), "--db", db]) == 0
    assert seed_sql.main([str(OUR_SEED), "--db", db]) == 1
    assert "--reset" in capsys.readouterr().err
    assert seed_sql.main([str(OUR_SEED), "--db", db, "--if-empty"]) == 0
    assert seed_sql.main([str(pwa_seed_path()), "--db", db, "--reset"]) == 0
    conn = get_db_connector("sql", Settings(), path=db)
    conn.connect()
    assert conn.user_id == "user-demo" and len(conn.get_courses()) == 3


def expected_courses(path: Path) -> list[dict]:
    raw = json.loads(path.read_text())
    out = []
    for course in raw["courses"]:
        course = dict(course)
        for key, kind in (("lectures", "lecture"), ("assignments", "assignment")):
            course[key] = [{**RECORD_DEFAULTS[kind], **child} for child in course[key]]
        course["lectures"].sort(key=lambda lec: lec["order"])
        out.append(course)
    return sorted(out, key=lambda c: c["createdAt"])


@pytest.mark.parametrize("kind", ["sql", "mongo"])
def test_the_pwa_sample_file_is_served_back_unchanged(tmp_path, kind, capsys):
    import mongomock_ng

    path = pwa_seed_path()
    client = mongomock_ng.MongoClient()
    if kind == "sql":
        db = str(tmp_path / "pwa.sqlite3")
        assert seed_sql.main([str(path), "--db", db]) == 0
        store = get_db_connector("sql", Settings(), path=db)
    else:
        assert seed_mongo.main([str(path), "--db", "pwa"], client=client) == 0
        out = capsys.readouterr().out
        assert "removed" in out and "inserted 13 records and 13 changes" in out
        store = get_db_connector("mongo", Settings(), client=client, db_name="pwa")
    store.connect()
    app = create_app(Settings(db_connector=kind, sqlite_path=str(tmp_path / "x")), store=store, start_sync=False)
    web = app.test_client()
    raw = json.loads(path.read_text())
    assert web.get("/api/v1/users/me").get_json()["data"] == raw["user"]
    assert web.get("/api/v1/courses").get_json()["data"] == expected_courses(path)
    one = raw["courses"][1]["id"]
    assert web.get(f"/api/v1/courses/{one}").get_json()["data"]["id"] == one


def test_seed_mongo_clears_what_it_seeds_and_starts_a_new_epoch(tmp_path, capsys):
    import mongomock_ng

    client = mongomock_ng.MongoClient()
    assert seed_mongo.main([str(OUR_SEED), "--db", "hub"], client=client) == 0
    hub = get_db_connector("mongo", Settings(), client=client, db_name="hub")
    hub.connect()
    epoch = hub.hub_epoch()
    capsys.readouterr()
    assert seed_mongo.main([str(OUR_SEED), "--db", "hub"], client=client) == 0
    out = capsys.readouterr().out
    assert "removed 20 records, 20 changes" in out and "inserted 20 records" in out
    assert hub.hub_epoch() != epoch and client["hub"].records.count_documents({}) == 20


def test_both_stores_seeded_from_one_file_are_identical_to_a_sync(tmp_path):
    import mongomock_ng

    client = mongomock_ng.MongoClient()
    db = str(tmp_path / "dev.sqlite3")
    assert seed_sql.main([str(OUR_SEED), "--db", db]) == 0
    assert seed_mongo.main([str(OUR_SEED), "--db", "hub"], client=client) == 0
    local = get_db_connector("sql", Settings(), path=db)
    hub = get_db_connector("mongo", Settings(), client=client, db_name="hub")
    local.connect()
    hub.connect()
    report = run_round(local, hub)
    assert (report.pushed, report.pulled, report.conflicts, report.error) == (0, 0, 0, None)
    assert local.dump_records() == {k: {**v, "v": 1} for k, v in hub.dump_records().items()}
    assert local.list_conflicts() == [] and hub.list_conflicts() == []


def test_seed_py_runs_as_a_script(tmp_path):
    db = tmp_path / "cli.sqlite3"
    shutil.copy(OUR_SEED, tmp_path / "seed.json")
    proc = subprocess.run([sys.executable, str(ROOT / "seed.py"), str(tmp_path / "seed.json"), "--db", str(db)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "4 courses" in proc.stdout and db.exists()


def test_flask_seed_command(runner, app):
    result = runner.invoke(args=["seed", str(OUR_SEED)])
    assert result.exit_code == 0, result.output
    assert len(app.extensions["store"].get_courses()) == 4
    assert runner.invoke(args=["seed", str(OUR_SEED)]).exit_code != 0
