"""A store older than its own log on the hub: restored from a backup, or a copy of the file that
syncs from a second machine. The device goes on under a new origin, sends its edits again under
it, pulls back what it had lost, and says so; nothing is lost, nothing is stored twice."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from pathlib import Path

import pytest
from freezegun import freeze_time

from server.connectors.factory import get_db_connector
from server.core.changes import is_slot_filler_of, moved_to, new_origin, restamp_state
from server.core.clock import decode, encode
from server.core.config import Settings
from server.sync.bookmark import BOOKMARK_KEY
from server.sync.status import sync_status
from tests.synckit import USER, World, assert_converged, course, lecture

T0 = dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def at(minutes: float):
    return freeze_time(T0 + dt.timedelta(minutes=minutes))


def copy_syncing_too(world: World, store, tmp_path: Path):
    """A copy of the store's file, opened as the second machine it was copied to (syncing as "twin")."""
    twin = get_db_connector("sql", Settings(), path=str(back_up(store, tmp_path / "copy.sqlite3")), user_id=USER,
                            origin=None)
    twin.connect()
    world.built.append(twin)
    world.devices["twin"] = twin
    return twin


def back_up(store, to: Path) -> Path:
    """A consistent copy of a live store, as a backup tool would take it."""
    src, dst = sqlite3.connect(store.path), sqlite3.connect(to)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return to


def restore(world: World, name: str, backup: Path):
    """Put the backup back in place of the device's file and open it again."""
    dev = world.devices.pop(name)
    dev.close()
    for suffix in ("", "-wal", "-shm"):
        Path(dev.path + suffix).unlink(missing_ok=True)
    shutil.copy(backup, dev.path)
    return world.device(name)


def hub_log(world: World) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for ch in world.hub.changes_since({}, 10_000):
        out.setdefault(ch["origin"], []).append(ch["seq"])
    return out


