"""A device's log bounded below what the hub compacted, and a hub that then loses history no log
holds any more (restored from an old backup, recreated) healed from the devices' records: every
acknowledged edit comes back, a deleted record stays deleted. Over every kind of hub."""

from __future__ import annotations

from server.core.changes import is_heal_origin
from server.sync.bookmark import Bookmark, load_bookmark
from server.sync.heal import trim
from tests.hub.test_hub_history import pending
from tests.sync.test_compaction import compact_everything
from tests.synckit import FINAL_COURSES, assert_converged, course, six_steps, visible


def assert_log_goes_on_past_each_floor(world) -> None:
    """The hub's log of each origin: once each, no gap, from just past its floor (a hold drops what
    the log still held below it, as compaction does)."""
    floors = world.hub.floors()
    for origin, seqs in world.hub_seqs().items():
        start = floors.get(origin, 0) + 1
        assert seqs == list(range(start, start + len(seqs))), f"{origin}: {seqs} past floor {start - 1}"


def courses(store) -> dict[str, tuple[str, str]]:
    return {c["id"]: (c["title"], c["notes"]) for c in store.get_courses()}


def compact_and_trim(world, names: list[str]) -> None:
    """The hub compacts everything every device pulled; each device's next rounds drop it too."""
    world.settle(names)
    compact_everything(world)
    world.settle(names)


def test_a_device_drops_what_the_hub_compacted_and_keeps_numbering_its_own_changes(world):
    a, b = world.device("a"), world.device("b")
    for n in range(6):
        course(a, id=f"c{n}", title=f"c{n}")
    world.settle(["a", "b"])
    assert world.device_seqs("a") == {"a": [1, 2, 3, 4, 5, 6]} and world.device_seqs("b") == {"a": [1, 2, 3, 4, 5, 6]}
    compact_everything(world)
    ra, rb = world.sync("a"), world.sync("b")
    assert (ra.trimmed, rb.trimmed) == (5, 6), "a keeps its newest own change; b keeps none of a's"
    assert world.device_seqs("a") == {"a": [6]} and world.device_seqs("b") == {}
    assert a.floors() == {"a": 5} and b.floors() == {"a": 6}
    assert world.sync("a").trimmed == 0, "nothing is dropped twice"
    a.update("course", None, "c1", {"title": "after"})
    assert world.device_seqs("a") == {"a": [6, 7]}, "the own origin's numbers go on"
    world.settle(["a", "b"])
    assert b.get_course("c1")["title"] == "after" and pending(a) == pending(b) == 0
    assert_converged(world)


def test_a_long_log_goes_a_bounded_batch_a_round_until_all_of_it_has(world, monkeypatch):
    from server.sync import heal

    monkeypatch.setattr(heal, "TRIM_LIMIT", 5)
    a, b = world.device("a"), world.device("b")
    for n in range(12):
        course(a, id=f"c{n}", title=f"c{n}")
    world.settle(["a", "b"])
    compact_everything(world)
    assert [world.sync("b").trimmed for _ in range(4)] == [5, 5, 2, 0]
    assert world.device_seqs("b") == {}
    writes = []
    monkeypatch.setattr(type(b), "set_bookmark", lambda self, key, value: writes.append(key))
    assert world.sync("b").trimmed == 0 and writes == [], "an idle round writes nothing"


def test_what_the_hub_has_not_compacted_stays_in_the_log(world):
    a, _ = world.device("a"), world.device("b")
    for n in range(3):
        course(a, id=f"c{n}", title=f"c{n}")
    world.settle(["a", "b"])
    assert world.hub.compact({"a": 2}, 100) == 2
    world.settle(["a", "b"])
    assert world.device_seqs("a") == {"a": [3]} and world.device_seqs("b") == {"a": [3]}


def test_an_own_change_the_hub_refused_stays_in_the_log_to_be_written_again(world):
    a = world.device("a")
    for n in range(5):
        course(a, id=f"c{n}", title=f"c{n}")
    world.settle(["a"])
    a.quarantine([{"id": "q3", "origin": "a", "seq": 3, "reason": "refused by the hub: hlc is 90000 s ahead of "
                   "this clock (the limit is 86400 s)", "receivedAt": "2030-01-01T00:00:00.000Z", "change": "{}"}])
    bookmark = Bookmark(cursor={"a": 5}, hub_floors={"a": 5})
    assert trim(a, bookmark) == 2 and world.device_seqs("a") == {"a": [3, 4, 5]}


