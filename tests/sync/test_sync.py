"""Sync rounds end to end: devices and a hub, the merge rule, clock skew, faults, hub resets."""

from __future__ import annotations

import datetime as dt

import pytest
from freezegun import freeze_time

from server.connectors.seeding import load_seed_file, seed_store
from server.core.errors import StoreUnavailable
from server.core.merge import DELETED
from server.core.records import META_FIELDS
from server.core.seeding import validate_seed
from server.sync.engine import run_round
from tests.connectors.test_seed import OUR_SEED
from tests.synckit import FlakyHub, assert_converged, course, lecture

T0 = dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def losses(store) -> set[tuple]:
    """A device's conflict ledger as (field, local value, remote value, winner, reason)."""
    return {(c["field"], c["localValue"], c["remoteValue"], c["winner"], c["reason"]) for c in store.list_conflicts()}


def shared_course(world, *names, **extra):
    """A course made on the first device and synced to all the others."""
    c = course(world.device(names[0]), id="shared", **extra)
    world.settle(list(names))
    return c


class TestMergeRule:
    def test_an_edit_on_one_device_reaches_the_other(self, world):
        a, b = world.device("a"), world.device("b")
        c = course(a, title="from a")
        lecture(a, c["id"], id="l1")
        world.settle(["a", "b"])
        assert b.get_course(c["id"])["lectures"][0]["id"] == "l1"
        assert_converged(world)

    def test_edits_to_different_fields_of_one_lecture_both_survive(self, world):
        a, b = world.device("a"), world.device("b")
        shared_course(world, "a", "b")
        lecture(a, "shared", id="l1")
        world.settle(["a", "b"])
        a.update("lecture", "shared", "l1", {"status": "completed"})
        b.update("lecture", "shared", "l1", {"note": "great"})
        world.settle(["a", "b"])
        for dev in (a, b):
            got = dev.get_course("shared")["lectures"][0]
            assert (got["status"], got["note"]) == ("completed", "great")
            assert dev.list_conflicts() == []
        assert_converged(world)

    def test_the_same_field_keeps_the_later_write_and_records_the_loser(self, world):
        a, b = world.device("a"), world.device("b")
        with freeze_time(T0):
            shared_course(world, "a", "b")
        with freeze_time(T0 + dt.timedelta(minutes=1)):
            a.update("course", None, "shared", {"title": "A's title"})
        with freeze_time(T0 + dt.timedelta(minutes=2)):
            b.update("course", None, "shared", {"title": "B's title"})
            world.settle(["a", "b"])
        assert a.get_course("shared")["title"] == b.get_course("shared")["title"] == "B's title"
        for dev in (a, b):
            [conflict] = dev.list_conflicts()
            assert {conflict["localValue"], conflict["remoteValue"]} == {"A's title", "B's title"}
            assert conflict["field"] == "title" and conflict["recordId"] == "shared"
        assert_converged(world)

    def test_a_delete_beats_a_concurrent_update(self, world):
        a, b = world.device("a"), world.device("b")
        shared_course(world, "a", "b")
        b.update("course", None, "shared", {"notes": "edited on b"})
        a.delete("course", None, "shared")
        world.settle(["a", "b"])
        assert a.get_courses() == b.get_courses() == []
        # b lost its edit to the delete; a saw that edit arrive after it had deleted the course.
        assert losses(b) == {("notes", "edited on b", DELETED, "remote", "deleted")}
        assert losses(a) == {("notes", DELETED, "edited on b", "local", "deleted")}
        assert_converged(world)

    def test_a_lecture_created_under_a_course_deleted_elsewhere_disappears(self, world):
        a, b = world.device("a"), world.device("b")
        shared_course(world, "a", "b")
        lecture(b, "shared", id="orphan", title="made on b")
        a.delete("course", None, "shared")
        world.settle(["a", "b"])
        for dev in (a, b):
            assert dev.get_courses() == []
            assert dev.dump_records()[("lecture", "shared/orphan")]["deleted"]
        made = [ch for ch in b.changes_since({}, 100) if ch["id"] == "orphan"][0]["fields"]
        written = {f: v for f, v in made.items() if f not in META_FIELDS}
        assert losses(a) == {(f, DELETED, v, "local", "deleted") for f, v in written.items()}
        assert losses(b) == {(f, v, DELETED, "remote", "deleted") for f, v in written.items()}
        assert_converged(world)

    def test_conflicts_are_listed_newest_first(self, world):
        a, b = world.device("a"), world.device("b")
        with freeze_time(T0):
            shared_course(world, "a", "b")
        for minute, field in ((1, "title"), (5, "notes")):
            with freeze_time(T0 + dt.timedelta(minutes=minute)):
                a.update("course", None, "shared", {field: "a"})
                b.update("course", None, "shared", {field: "b"})
                world.settle(["a", "b"])
        fields = [c["field"] for c in b.list_conflicts()]
        assert fields == ["notes", "title"]

    def test_the_user_record_syncs_too(self, world):
        a, b = world.device("a"), world.device("b")
        c = shared_course(world, "a", "b")
        a.update_user_profile("Ada")
        b.set_focus_course(c["id"])
        world.settle(["a", "b"])
        for dev in (a, b):
            user = dev.get_user()
            assert (user["displayName"], user["focusCourseId"]) == ("Ada", c["id"])


