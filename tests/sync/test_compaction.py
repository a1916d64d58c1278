"""Bounded history: a hub drops an origin's changes up to a floor, and a device whose cursor is
below it (new, away too long, restored) catches up from the hub's records instead of the log,
keeps its unsynced edits and resurrects nothing. Over every kind of hub."""

from __future__ import annotations

import pytest

from server.core.changes import Refusal, writes_of
from server.core.clock import encode
from server.sync.bookmark import load_bookmark
from server.sync.engine import run_round
from tests.synckit import FlakyHub, assert_converged, course, lecture, visible


def compact_everything(world) -> int:
    """Compact every origin of the hub up to its top, as a hub does once every device it still
    serves has pulled all of it (the devices left out are treated as away too long)."""
    hub = world.hub
    tops = hub.tops(set(world.hub_seqs()))
    dropped = 0
    while step := hub.compact(tops, 7):  # small bounded batches, as the scheduled job runs them
        assert step <= 7
        dropped += step
    return dropped


def edit_a_lot(store, course_id: str, times: int) -> None:
    for n in range(times):
        store.update("course", None, course_id, {"title": f"{course_id} v{n}"})


def test_a_new_device_catches_up_from_the_records_and_ends_like_one_that_replayed_the_log(world):
    a, b = world.device("a"), world.device("b")
    course(a, id="c1", title="one")
    course(a, id="c2", title="two")
    lecture(a, "c1", id="l1", title="first")
    edit_a_lot(a, "c1", 30)
    world.settle(["a", "b"])
    b.update("lecture", "c1", "l1", {"completed": True})
    b.delete("course", None, "c2")
    world.settle(["a", "b"])
    replay = world.device("replayer")
    assert world.sync("replayer").from_snapshot == 0  # the log is whole: replayed as always
    changes = sum(len(s) for s in world.hub_seqs().values())
    assert compact_everything(world) == changes and world.hub_seqs() == {}

    report = world.sync("newcomer")
    assert report.error is None and report.pulled == 0
    assert report.from_snapshot == len(world.hub.dump_records())  # every record, tombstones too
    new = world.device("newcomer")
    assert visible(new) == visible(replay) == visible(world.hub), "a snapshot and a log replay give the same state"
    assert "c2" not in {c["id"] for c in new.get_courses()}
    # From the cursor the snapshot came with, the log goes on as usual.
    a.update("course", None, "c1", {"title": "after"})
    world.sync("a")
    again = world.sync("newcomer")
    assert again.pulled == 1 and again.from_snapshot == 0
    assert new.get_course("c1")["title"] == "after"
    assert load_bookmark(new).catch_up is None


def test_a_device_away_across_a_compaction_keeps_its_edits_and_resurrects_nothing(world):
    a, b = world.device("a"), world.device("b")
    course(a, id="c1", title="one")
    course(a, id="c2", title="two")
    lecture(a, "c2", id="l1", title="first")
    world.settle(["a", "b"])
    # b goes away; meanwhile a deletes c2, edits c1 and the hub compacts past b's cursor.
    a.delete("course", None, "c2")
    edit_a_lot(a, "c1", 5)
    a.update("course", None, "c1", {"description": "a's description"})
    world.settle(["a"])
    compact_everything(world)
    b.update("course", None, "c1", {"title": "b's title"})  # later than a's edits, unseen by b
    b.update("lecture", "c2", "l1", {"notes": "b's note"})
    course(b, id="b9", title="made away")

    report = world.sync("b")
    assert report.error is None and report.from_snapshot > 0 and report.pushed_sent == 3
    world.settle(["a", "b"])
    assert_converged(world)
    c1 = world.hub.get_course("c1")
    # Field by field, the later write wins: b's title was written after a's five edits.
    assert c1["title"] == "b's title" and c1["description"] == "a's description"
    assert {c["id"] for c in a.get_courses()} == {"c1", "b9"}, "c2 stays deleted, b9 arrived"
    lost = [(c["recordId"], c["field"]) for c in b.list_conflicts()]
    assert ("c1", "title") in lost, "a's last title lost to b's, which had not seen it: listed"
    assert ("l1", "notes") in lost, "the note written under a deleted course is listed, not silently gone"