class TestRestoredFromABackup:
    def test_edits_after_the_restore_go_on_under_a_new_origin_and_the_lost_ones_come_back(self, world, tmp_path):
        a, b = world.device("a"), world.device("b")
        with at(0):
            course(a, id="c1", title="v1")
            world.settle(["a", "b"])
        backup = back_up(a, tmp_path / "backup.sqlite3")
        with at(1):  # these reach the hub, and then the laptop is restored from last night's copy
            a.update("course", None, "c1", {"notes": "written before the restore"})
            lecture(a, "c1", id="l-lost", title="lost with the laptop")
            assert world.sync("a").error is None
        a = restore(world, "a", backup)
        with at(2):
            a.update("course", None, "c1", {"title": "after the restore"})
            lecture(a, "c1", id="l-new", order=2)
        with at(3):
            report = world.sync("a")
        assert report.error is None and report.origin_restart is not None
        assert report.origin_restart["from"] == "a" and report.origin_restart["resent"] == 2
        assert a.origin == report.origin_restart["to"] != "a"
        with at(4):
            world.settle(["a", "b"])
        for dev in (a, b):
            got = dev.get_course("c1")
            assert (got["title"], got["notes"]) == ("after the restore", "written before the restore")
            assert [lec["id"] for lec in got["lectures"]] == ["l-lost", "l-new"]
        assert_converged(world)
        # The hub holds each write once: the first three under "a", the two later ones under
        # the new origin, restamped by it at the same moment they were made.
        log = hub_log(world)
        assert log == {"a": [1, 2, 3], a.origin: [1, 2]}
        moved = [ch for ch in world.hub.changes_since({}, 100) if ch["origin"] == a.origin]
        assert [decode(ch["hlc"])[2] for ch in moved] == [a.origin] * 2
        made = int((T0 + dt.timedelta(minutes=2)).timestamp() * 1000)
        assert [decode(ch["hlc"])[:2] for ch in moved] == [(made, 0), (made, 1)]

    def test_the_status_says_the_store_was_restored(self, world, tmp_path):
        a = world.device("a")
        course(a, id="c1")
        world.settle(["a"])
        backup = back_up(a, tmp_path / "backup.sqlite3")
        a.update("course", None, "c1", {"notes": "lost"})
        world.settle(["a"])
        a = restore(world, "a", backup)
        a.update("course", None, "c1", {"title": "new"})
        world.settle(["a"])
        [restart] = sync_status(a)["originRestarts"]
        assert (restart["from"], restart["to"], restart["resent"]) == ("a", a.origin, 1)
        assert restart["at"].endswith("Z")
        assert sync_status(a)["pending"]["count"] == 0
        # Later rounds find nothing more to repair.
        report = world.sync("a")
        assert report.origin_restart is None and report.error is None
        assert len(sync_status(a)["originRestarts"]) == 1

    def test_a_restored_store_with_no_new_edits_pulls_back_what_it_had_lost(self, world, tmp_path):
        a = world.device("a")
        course(a, id="c1")
        world.settle(["a"])
        backup = back_up(a, tmp_path / "backup.sqlite3")
        a.update("course", None, "c1", {"notes": "lost"})
        lecture(a, "c1", id="l1")
        world.settle(["a"])
        a = restore(world, "a", backup)
        assert a.get_course("c1")["notes"] == ""
        report = world.sync("a")
        assert report.error is None and report.origin_restart["resent"] == 0
        assert report.pulled == 2
        got = a.get_course("c1")
        assert got["notes"] == "lost" and [lec["id"] for lec in got["lectures"]] == ["l1"]
        assert_converged(world)
        assert hub_log(world) == {"a": [1, 2, 3]}
        # The next edit goes under the new origin, from 1.
        a.update("course", None, "c1", {"title": "next"})
        assert world.sync("a").pushed == 1
        assert hub_log(world)[a.origin] == [1]

    def test_an_edit_that_lost_to_a_lost_edit_is_in_the_conflicts(self, world, tmp_path):
        a, b = world.device("a"), world.device("b")
        with at(0):
            course(a, id="c1")
            world.settle(["a", "b"])
        backup = back_up(a, tmp_path / "backup.sqlite3")
        with at(5):  # made on the laptop before its disk died, and synced
            a.update("course", None, "c1", {"notes": "the newer note"})
            world.settle(["a"])
        a = restore(world, "a", backup)
        with freeze_time(T0 + dt.timedelta(minutes=3)):  # its clock is behind that edit
            a.update("course", None, "c1", {"notes": "an older note"})
        with at(6):
            world.settle(["a", "b"])
        for dev in (a, b):
            assert dev.get_course("c1")["notes"] == "the newer note"
            assert {(c["localValue"], c["remoteValue"]) for c in dev.list_conflicts()} <= {
                ("the newer note", "an older note"), ("an older note", "the newer note")}
            assert len(dev.list_conflicts()) == 1
        assert_converged(world)


class TestACopiedStore:
    def test_two_machines_syncing_copies_of_one_file_split_and_converge(self, world, tmp_path):
        a = world.device("a")
        course(a, id="c1")
        world.settle(["a"])
        twin = copy_syncing_too(world, a, tmp_path)
        assert twin.origin == "a"
        a.update("course", None, "c1", {"title": "on the first machine"})
        lecture(twin, "c1", id="l-twin")
        world.settle(["a", "twin", "a"])
        assert twin.origin != "a" and a.origin == "a"
        for dev in (a, twin):
            got = dev.get_course("c1")
            assert got["title"] == "on the first machine" and [lec["id"] for lec in got["lectures"]] == ["l-twin"]
        assert_converged(world)
        assert hub_log(world) == {"a": [1, 2], twin.origin: [1]}


