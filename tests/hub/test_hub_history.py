"""Nothing lost when the hub loses history: a hub restored from an older backup, a hub recreated
while a device is retired, a push that would leave a hole. Over every kind of hub."""

from __future__ import annotations

from server.sync.bookmark import load_bookmark
from tests.synckit import FINAL_COURSES, assert_converged, course, six_steps


def pending(store) -> int:
    return store.pending_since(load_bookmark(store).cursor)[0]


def titles(store) -> set[str]:
    return {c["title"] for c in store.get_courses()}


def assert_gapless(world) -> None:
    for origin, seqs in world.hub_seqs().items():
        assert seqs == list(range(1, len(seqs) + 1)), f"the hub's log of {origin} has a hole: {seqs}"


class TestRestoredFromABackup:
    def test_every_acknowledged_edit_comes_back_and_every_device_is_told(self, world):
        a, b = world.device("a"), world.device("b")
        course(a, id="c1", title="c1")
        world.settle(["a", "b"])
        backup = world.backup_hub()
        course(a, id="c2", title="c2")
        course(b, id="b2", title="b2")
        world.settle(["a", "b"])
        assert titles(b) == {"c1", "c2", "b2"}
        world.restore_hub(backup)
        course(a, id="c3", title="c3")  # made after the restore: its seq is past the hub's top
        ra, rb = world.sync("a"), world.sync("b")
        assert ra.error is None and rb.error is None
        assert ra.hub_rollback == {"at": ra.hub_rollback["at"], "origins": 2, "changes": 2, "by": "this device"}
        # a gave back b's b2 too (it had pulled it), so b finds nothing missing, and is told.
        assert rb.hub_rollback == {"at": ra.hub_rollback["at"], "origins": 2, "changes": 2, "by": "another device"}
        assert rb.relayed == 0 and not ra.hub_reset and not rb.hub_reset
        world.settle(["a", "b"])
        newcomer = world.device("c")
        assert world.sync("c").error is None
        assert titles(newcomer) == titles(a) == titles(b) == {"c1", "c2", "b2", "c3"}
        assert pending(a) == pending(b) == 0
        assert_gapless(world)
        assert_converged(world)

    def test_a_device_that_pulled_an_edit_gives_it_back_when_its_author_is_gone(self, world):
        a = world.device("a")
        world.device("b")
        course(a, id="c1", title="c1")
        world.settle(["a", "b"])
        backup = world.backup_hub()
        course(a, id="c2", title="c2")
        world.settle(["a", "b"])
        world.restore_hub(backup)
        report = world.sync("b")  # a never syncs again
        assert report.hub_rollback["changes"] == 1 and report.relayed == 1 and report.pushed == 0
        newcomer = world.device("c")
        world.sync("c")
        assert titles(newcomer) == {"c1", "c2"}
        assert_gapless(world)

    def test_a_rollback_is_found_once_and_the_next_rounds_are_quiet(self, world):
        a = world.device("a")
        course(a, id="c1", title="c1")
        world.settle(["a"])
        backup = world.backup_hub()
        course(a, id="c2", title="c2")
        world.settle(["a"])
        world.restore_hub(backup)
        assert world.sync("a").hub_rollback is not None
        again = world.sync("a")
        assert again.hub_rollback is None and again.pushed == 0 and again.relayed == 0
        assert len(load_bookmark(a).rollbacks) == 1

    def test_a_hub_restored_to_before_a_device_ever_synced(self, world):
        assert world.hub.hub_epoch()  # the hub exists, empty, when the backup is taken
        empty = world.backup_hub()
        b = world.device("b")
        course(b, id="b1", title="b1")
        world.settle(["b"])
        world.restore_hub(empty)
        report = world.sync("b")
        assert report.hub_rollback["changes"] == 1 and report.pushed == 1
        assert world.hub_seqs() == {b.origin: [1]}


def test_a_hub_put_back_to_each_earlier_point_of_a_history_loses_nothing(world):
    a, b = world.device("a"), world.device("b")
    backups = []
    for step in six_steps(a, b):
        backups.append(world.backup_hub())
        step()
        world.settle(["a", "b"])
    final = {c["id"]: (c["title"], c["notes"]) for c in a.get_courses()}
    assert final == FINAL_COURSES
    for n, backup in reversed(list(enumerate(backups))):
        world.restore_hub(backup)
        world.settle(["b", "a"])
        for store in (a, b, world.hub):
            got = {c["id"]: (c["title"], c["notes"]) for c in store.get_courses()}
            assert got == final, f"restored to before step {n}"
        assert pending(a) == pending(b) == 0
        assert_gapless(world)
        assert_converged(world)


