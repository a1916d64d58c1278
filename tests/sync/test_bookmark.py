"""The device's sync state (server/sync/bookmark.py): one type, stored in the form it always had."""

from __future__ import annotations

from server.sync.bookmark import Bookmark, load_bookmark, save_bookmark
from server.sync.status import sync_status
from tests.synckit import course

# A bookmark as a store holds it from the versions before the type: every key set that any of
# them wrote (a round part way through a catch-up, after a reset, a restart, a rollback).
STORED_BEFORE = {
    "epoch": "e1", "cursor": {"a": 2, "b": 7},
    "resets": [{"from": "e0", "to": "e1", "at": 1700000000.5}],
    "restarts": [{"from": "d0", "to": "a", "at": 1700000001.5, "resent": 4}],
    "rollbacks": [{"at": 1700000002.5, "origins": 1, "changes": 3, "by": "another device"}],
    "rollbackIds": ["r1"],
    "snapshot": {"after": ["course", "c1"], "cursor": {"b": 9}, "rollbacks": ["r1"]},
    "heal": True, "trimmed": {"b": 2}, "owned": {"z": 1700000003.0},
    "catchUpRestarts": [{"at": 1700000004.5, "origins": 2}],
    "healer": {"origin": "h0123456789ab", "top": 5}, "hubFloors": {"b": 2},
}


def test_a_bookmark_stored_before_the_type_loads_field_for_field(world):
    a = world.device("a")
    a.set_bookmark("hub", STORED_BEFORE)
    assert load_bookmark(a) == Bookmark(
        epoch="e1", cursor={"a": 2, "b": 7},
        resets=[{"from": "e0", "to": "e1", "at": 1700000000.5}],
        restarts=[{"from": "d0", "to": "a", "at": 1700000001.5, "resent": 4}],
        rollbacks=[{"at": 1700000002.5, "origins": 1, "changes": 3, "by": "another device"}],
        rollback_ids=["r1"], catch_up={"after": ["course", "c1"], "cursor": {"b": 9}, "rollbacks": ["r1"]},
        heal_due=True, trimmed={"b": 2}, owned={"z": 1700000003.0},
        catch_up_restarts=[{"at": 1700000004.5, "origins": 2}],
        healer={"origin": "h0123456789ab", "top": 5}, hub_floors={"b": 2})


def test_what_is_saved_is_the_form_stored_before(world):
    a = world.device("a")
    save_bookmark(a, Bookmark.from_stored(STORED_BEFORE))
    assert a.get_bookmark("hub") == STORED_BEFORE


def test_keys_unset_are_left_out_as_before_and_an_unset_bookmark_loads_empty(world):
    a = world.device("a")
    assert load_bookmark(a) == Bookmark()
    save_bookmark(a, Bookmark(epoch="e1", cursor={"a": 1}))
    assert a.get_bookmark("hub") == {"epoch": "e1", "cursor": {"a": 1}, "resets": [], "restarts": [],
                                     "rollbacks": [], "rollbackIds": []}


def test_a_copy_made_to_be_stored_does_not_move_the_cursor_it_came_from():
    bookmark = Bookmark(cursor={"a": 1})
    moved = bookmark.replace()
    moved.cursor["a"] = 2
    assert bookmark.cursor == {"a": 1} and bookmark.replace(cursor={"a": 3}).cursor == {"a": 3}


def test_a_round_goes_on_from_a_bookmark_stored_before_the_type(world):
    a = world.device("a")
    for n in range(3):
        course(a, id=f"c{n}", title=f"c{n}")
    assert world.sync("a").pushed == 3
    stored = a.get_bookmark("hub")
    # The same place in the hub's log, written the old way: the hub holds a's first three.
    a.set_bookmark("hub", {"epoch": stored["epoch"], "cursor": {"a": 3}, "resets": [], "restarts": [],
                           "rollbacks": [], "rollbackIds": [], "hubFloors": {}})
    course(a, id="c3", title="c3")
    report = world.sync("a")
    assert (report.error, report.hub_reset, report.pushed, report.pushed_sent) == (None, False, 1, 1)
    assert load_bookmark(a).cursor == {"a": 4}


def test_the_status_reads_what_a_bookmark_stored_before_the_type_holds(world):
    a = world.device("a")
    a.set_bookmark("hub", STORED_BEFORE)
    status = sync_status(a)
    assert status["hubEpoch"] == "e1"
    assert status["hubResets"] == [{"from": "e0", "to": "e1", "at": "2023-11-14T22:13:20.500Z"}]
    assert status["originRestarts"] == [{"from": "d0", "to": "a", "at": "2023-11-14T22:13:21.500Z", "resent": 4}]
    assert status["catchUpRestarts"] == [{"at": "2023-11-14T22:13:24.500Z", "origins": 2}]
    assert status["hubRollbacks"] == [{"at": "2023-11-14T22:13:22.500Z", "origins": 1, "changes": 3,
                                       "foundBy": "another device"}]