class TestNothingToRepair:
    def test_a_push_the_hub_took_before_the_cursor_was_saved_only_moves_the_cursor(self, world):
        a = world.device("a")
        course(a, id="c1")
        a.update("course", None, "c1", {"notes": "n"})
        world.settle(["a"])
        bookmark = a.get_bookmark(BOOKMARK_KEY)
        a.set_bookmark(BOOKMARK_KEY, {**bookmark, "cursor": {**bookmark["cursor"], "a": 0}})
        a.update("course", None, "c1", {"title": "t"})
        report = world.sync("a")
        assert report.origin_restart is None and a.origin == "a"
        assert (report.pushed, report.pushed_sent) == (1, 1)
        assert a.get_bookmark(BOOKMARK_KEY)["cursor"]["a"] == 3

    def test_a_slot_filler_for_an_own_refused_change_is_not_a_restore(self, world):
        a = world.device("a")
        course(a, id="c1")
        a.update("course", None, "c1", {"notes": "n"})
        conn = a.pool.get()  # the second change turns out bad on the way (a bug of an older version)
        conn.execute("UPDATE changes SET fields = '{\"notes\": 5}' WHERE origin = 'a' AND seq = 2")
        report = world.sync("a")
        assert report.quarantined == 1 and report.error is None
        bookmark = a.get_bookmark(BOOKMARK_KEY)
        a.set_bookmark(BOOKMARK_KEY, {**bookmark, "cursor": {}})
        report = world.sync("a")
        assert report.origin_restart is None and report.error is None and a.origin == "a"


class TestRestartOrigin:
    def test_moves_the_tail_renumbered_and_restamped(self, store_factory):
        store = store_factory("dev", user_id=USER, origin="dev-a")
        store.connect()
        course(store, id="c1")
        lecture(store, "c1", id="l1")
        store.update("course", None, "c1", {"notes": "n1"})
        store.update("course", None, "c1", {"notes": "n2"})
        before = {ch["seq"]: ch for ch in store.changes_since({}, 100)}
        new, moved = store.restart_origin("dev-a", 3)
        assert moved == 2 and new == store.origin != "dev-a"
        assert new[0] == {"sql": "d", "mongo": "m"}[store.store_kind]  # the new one says what made it
        after = store.changes_since({}, 100)
        assert [(ch["origin"], ch["seq"]) for ch in after if ch["origin"] == "dev-a"] == [("dev-a", 1), ("dev-a", 2)]
        tail = [ch for ch in after if ch["origin"] == new]
        assert [ch["seq"] for ch in tail] == [1, 2]
        for old, ch in zip((before[3], before[4]), tail):
            assert decode(ch["hlc"])[:2] == decode(old["hlc"])[:2] and decode(ch["hlc"])[2] == new
            assert ch["fields"] == old["fields"]
        assert tail[1]["bases"]["notes"] == tail[0]["hlc"]  # it replaced the first note
        state = store.dump_records()[("course", "c1")]
        assert state["clocks"]["notes"] == tail[1]["hlc"] and state["bases"]["notes"] == tail[0]["hlc"]
        assert state["clocks"]["title"] == before[1]["hlc"]  # written under the old origin: kept
        # Asked again for the old origin: it has moved on already, nothing happens.
        assert store.restart_origin("dev-a", 1) == (new, 0)
        assert store.changes_since({}, 100) == after
        # The next own write goes on under the new origin.
        store.update("course", None, "c1", {"title": "t"})
        assert [(ch["origin"], ch["seq"]) for ch in store.changes_since({new: 2}, 100, only_origin=new)] == [(new, 3)]
        assert store.pending_since({}, origin=new)[0] == 3

    def test_another_connection_to_the_file_follows_the_new_origin(self, sql_factory):
        first = sql_factory("dev", user_id=USER, origin=None)
        first.connect()
        other = sql_factory("dev", user_id=USER, origin=None)
        other.connect()
        course(first, id="c1")
        first.update("course", None, "c1", {"notes": "n"})
        new, moved = first.restart_origin(first.origin, 2)
        assert moved == 1
        assert other.pending_since({}) == first.pending_since({})  # it reads the new origin's log
        assert other.origin == new
        other.update("course", None, "c1", {"title": "from the other process"})
        [ch] = other.changes_since({new: 1}, 10, only_origin=new)
        assert ch["seq"] == 2 and decode(ch["hlc"])[2] == new


