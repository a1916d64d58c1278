"""The rule about sequence numbers (server/core/sequences.py): a store never takes a gap, a reader
never steps over one, a cursor only moves through numbers it got without one."""

from __future__ import annotations

from server.core.sequences import admit, advance, behind, held_below, retention_floor, run_after, shortfall


def ch(origin: str, seq: int, tag: str = "") -> dict:
    return {"origin": origin, "seq": seq, "tag": tag}


class TestAdmit:
    def test_a_run_that_starts_one_past_the_top_is_taken_whole(self):
        batch = [ch("a", 3), ch("a", 4), ch("a", 5)]
        assert admit(batch, {"a": 2}) == (batch, {})

    def test_a_run_starting_past_the_top_plus_one_is_refused_and_told_the_top(self):
        assert admit([ch("a", 4), ch("a", 5)], {"a": 2}) == ([], {"a": 2})

    def test_an_origin_the_store_has_never_seen_must_start_at_one(self):
        assert admit([ch("new", 2)], {}) == ([], {"new": 0})
        assert admit([ch("new", 1)], {}) == ([ch("new", 1)], {})

    def test_a_hole_inside_the_batch_stops_that_origin_there(self):
        taken, resume = admit([ch("a", 1), ch("a", 2), ch("a", 4), ch("a", 5)], {})
        assert taken == [ch("a", 1), ch("a", 2)] and resume == {"a": 2}

    def test_what_the_store_already_holds_is_passed_on_for_it_to_recognise(self):
        # Re-sent changes at or below the top are the store's to compare (a retried batch).
        batch = [ch("a", 1), ch("a", 2), ch("a", 3)]
        assert admit(batch, {"a": 2}) == (batch, {})

    def test_origins_are_judged_apart(self):
        taken, resume = admit([ch("a", 1), ch("b", 7), ch("c", 3)], {"c": 2})
        assert taken == [ch("a", 1), ch("c", 3)] and resume == {"b": 0}

    def test_the_batch_keeps_its_order_whatever_order_the_seqs_came_in(self):
        batch = [ch("b", 1), ch("a", 2), ch("a", 1)]
        assert admit(batch, {}) == (batch, {})

    def test_a_duplicate_seq_in_one_batch_does_not_open_a_gap(self):
        taken, resume = admit([ch("a", 1, "x"), ch("a", 1, "y"), ch("a", 2)], {})
        assert len(taken) == 3 and resume == {}

    def test_changes_that_name_no_readable_slot_go_through_for_the_door_to_refuse(self):
        odd = ["text", {"origin": "a"}, {"origin": 5, "seq": 1}, {"origin": "a", "seq": 0},
               {"origin": "a", "seq": True}, {"origin": "a", "seq": 1.0}]
        assert admit(odd, {}) == (odd, {})

    def test_unreadable_changes_among_readable_ones_stop_nothing(self):
        batch = [{"origin": "a"}, ch("a", 1), "junk", ch("b", 1), ch("a", 2)]
        assert admit(batch, {}) == (batch, {})

    def test_the_tops_given_are_not_changed(self):
        tops = {"a": 1}
        admit([ch("a", 2), ch("a", 3)], tops)
        assert tops == {"a": 1}


class TestRunAfter:
    def test_the_run_stops_at_the_first_missing_seq(self):
        assert run_after(0, [(1, "x"), (2, "y"), (4, "z")]) == ["x", "y"]

    def test_the_run_starts_right_after_the_cursor(self):
        assert run_after(2, [(3, "c"), (4, "d")]) == ["c", "d"]
        assert run_after(2, [(4, "d")]) == []

    def test_nothing_is_nothing(self):
        assert run_after(5, []) == []