class TestNoHoleIsStored:
    def test_a_push_that_starts_past_the_top_is_told_where_to_resume_and_stores_nothing(self, world):
        a = world.device("a")
        for i in range(4):
            course(a, id=f"c{i}")
        log = a.changes_since({}, 10)
        answer = world.hub.apply_changes(log[2:])
        assert (answer["applied"], answer["resume"]) == (0, {"a": 0})
        assert world.hub_seqs() == {} and world.hub.get_courses() == []
        assert world.hub.apply_changes(log[:1])["resume"] == {}
        answer = world.hub.apply_changes([log[0], log[2], log[3]])
        assert (answer["applied"], answer["resume"]) == (0, {"a": 1})
        assert world.hub.apply_changes(log)["applied"] == 3
        assert world.hub_seqs() == {"a": [1, 2, 3, 4]}

    def test_a_reader_stops_at_a_hole_it_finds(self, world):
        a = world.device("a")
        for i in range(3):
            course(a, id=f"c{i}")
        world.settle(["a"])
        if world.mongo:
            world.hub.db.changes.delete_one({"userId": "learner", "origin": "a", "seq": 2})
        else:
            import sqlite3
            conn = sqlite3.connect(world.tmp_path / "hub.sqlite3")
            conn.execute("DELETE FROM changes WHERE origin = 'a' AND seq = 2")
            conn.commit()
            conn.close()
        assert [c["seq"] for c in world.hub.changes_since({}, 10)] == [1]
        assert world.hub.changes_since({"a": 2}, 10)[0]["seq"] == 3, "past the hole, it reads on"

    def test_a_round_against_a_hub_with_a_hole_fills_it(self, world):
        a, b = world.device("a"), world.device("b")
        for i in range(3):
            course(a, id=f"c{i}", title=f"c{i}")
        world.settle(["a"])
        backup = world.backup_hub()
        course(a, id="late", title="late")
        world.settle(["a"])
        course(a, id="later", title="later")
        world.restore_hub(backup)
        # The restored hub is handed a's newest change alone, as a device unaware of the restore would.
        assert world.hub.apply_changes(a.changes_since({"a": 4}, 10))["resume"] == {"a": 3}
        world.settle(["a", "b"])
        assert titles(b) == {"c0", "c1", "c2", "late", "later"}
        assert_gapless(world)


class TestRelay:
    def test_a_hub_recreated_while_a_device_is_retired_gets_its_edits_from_another(self, world):
        a, b = world.device("a"), world.device("b")
        course(a, id="c1", title="c1")
        world.settle(["a", "b"])
        b.update("course", None, "c1", {"notes": "from the phone"})
        course(b, id="b1", title="b1")
        world.settle(["b", "a"])
        world.hub.wipe()  # the phone is retired; the hub starts again empty
        report = world.sync("a")
        assert report.hub_reset and report.error is None and report.relayed == 2
        assert pending(a) == 0
        newcomer = world.device("c")
        world.sync("c")
        assert titles(newcomer) == {"c1", "b1"}
        assert newcomer.get_course("c1")["notes"] == "from the phone"
        assert_gapless(world)

    def test_a_relayed_copy_never_overwrites_what_the_hub_holds(self, world):
        a = world.device("a")
        course(a, id="c1", title="original")
        world.settle(["a"])
        forged = {**a.changes_since({}, 1)[0], "hlc": "9" * 13 + "-0000-a", "fields": {"title": "forged"}}
        answer = world.hub.relay_changes([forged])
        assert answer["applied"] == 0
        assert world.hub.get_course("c1")["title"] == "original"

    def test_a_relay_past_the_hubs_top_is_told_where_to_resume(self, world):
        a = world.device("a")
        course(a, id="c1")
        course(a, id="c2")
        answer = world.hub.relay_changes(a.changes_since({"a": 1}, 5))
        assert (answer["applied"], answer["resume"]) == (0, {"a": 0})
        assert world.hub_seqs() == {}