class TestClockSkew:
    def test_a_later_edit_wins_even_from_a_device_whose_clock_is_an_hour_behind(self, world):
        behind, ahead = world.device("behind"), world.device("ahead")
        with freeze_time(T0):
            shared_course(world, "behind", "ahead")
        with freeze_time(T0 + dt.timedelta(hours=1)):  # "ahead" reads now as an hour later
            ahead.update("course", None, "shared", {"title": "first edit"})
            world.sync("ahead")
        with freeze_time(T0 - dt.timedelta(hours=1) + dt.timedelta(minutes=5)):  # five minutes later, really
            world.sync("behind")
            assert behind.get_course("shared")["title"] == "first edit"
            behind.update("course", None, "shared", {"title": "second edit, after seeing the first"})
            world.sync("behind")
        with freeze_time(T0 + dt.timedelta(hours=1, minutes=6)):
            world.settle(["ahead", "behind"])
        assert ahead.get_course("shared")["title"] == "second edit, after seeing the first"
        assert ahead.list_conflicts() == [] and behind.list_conflicts() == []
        assert_converged(world)


class TestFaults:
    def test_a_crash_after_the_hub_took_a_push_batch_duplicates_nothing(self, world, monkeypatch):
        world.batch_size = 3
        a = world.device("a")
        c = course(a)
        for i in range(7):
            lecture(a, c["id"], order=i + 1, title=f"l{i}")
        calls = {"n": 0}
        original = a.set_bookmark

        def crash_on_second_cursor_move(key, value):
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("killed before the cursor moved")
            original(key, value)

        monkeypatch.setattr(a, "set_bookmark", crash_on_second_cursor_move)
        with pytest.raises(RuntimeError):
            world.sync("a")
        monkeypatch.undo()
        world.settle(["a", "b"])
        hub_changes = world.hub.changes_since({}, 1000)
        assert [ch["seq"] for ch in hub_changes] == list(range(1, 9))
        assert len(world.device("b").get_course(c["id"])["lectures"]) == 7
        assert_converged(world)

    def test_a_crash_in_the_middle_of_applying_a_pulled_batch_loses_nothing(self, world, monkeypatch):
        world.batch_size = 4
        a, b = world.device("a"), world.device("b")
        c = course(a)
        for i in range(9):
            lecture(a, c["id"], order=i + 1)
        world.sync("a")
        original = b.backend.persist
        calls = {"n": 0}

        def crash_on_second_batch(*args, **kwargs):
            calls["n"] += 1
            original(*args, **kwargs)
            if calls["n"] == 2:
                raise RuntimeError("killed while applying")

        monkeypatch.setattr(b.backend, "persist", crash_on_second_batch)
        with pytest.raises(RuntimeError):
            world.sync("b")
        monkeypatch.undo()
        assert len(b.changes_since({}, 100)) == 4, "the first batch stayed, the second rolled back"
        world.settle(["a", "b"])
        assert len(b.get_course(c["id"])["lectures"]) == 9
        assert_converged(world)

    def test_a_hub_error_after_it_applied_a_batch_is_retried_without_duplicates(self, world):
        world.batch_size = 2
        a = world.device("a")
        c = course(a)
        lecture(a, c["id"])
        lecture(a, c["id"], order=2)
        flaky = FlakyHub(world.hub_for("a"))
        world.hubs["a"] = flaky
        flaky.fail_after("apply_changes", 1)
        report = world.sync("a")
        assert (report.error, report.error_code) == ("hub dropped the connection after the call (test)",
                                                     "store_unavailable")
        world.settle(["a", "b"])
        assert [ch["seq"] for ch in world.hub.changes_since({}, 100)] == [1, 2, 3]
        assert_converged(world)

    def test_a_hub_error_before_it_took_a_batch_loses_nothing(self, world):
        a = world.device("a")
        c = course(a)
        lecture(a, c["id"])
        flaky = FlakyHub(world.hub_for("a"))
        world.hubs["a"] = flaky
        flaky.fail_after("apply_changes", 1, after_call=False)
        report = world.sync("a")
        assert (report.error, report.error_code) == ("hub dropped the connection before the call (test)",
                                                     "store_unavailable")
        world.settle(["a", "b"])
        assert world.device("b").get_course(c["id"])["lectures"]
        assert_converged(world)

    def test_a_hub_down_for_several_rounds_while_writes_continue(self, world):
        a, b = world.device("a"), world.device("b")
        c = shared_course(world, "a", "b")
        flaky = FlakyHub(world.hub_for("a"))
        world.hubs["a"] = flaky
        flaky.down = True
        for i in range(5):
            lecture(a, c["id"], order=i + 1, title=f"offline {i}")
            report = world.sync("a")
            assert report.error and "ServerSelection" in report.error
        flaky.down = False
        world.settle(["a", "b"])
        assert [lec["title"] for lec in b.get_course(c["id"])["lectures"]] == [f"offline {i}" for i in range(5)]
        assert_converged(world)

    def test_a_round_with_the_hub_down_reports_instead_of_raising(self, world):
        a = world.device("a")
        flaky = FlakyHub(world.hub_for("a"))
        flaky.down = True
        report = run_round(a, flaky)
        assert report.error_code == "store_unavailable" and report.pushed == 0