def test_a_hub_restored_from_before_what_every_log_dropped_is_healed_from_the_records(world):
    a, b = world.device("a"), world.device("b")
    course(a, id="c1", title="c1")
    world.settle(["a", "b"])
    backup = world.backup_hub()
    course(a, id="c2", title="c2")
    course(b, id="b1", title="b1")
    world.settle(["a", "b"])
    a.update("course", None, "b1", {"notes": "a's note"})
    b.delete("course", None, "c1")
    compact_and_trim(world, ["a", "b"])
    assert world.device_seqs("a") == {"a": [3]} and world.device_seqs("b") == {"b": [2]}, "both logs were trimmed"
    final = courses(a)
    assert final == {"c2": ("c2", ""), "b1": ("b1", "a's note")}

    world.restore_hub(backup)  # the hub holds a's first change only, and none of b's
    course(a, id="c3", title="c3")  # made after the restore, unsynced
    ra = world.sync("a")
    assert ra.error is None and ra.hub_rollback is not None and ra.healed == len(a.dump_records())
    [healer] = set(load_bookmark(a).cursor) - {"a", "b"}
    assert is_heal_origin(healer) and healer not in world.hub.floors(), "a heal origin, not held"
    logged = [c for c in world.hub.changes_since({}, 100, only_origin=healer)]
    assert [c["seq"] for c in logged] == list(range(1, len(logged) + 1))
    assert load_bookmark(a).cursor[healer] == len(logged)
    assert {(c["id"], c["op"]) for c in logged} >= {("b1", "upsert"), ("c1", "delete"), ("c2", "upsert")}, \
        "what the heal changed is logged, each with the stamp of the write it gives back"
    assert world.hub.floors()["a"] == 2 and load_bookmark(a).cursor["a"] == 4, "a's own, held where its log starts"
    rb = world.sync("b")  # its own log lacks its first change too: it gives its records, then pulls a's heal
    assert rb.error is None and rb.healed == 3 and rb.from_snapshot == 0 and rb.pulled >= len(logged)
    world.settle(["a", "b"], rounds=3)
    final["c3"] = ("c3", "")
    for store in (a, b, world.hub):
        assert courses(store) == final, "every acknowledged edit is back; c1 stays deleted"
    assert_log_goes_on_past_each_floor(world)
    newcomer = world.device("new")
    report = world.sync("new")
    assert report.error is None and report.from_snapshot > 0, "the records, not the log, bring what was healed"
    assert courses(newcomer) == final
    assert pending(a) == pending(b) == pending(newcomer) == 0
    assert world.sync("a").healed == 0 and world.sync("b").healed == 0, "healed once, then quiet"
    from server.sync.hub import StoreHub

    waiting = StoreHub(world.hub)  # a device reaching the hub store directly waits for news too
    assert waiting.wait({"a": 4, "b": 2}, exclude_origin="b", seconds=0), "records it lacks are news"
    assert not waiting.wait(load_bookmark(b).cursor, exclude_origin="b", seconds=0)
    world.settle(["a", "b", "new"])
    assert_converged(world)


def test_a_device_that_pulled_the_edits_of_one_gone_for_good_gives_them_back(world):
    a, b = world.device("a"), world.device("b")
    course(b, id="b0", title="b0")
    world.settle(["a", "b"])
    backup = world.backup_hub()
    course(a, id="c1", title="by a")
    a.update("course", None, "b0", {"notes": "a's note"})
    compact_and_trim(world, ["a", "b"])
    assert world.device_seqs("b") == {"b": [1]}, "b holds none of a's changes any more"
    world.restore_hub(backup)
    report = world.sync("b")  # a never syncs again
    assert report.error is None and report.healed > 0 and report.relayed == 0
    newcomer = world.device("new")
    assert world.sync("new").error is None
    assert courses(newcomer) == {"b0": ("b0", "a's note"), "c1": ("by a", "")}
    assert pending(b) == 0, "what b held of a past the hole went with the records, not left waiting"


def test_a_hub_recreated_empty_is_given_the_records_of_a_device_that_trimmed_its_log(world):
    a = world.device("a")
    for n in range(4):
        course(a, id=f"c{n}", title=f"c{n}")
    compact_and_trim(world, ["a"])
    assert world.device_seqs("a") == {"a": [4]}
    empty = world.backup_hub()
    db = world.hub
    if world.mongo:
        for name in db.db.list_collection_names():
            db.db[name].delete_many({})
    else:
        world.restore_hub(empty)
        db = world.hub
    db.wipe()  # a new epoch: the hub was recreated
    report = world.sync("a")
    assert report.error is None and report.hub_reset and report.healed == 4
    newcomer = world.device("new")
    assert world.sync("new").error is None
    assert visible(newcomer) == visible(a)
    assert pending(a) == 0


def test_a_hub_put_back_to_each_earlier_point_of_a_compacted_history_loses_nothing(world):
    a, b = world.device("a"), world.device("b")
    backups = []
    for n, step in enumerate(six_steps(a, b)):
        backups.append(world.backup_hub())
        step()
        if n % 2:
            compact_and_trim(world, ["a", "b"])
        else:
            world.settle(["a", "b"])
    final = courses(a)
    assert final == FINAL_COURSES
    for n, backup in reversed(list(enumerate(backups))):
        world.restore_hub(backup)
        world.settle(["b", "a"], rounds=3)
        for store in (a, b, world.hub):
            assert courses(store) == final, f"restored to before step {n}"
        newcomer = world.device(f"new{n}")
        assert world.sync(f"new{n}").error is None
        assert courses(newcomer) == final, f"a new device after a restore to before step {n}"
        assert_log_goes_on_past_each_floor(world)
        assert pending(a) == pending(b) == 0
        compact_and_trim(world, ["a", "b"])