class TestAdvance:
    def test_a_gapless_batch_moves_the_cursor_to_its_end(self):
        assert advance({"a": 1}, [ch("a", 2), ch("a", 3), ch("b", 1)]) == {"a": 3, "b": 1}

    def test_the_cursor_does_not_step_over_a_hole(self):
        assert advance({}, [ch("a", 1), ch("a", 3)]) == {"a": 1}
        assert advance({"a": 5}, [ch("a", 7)]) == {"a": 5}

    def test_the_batch_order_does_not_matter(self):
        assert advance({}, [ch("a", 2), ch("a", 1)]) == {"a": 2}

    def test_changes_below_the_cursor_do_not_move_it_back(self):
        assert advance({"a": 5}, [ch("a", 2)]) == {"a": 5}

    def test_broken_changes_are_not_passed_by_number(self):
        assert advance({"a": 0}, ["junk", {"origin": "a", "seq": "1"}, {"seq": 1}]) == {"a": 0}

    def test_the_given_cursor_is_not_changed(self):
        cursor = {"a": 1}
        advance(cursor, [ch("a", 2)])
        assert cursor == {"a": 1}


class TestShortfall:
    def test_a_store_holding_everything_acknowledged_falls_short_of_nothing(self):
        assert shortfall({"a": 3, "b": 1}, {"a": 3, "b": 4}) == {}

    def test_each_origin_held_short_is_named_with_what_is_held(self):
        assert shortfall({"a": 3, "b": 2, "c": 1}, {"a": 1, "b": 2}) == {"a": 1, "c": 0}

    def test_nothing_acknowledged_is_nothing_short(self):
        assert shortfall({}, {"a": 9}) == {}


class TestRetentionFloor:
    def test_the_floor_is_the_lowest_cursor_among_the_devices_that_hold_history(self):
        tops = {"a": 10, "b": 4}
        pulled = {"phone": {"a": 7, "b": 4}, "tablet": {"a": 9, "b": 2}}
        assert retention_floor(tops, pulled, {}) == {"a": 7, "b": 2}

    def test_a_device_that_has_not_pulled_an_origin_holds_all_of_it(self):
        assert retention_floor({"a": 10}, {"phone": {}}, {}) == {"a": 0}

    def test_an_origins_own_device_holds_what_it_wrote_whatever_its_cursor_says(self):
        tops = {"a": 10, "b": 6}
        pulled = {"laptop": {"b": 5}, "phone": {"a": 8, "b": 6}}
        owners = {"a": "laptop", "b": "phone"}
        assert retention_floor(tops, pulled, owners) == {"a": 8, "b": 5}

    def test_with_no_device_holding_it_back_the_whole_log_may_go(self):
        assert retention_floor({"a": 10, "b": 3}, {}, {}) == {"a": 10, "b": 3}
        assert retention_floor({"a": 10}, {"laptop": {"a": 2}}, {"a": "laptop"}) == {"a": 10}

    def test_the_floor_never_passes_the_top_and_covers_only_the_origins_held(self):
        # A cursor past the hub's top (a hub restored from a backup) cannot lift the floor over
        # what the hub holds, and an origin the hub does not hold has no floor.
        assert retention_floor({"a": 4}, {"phone": {"a": 9, "z": 3}}, {}) == {"a": 4}
        assert retention_floor({}, {"phone": {"a": 9}}, {}) == {}


class TestFloors:
    def test_what_lies_at_or_below_its_origins_floor_is_held(self):
        batch = [{"origin": "a", "seq": 3}, {"origin": "a", "seq": 4}, {"origin": "b", "seq": 1},
                 {"origin": "c", "seq": 2}, {"origin": "a"}, "junk"]
        assert held_below(batch, {"a": 3, "c": 2}) == [{"origin": "a", "seq": 4}, {"origin": "b", "seq": 1},
                                                       {"origin": "a"}, "junk"]
        assert held_below(batch, {}) == batch

    def test_a_cursor_is_behind_each_floor_it_has_not_reached(self):
        floors = {"a": 5, "b": 2, "own": 9}
        assert behind({"a": 5, "b": 1}, floors) == {"b": 2, "own": 9}
        assert behind({"a": 4, "b": 2, "own": 1}, floors, but="own") == {"a": 5}
        assert behind({}, floors, but="x") == floors
        assert behind({"a": 6, "b": 3, "own": 9}, floors) == {}
        assert behind({}, {"a": 1}) == {"a": 1}, "a cursor that never saw an origin holds none of it"