def test_writes_during_a_round_wait_for_the_next_one(world, monkeypatch):
    world.batch_size = 2
    a = world.device("a")
    c = course(a)
    for i in range(5):
        lecture(a, c["id"], order=i + 1)
    original = a.changes_since
    calls = {"n": 0}

    def busy_writer(cursor, limit, **kw):
        calls["n"] += 1
        lecture(a, c["id"], order=100 + calls["n"])  # the API keeps writing while the round pushes
        return original(cursor, limit, **kw)

    monkeypatch.setattr(a, "changes_since", busy_writer)
    report = world.sync("a")
    assert report.pushed == 6 and calls["n"] == 3, "the round pushed what was pending when it began"
    monkeypatch.undo()
    assert world.sync("a").pushed == 3


class TestHubReset:
    def test_a_wiped_and_reseeded_hub_keeps_every_unsynced_edit(self, world):
        a, b = world.device("a"), world.device("b")
        c = shared_course(world, "a", "b")
        a.update("course", None, c["id"], {"notes": "unsynced on a"})
        lecture(b, c["id"], id="unsynced-b")
        seed_store(world.hub, validate_seed(load_seed_file(str(OUR_SEED))), reset=False, wipe_first=True)
        world.hub.user_id = "learner"
        ra, rb = world.sync("a"), world.sync("b")
        assert ra.hub_reset and rb.hub_reset
        world.settle(["a", "b"])
        for dev in (a, b):
            got = dev.get_course(c["id"])
            assert got["notes"] == "unsynced on a" and [lec["id"] for lec in got["lectures"]] == ["unsynced-b"]
        assert_converged(world)

    def test_a_hub_reset_does_not_resurrect_deleted_records(self, world):
        a, b = world.device("a"), world.device("b")
        c = shared_course(world, "a", "b")
        a.delete("course", None, c["id"])
        world.settle(["a", "b"])
        world.hub.wipe()
        world.settle(["a", "b"])
        assert a.get_courses() == b.get_courses() == world.hub.get_courses() == []