def test_what_the_hub_compacted_is_held_and_named_to_a_cursor_below_it(world):
    a = world.device("a")
    for n in range(4):
        course(a, id=f"c{n}", title=f"c{n}")
    world.settle(["a"])
    hub = world.hub
    assert hub.compact({"a": 3}, 100) == 3 and hub.floors() == {"a": 3}
    assert world.hub_seqs() == {"a": [4]}
    assert hub.shortfall({"a": 2})["compacted"] == {"a": 3}
    assert hub.shortfall({"a": 3})["compacted"] == {} and hub.shortfall({})["compacted"] == {"a": 3}
    # A change at or below the floor, sent again (a lost acknowledgement), is held: not stored twice.
    again = a.changes_since({}, 10, only_origin="a")
    result = hub.apply_changes(again)
    assert result["applied"] == 0 and result["quarantined"] == [] and world.hub_seqs() == {"a": [4]}
    # A floor never passes what the hub holds, and never goes down.
    assert hub.compact({"a": 99}, 100) == 1 and hub.floors() == {"a": 4}
    assert hub.compact({"a": 1}, 100) == 0 and hub.floors() == {"a": 4}
    assert hub.tops({"a"}) == {"a": 4}, "the top outlives the changes"


def test_a_catch_up_that_dies_between_pages_resumes_at_the_next_page(world):
    a = world.device("a")
    for n in range(9):
        course(a, id=f"c{n}", title=f"c{n}")
    world.settle(["a"])
    compact_everything(world)
    flaky = FlakyHub(world.hub_for("new"))
    asked: list = []
    real = flaky.inner.snapshot_page
    flaky.inner.snapshot_page = lambda after, limit: (asked.append(after), real(after, limit))[1]
    flaky.fail_after("snapshot_page", 2)  # the second page's answer is lost
    new = world.device("new")
    first = run_round(new, flaky, batch_size=4)
    assert first.error is not None and (load_bookmark(new).catch_up or {}).get("after") is not None
    assert len(new.get_courses()) == 4, "the first page is kept"
    second = run_round(new, flaky, batch_size=4)
    assert second.error is None and asked.count(None) == 1, "resumed, not started again"
    assert visible(new) == visible(world.hub) and load_bookmark(new).catch_up is None


def test_a_record_of_a_snapshot_is_checked_at_the_door(world):
    dev = world.device("a")
    ahead = encode(10**14, 0, "x")  # the year 5138
    good = {"kind": "course", "id": "ok", "courseId": None, "fields": {"title": "fine"},
            "clocks": {"title": encode(1_700_000_000_000, 0, "x")}, "bases": {"title": ""},
            "deleted": False, "dclock": "", "dbase": ""}
    bad = [{**good, "id": "far", "clocks": {"title": ahead}},
           {**good, "id": "odd", "fields": {"title": 5}},
           {**good, "id": "two", "bases": {}},
           {**good, "id": "dead", "deleted": True},
           {**good, "extra": 1}]
    result = dev.apply_snapshot([good, *bad])
    assert result["applied"] == 1 and len(result["quarantined"]) == len(bad)
    assert [c["id"] for c in dev.get_courses()] == ["ok"]
    assert dev.count_quarantine() == len(bad)
    assert dev.pending_since({})[0] == 0, "a snapshot is merged, never logged as this device's changes"
    assert dev.clock.last < ahead