class TestPureParts:
    def test_moved_to_renumbers_and_restamps_only_the_moved_stamps(self):
        s1, s2 = encode(10, 0, "a"), encode(10, 1, "a")
        other = encode(9, 0, "b")
        tail = [
            {"origin": "a", "seq": 7, "hlc": s1, "kind": "course", "id": "c", "courseId": None, "op": "upsert",
             "fields": {"title": "x"}, "bases": {"title": other}},
            {"origin": "a", "seq": 8, "hlc": s2, "kind": "course", "id": "c", "courseId": None, "op": "delete",
             "fields": {}, "bases": {"*": s1}},
        ]
        moved, stamps = moved_to(tail, "n")
        assert stamps == {s1: encode(10, 0, "n"), s2: encode(10, 1, "n")}
        assert [(m["origin"], m["seq"], m["hlc"]) for m in moved] == [("n", 1, stamps[s1]), ("n", 2, stamps[s2])]
        assert moved[0]["bases"] == {"title": other} and moved[1]["bases"] == {"*": stamps[s1]}
        assert moved[0]["fields"] == {"title": "x"} and moved[1]["op"] == "delete"
        assert tail[0]["origin"] == "a" and tail[1]["bases"] == {"*": s1}  # the input is left as it was

    def test_restamp_state_replaces_every_kind_of_clock(self):
        old, new, kept = encode(5, 0, "a"), encode(5, 0, "n"), encode(4, 0, "b")
        state = {"kind": "course", "id": "c", "courseId": None, "fields": {"title": "t", "notes": "n"},
                 "clocks": {"title": old, "notes": kept}, "bases": {"title": kept, "notes": old},
                 "deleted": True, "dclock": old, "dbase": old}
        got = restamp_state(state, {old: new})
        assert got["clocks"] == {"title": new, "notes": kept} and got["bases"] == {"title": kept, "notes": new}
        assert (got["dclock"], got["dbase"]) == (new, new)
        assert got["fields"] == state["fields"] and got["deleted"] is True
        assert state["clocks"]["title"] == old
        keep = {**state, "dclock": kept, "dbase": ""}
        assert (restamp_state(keep, {old: new})["dclock"], restamp_state(keep, {old: new})["dbase"]) == (kept, "")

    def test_a_new_origin_is_fresh_each_time_and_says_which_kind_of_store_made_it(self):
        made = [new_origin("sql"), new_origin("sql"), new_origin("mongo"), new_origin("mongo")]
        assert [o[0] for o in made] == ["d", "d", "m", "m"]
        assert all(len(o) == 13 and int(o[1:], 16) >= 0 for o in made) and len(set(made)) == 4
        assert all(decode(encode(1, 0, o))[2] == o for o in made)  # each one can end a stamp
        with pytest.raises(KeyError):
            new_origin("postgres")  # no store of another kind makes origins

    def test_a_slot_filler_stamp_is_known_by_its_origin(self):
        assert is_slot_filler_of(encode(0, 0, "a"), "a")
        assert not is_slot_filler_of(encode(0, 0, "a"), "b")
        assert not is_slot_filler_of(encode(0, 1, "a"), "a") and not is_slot_filler_of(encode(1, 0, "a"), "a")
        assert not is_slot_filler_of(None, "a")


class TestTwinsStampingAlike:
    def test_a_change_stamped_like_a_logged_one_is_not_taken_for_it(self, world, tmp_path):
        a = world.device("a")
        with at(0):
            course(a, id="c1")
            world.settle(["a"])
        twin = copy_syncing_too(world, a, tmp_path)
        with at(1):  # the same clock state, the same millisecond: the same stamp for two writes
            a.update("course", None, "c1", {"notes": "on the first machine"})
            twin.update("course", None, "c1", {"notes": "on the copy"})
        [mine] = a.changes_since({"a": 1}, 10, only_origin="a")
        [theirs] = twin.changes_since({"a": 1}, 10, only_origin="a")
        assert (mine["seq"], mine["hlc"]) == (theirs["seq"], theirs["hlc"]) and mine != theirs
        # Pushed straight at the hub (as a round that raced the other would), it is refused, not dropped.
        with at(1), pytest.raises(Exception, match="already stored with other content") as refused:
            assert world.sync("a").error is None
            world.hub_for("twin").apply_changes([theirs])
        assert getattr(refused.value, "code", None) == "origin_reused"
        with at(2):
            world.settle(["twin", "a"])
        assert twin.origin != "a"
        for dev in (a, twin):
            assert {(c["localValue"], c["remoteValue"]) for c in dev.list_conflicts()} & {
                ("on the first machine", "on the copy"), ("on the copy", "on the first machine")}
        assert_converged(world)