class TestNewDevice:
    def test_an_empty_device_receives_everything_including_the_user(self, world):
        a = world.device("a")
        c = course(a, title="existing")
        lecture(a, c["id"])
        a.update_user_profile("Grace")
        world.settle(["a"])
        fresh = world.device("fresh")
        report = world.sync("fresh")
        assert report.pulled == 3
        assert fresh.get_user()["displayName"] == "Grace"
        assert fresh.get_courses() == a.get_courses()

    def test_a_device_seeded_from_a_file_and_a_hub_seeded_from_it_agree(self, world):
        seed = validate_seed(load_seed_file(str(OUR_SEED)))
        seed_store(world.hub, seed, reset=False, wipe_first=True)
        a = world.device("a")
        seed_store(a, seed, reset=True)
        world.hubs["a"] = world.new_hub_connector(user_id=seed["user"]["id"])
        report = world.sync("a")
        assert (report.pushed, report.pulled, report.conflicts) == (0, 0, 0)


def test_status_pending_reflects_the_cursor(world):
    a = world.device("a")
    course(a)
    from server.sync.bookmark import load_bookmark

    assert a.pending_since(load_bookmark(a).cursor)[0] == 1
    world.sync("a")
    assert a.pending_since(load_bookmark(a).cursor)[0] == 0


def test_the_hub_is_unreachable_error_names_no_password():
    from server.connectors.mongo.store import MongoConnector

    hub = MongoConnector("mongodb://bob:hunter2@127.0.0.1:1/?serverSelectionTimeoutMS=200", timeout_ms=200)
    with pytest.raises(StoreUnavailable) as info:
        hub.connect()
    assert "hunter2" not in info.value.message


@pytest.mark.parametrize("laptop_deletes", [False, True])
def test_the_readme_example_of_the_merge_rule(world, laptop_deletes):
    laptop, phone = world.device("laptop"), world.device("phone")
    day = dt.datetime(2030, 5, 1, tzinfo=dt.timezone.utc)
    with freeze_time(day.replace(hour=8)):
        c = shared_course(world, "laptop", "phone")
        lecture(laptop, c["id"], id="l3", title="Lecture 3")
        world.settle(["laptop", "phone"])
    with freeze_time(day.replace(hour=9)):
        laptop.update("lecture", c["id"], "l3", {"status": "completed"})
    with freeze_time(day.replace(hour=9, minute=5)):
        phone.update("lecture", c["id"], "l3", {"note": "phone note"})
    with freeze_time(day.replace(hour=9, minute=10)):
        phone.update("lecture", c["id"], "l3", {"title": "phone title"})
    with freeze_time(day.replace(hour=9, minute=20)):
        if laptop_deletes:
            laptop.delete("lecture", c["id"], "l3")
        else:
            laptop.update("lecture", c["id"], "l3", {"title": "laptop title"})
        world.settle(["laptop", "phone"])
    for dev in (laptop, phone):
        lectures = dev.get_course(c["id"])["lectures"]
        if laptop_deletes:
            assert lectures == []
            assert {x["field"] for x in dev.list_conflicts()} == {"note", "title"}
        else:
            [got] = lectures
            assert (got["status"], got["note"], got["title"]) == ("completed", "phone note", "laptop title")
            [conflict] = dev.list_conflicts()
            assert conflict["field"] == "title"
            assert {conflict["localValue"], conflict["remoteValue"]} == {"phone title", "laptop title"}
    assert_converged(world)