@pytest.mark.parametrize("state, writes", [
    ({"kind": "course", "id": "c", "courseId": None, "fields": {"title": "t", "notes": "n", "done": True},
      "clocks": {"title": "000000000000002-000000-a", "notes": "000000000000001-000000-b",
                 "done": "000000000000002-000000-a"},
      "bases": {"title": "000000000000001-000000-b", "notes": "", "done": ""},
      "deleted": False, "dclock": "", "dbase": ""},
     [("000000000000001-000000-b", "b", {"notes": "n"}, {"notes": ""}),
      ("000000000000002-000000-a", "a", {"title": "t", "done": True},
       {"title": "000000000000001-000000-b", "done": ""})]),
    ({"kind": "course", "id": "c", "courseId": None, "fields": {}, "clocks": {}, "bases": {}, "deleted": True,
      "dclock": "000000000000003-000000-z", "dbase": "000000000000002-000000-a"},
     [("000000000000003-000000-z", "z", {}, {"*": "000000000000002-000000-a"})]),
])
def test_a_record_is_read_as_the_writes_that_made_it(state, writes):
    rebuilt, problem = writes_of(state)
    assert problem is None
    assert [(w["hlc"], w["origin"], w["fields"], w["bases"]) for w in rebuilt] == writes
    assert {w["op"] for w in rebuilt} == ({"delete"} if state["deleted"] else {"upsert"})
    assert all(w["kind"] == "course" and w["id"] == "c" and w["courseId"] is None for w in rebuilt)


GOOD = {"kind": "course", "id": "c", "courseId": None, "fields": {"title": "t"},
        "clocks": {"title": "000000000000002-000000-a"}, "bases": {"title": ""}, "deleted": False, "dclock": "",
        "dbase": ""}


@pytest.mark.parametrize("state, problem", [
    ("a string", "a record is an object with exactly kind, id, courseId, fields, clocks, bases, deleted, dclock, "
                 "dbase"),
    ({**GOOD, "v": 3}, "a record is an object with exactly"),
    ({k: v for k, v in GOOD.items() if k != "dbase"}, "a record is an object with exactly"),
    ({**GOOD, "fields": []}, "fields, clocks and bases name the same fields; deleted is true or false"),
    ({**GOOD, "clocks": "x"}, "fields, clocks and bases name the same fields"),
    ({**GOOD, "bases": None}, "fields, clocks and bases name the same fields"),
    ({**GOOD, "clocks": {}}, "fields, clocks and bases name the same fields"),
    ({**GOOD, "bases": {"title": "", "notes": ""}}, "fields, clocks and bases name the same fields"),
    ({**GOOD, "deleted": 1}, "fields, clocks and bases name the same fields"),
    ({**GOOD, "deleted": True, "dclock": "000000000000003-000000-a"}, "a tombstone keeps no fields"),
    ({**GOOD, "deleted": True, "fields": {}, "clocks": {}, "bases": {}, "dclock": "soon"},
     "a tombstone keeps no fields and has the stamp of its delete"),
    ({**GOOD, "dclock": "000000000000003-000000-a"}, "a live record has no delete stamp"),
    ({**GOOD, "dbase": "000000000000001-000000-a"}, "a live record has no delete stamp"),
    ({**GOOD, "clocks": {"title": "later"}}, "clock of 'title' is not a stamp"),
])
def test_a_record_that_is_not_a_merge_state_is_not_read_as_writes(state, problem):
    writes, why = writes_of(state)
    assert writes == [] and why is not None and why.message.startswith(problem)


def test_a_bad_clock_is_named_in_forty_characters_at_most():
    name = "n" * 50
    state = {**GOOD, "fields": {name: 1}, "clocks": {name: 7}, "bases": {name: ""}}
    assert writes_of(state) == ([], Refusal("bad_clock", f"clock of {'n' * 40!r} is not a stamp", {"field": "n" * 40}))


def test_a_record_with_no_field_written_is_no_write():
    assert writes_of({**GOOD, "fields": {}, "clocks": {}, "bases": {}}) == ([], None)
    [write] = writes_of(GOOD)[0]
    assert write == {"kind": "course", "id": "c", "courseId": None, "origin": "a", "seq": 1,
                     "hlc": "000000000000002-000000-a", "op": "upsert", "fields": {"title": "t"},
                     "bases": {"title": ""}}
