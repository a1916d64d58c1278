"""The merge rule as a pure function: exact outcomes, boundary by boundary.

Stamps here are small on purpose: t(1) < t(2) < ..., and "seen" means the winner's base is at
least the loser's stamp."""

from __future__ import annotations

import copy

import pytest

from server.core.clock import ZERO, encode
from server.core.merge import DELETED, Outcome, apply_change, cascade_delete, max_clock, new_state


def t(n: int, device: str = "x") -> str:
    return encode(1000 + n, 0, device)


def upsert(hlc, fields, bases=None, kind="lecture", rid="l1", cid="c1"):
    return {"origin": "o", "seq": 1, "hlc": hlc, "kind": kind, "id": rid, "courseId": cid, "op": "upsert",
            "fields": fields, "bases": bases if bases is not None else dict.fromkeys(fields, ZERO)}


def delete(hlc, base, kind="lecture", rid="l1", cid="c1"):
    return {"origin": "o", "seq": 1, "hlc": hlc, "kind": kind, "id": rid, "courseId": cid, "op": "delete",
            "fields": {}, "bases": {"*": base}}


def live(fields, clocks, bases=None, kind="lecture", rid="l1", cid="c1"):
    return {**new_state(kind, rid, cid), "fields": dict(fields), "clocks": dict(clocks),
            "bases": bases if bases is not None else dict.fromkeys(fields, ZERO)}


def tomb(dclock, dbase, kind="lecture", rid="l1", cid="c1"):
    return {**new_state(kind, rid, cid), "deleted": True, "dclock": dclock, "dbase": dbase}


def conflict(field, local, local_hlc, remote, remote_hlc, winner, reason, kind="lecture", rid="l1", cid="c1"):
    return {"kind": kind, "recordId": rid, "courseId": cid, "field": field, "localValue": local,
            "localHlc": local_hlc, "remoteValue": remote, "remoteHlc": remote_hlc, "winner": winner,
            "reason": reason}


def test_a_new_state_is_empty_and_live():
    assert new_state("lecture", "l1", "c1") == {
        "kind": "lecture", "id": "l1", "courseId": "c1", "fields": {}, "clocks": {}, "bases": {},
        "deleted": False, "dclock": ZERO, "dbase": ZERO}
    assert Outcome(None) == Outcome(None, False, [])


def test_the_newest_clock_of_a_record_counts_fields_and_the_delete():
    assert max_clock(new_state("course", "c", None)) == ZERO
    assert max_clock(live({"a": 1, "b": 2}, {"a": t(3), "b": t(5)})) == t(5)
    assert max_clock({**live({"a": 1}, {"a": t(3)}), "dclock": t(4)}) == t(4)


class TestUpserts:
    def test_a_first_write_makes_the_record(self):
        out = apply_change(None, upsert(t(1), {"title": "A", "order": 2}, {"title": ZERO, "order": t(0)}))
        assert out == Outcome(live({"title": "A", "order": 2}, {"title": t(1), "order": t(1)},
                                   {"title": ZERO, "order": t(0)}), True, [])

    def test_the_same_change_twice_changes_nothing(self):
        change = upsert(t(1), {"title": "A"})
        first = apply_change(None, change)
        assert apply_change(first.state, change) == Outcome(first.state, False, [])

    def test_the_input_state_is_never_modified(self):
        state = live({"title": "A"}, {"title": t(1)})
        before = copy.deepcopy(state)
        apply_change(state, upsert(t(2), {"title": "B"}))
        apply_change(state, delete(t(3), t(1)))
        assert state == before

    def test_a_newer_write_its_author_had_not_seen_beat_records_the_loser(self):
        out = apply_change(live({"title": "A", "note": "n"}, {"title": t(2), "note": t(2)}),
                           upsert(t(3), {"title": "B"}, {"title": t(1)}))
        assert out.state["fields"] == {"title": "B", "note": "n"}
        assert out.state["clocks"] == {"title": t(3), "note": t(2)}
        assert out.state["bases"] == {"title": t(1), "note": ZERO}
        assert out.changed is True
        assert out.conflicts == [conflict("title", "A", t(2), "B", t(3), "remote", "newer_write")]

    @pytest.mark.parametrize("base", [2, 3])  # the author had seen the value it overwrote
    def test_a_newer_write_over_a_value_its_author_had_seen_is_no_conflict(self, base):
        out = apply_change(live({"title": "A"}, {"title": t(2)}), upsert(t(4), {"title": "B"}, {"title": t(base)}))
        assert (out.state["fields"], out.changed, out.conflicts) == ({"title": "B"}, True, [])

    def test_a_newer_write_of_the_same_value_is_no_conflict_but_takes_the_clock(self):
        out = apply_change(live({"title": "A"}, {"title": t(2)}), upsert(t(3), {"title": "A"}))
        assert (out.state["clocks"], out.changed, out.conflicts) == ({"title": t(3)}, True, [])

    def test_an_older_write_the_local_writer_had_not_seen_loses_and_is_recorded(self):
        state = live({"title": "A"}, {"title": t(3)}, {"title": t(1)})
        out = apply_change(state, upsert(t(2), {"title": "B"}))
        assert out == Outcome(state, False, [conflict("title", "A", t(3), "B", t(2), "local", "newer_write")])

    @pytest.mark.parametrize("base", [2, 3])
    def test_an_older_write_the_local_writer_had_seen_loses_quietly(self, base):
        state = live({"title": "A"}, {"title": t(4)}, {"title": t(base)})
        assert apply_change(state, upsert(t(2), {"title": "B"})) == Outcome(state, False, [])

    def test_an_older_write_of_the_same_value_loses_quietly(self):
        state = live({"title": "A"}, {"title": t(3)})
        assert apply_change(state, upsert(t(2), {"title": "A"})) == Outcome(state, False, [])

    def test_ties_of_time_go_to_the_higher_device_id(self):
        state = live({"title": "A"}, {"title": t(2, "a")})
        out = apply_change(state, upsert(t(2, "b"), {"title": "B"}))
        assert out.state["fields"] == {"title": "B"} and out.conflicts[0]["winner"] == "remote"
        back = apply_change(out.state, upsert(t(2, "a"), {"title": "A"}))
        assert back.state["fields"] == {"title": "B"} and back.conflicts[0]["winner"] == "local"

    def test_different_fields_both_survive(self):
        out = apply_change(live({"title": "A"}, {"title": t(5)}), upsert(t(3), {"note": "n"}))
        assert out.state["fields"] == {"title": "A", "note": "n"} and out.conflicts == []

    @pytest.mark.parametrize("field", ["createdAt", "updatedAt"])
    def test_timestamps_merge_like_fields_but_are_never_conflicts(self, field):
        state = live({field: "2030-01-01T00:00:02Z"}, {field: t(2)})
        newer = apply_change(state, upsert(t(3), {field: "2030-01-01T00:00:03Z"}))
        assert newer.state["fields"] == {field: "2030-01-01T00:00:03Z"} and newer.conflicts == []
        older = apply_change(state, upsert(t(1), {field: "2030-01-01T00:00:01Z"}))
        assert older == Outcome(state, False, [])


class TestDeletes:
    def test_a_delete_tombstones_and_records_what_its_author_had_not_seen(self):
        state = live({"title": "A", "note": "n", "order": 1, "updatedAt": "u"},
                     {"title": t(2), "note": t(3), "order": t(4), "updatedAt": t(4)})
        out = apply_change(state, delete(t(5), t(3)))
        assert out == Outcome(tomb(t(5), t(3)), True, [conflict("order", 1, t(4), DELETED, t(5), "remote", "deleted")])

    def test_a_delete_of_a_record_never_seen_leaves_a_tombstone(self):
        assert apply_change(None, delete(t(2), t(1))) == Outcome(tomb(t(2), t(1)), True, [])

    def test_two_deletes_keep_the_newest_clock_and_all_that_was_seen_in_either_order(self):
        first, second = delete(t(5), t(1)), delete(t(4), t(3))
        one = apply_change(apply_change(None, first).state, second)
        other = apply_change(apply_change(None, second).state, first)
        assert one == Outcome(tomb(t(5), t(3)), True, [])
        assert other == Outcome(tomb(t(5), t(3)), True, [])

    def test_a_delete_already_applied_changes_nothing(self):
        state = tomb(t(5), t(3))
        assert apply_change(state, delete(t(5), t(3))) == Outcome(state, False, [])
        assert apply_change(state, delete(t(4), t(2))) == Outcome(state, False, [])

    def test_a_write_to_a_deleted_record_is_dropped_and_recorded_if_no_deleter_had_seen_it(self):
        state = tomb(t(5), t(2))
        out = apply_change(state, upsert(t(3), {"title": "B", "updatedAt": "u"}))
        assert out == Outcome(state, False, [conflict("title", DELETED, t(5), "B", t(3), "local", "deleted")])

    @pytest.mark.parametrize("hlc", [1, 2])
    def test_a_write_a_deleter_had_seen_is_dropped_quietly(self, hlc):
        state = tomb(t(5), t(2))
        assert apply_change(state, upsert(t(hlc), {"title": "B"})) == Outcome(state, False, [])


class TestChildrenOfADeletedCourse:
    course = tomb(t(6), t(3), kind="course", rid="c1", cid=None)

    def test_a_new_child_becomes_a_tombstone_and_its_unseen_values_are_recorded(self):
        out = apply_change(None, upsert(t(4), {"title": "B", "createdAt": "c"}), self.course)
        assert out == Outcome(tomb(t(6), t(3)), True, [conflict("title", DELETED, t(6), "B", t(4), "local", "deleted")])

    @pytest.mark.parametrize("hlc", [2, 3])
    def test_a_new_child_the_deleter_had_seen_becomes_a_tombstone_quietly(self, hlc):
        assert apply_change(None, upsert(t(hlc), {"title": "B"}), self.course) == Outcome(tomb(t(6), t(3)), True, [])

    def test_a_live_child_loses_its_unseen_values_to_the_course_delete_too(self):
        child = live({"title": "A", "note": "n"}, {"title": t(2), "note": t(4)})
        out = apply_change(child, upsert(t(5), {"order": 3}), self.course)
        assert out == Outcome(tomb(t(6), t(3)), True, [
            conflict("note", "n", t(4), DELETED, t(6), "remote", "deleted"),
            conflict("order", DELETED, t(6), 3, t(5), "local", "deleted"),
        ])

    def test_a_deleted_child_keeps_the_larger_of_both_deletes(self):
        child = tomb(t(7), t(1))
        out = apply_change(child, upsert(t(2), {"title": "B"}), self.course)
        assert out == Outcome(tomb(t(7), t(3)), True, [])

    def test_a_live_course_changes_nothing(self):
        course = live({"title": "C"}, {"title": t(1)}, kind="course", rid="c1", cid=None)
        change = upsert(t(4), {"title": "B"})
        assert apply_change(None, change, course) == apply_change(None, change)

    def test_a_childs_own_delete_is_applied_as_usual(self):
        child = live({"title": "A"}, {"title": t(4)})
        assert apply_change(child, delete(t(8), t(2)), self.course) == apply_change(child, delete(t(8), t(2)))


class TestCascade:
    course = tomb(t(6), t(3), kind="course", rid="c1", cid=None)

    def test_a_course_delete_tombstones_a_live_child_and_records_its_unseen_values(self):
        child = live({"title": "A", "note": "n"}, {"title": t(3), "note": t(4)})
        before = copy.deepcopy(child)
        out = cascade_delete(child, self.course)
        assert out == Outcome(tomb(t(6), t(3)), True, [conflict("note", "n", t(4), DELETED, t(6), "remote", "deleted")])
        assert child == before

    def test_a_course_delete_reaching_a_deleted_child_keeps_the_newest_of_both(self):
        assert cascade_delete(tomb(t(2), t(4)), self.course) == Outcome(tomb(t(6), t(4)), True, [])
        assert cascade_delete(tomb(t(6), t(3)), self.course) == Outcome(tomb(t(6), t(3)), False, [])


class TestEachFieldOnItsOwn:
    def test_a_field_that_loses_does_not_stop_the_fields_after_it(self):
        out = apply_change(live({"title": "A"}, {"title": t(5)}), upsert(t(3), {"title": "B", "note": "n"}))
        assert out.state["fields"] == {"title": "A", "note": "n"}
        assert out.state["clocks"] == {"title": t(5), "note": t(3)}

    def test_a_field_already_applied_does_not_stop_the_fields_after_it(self):
        # X wrote note and title; Y, which had not seen X, overwrote title. X arrives again.
        state = live({"note": "n", "title": "Y"}, {"note": t(2), "title": t(3)})
        out = apply_change(state, upsert(t(2), {"note": "n", "title": "X"}))
        assert out == Outcome(state, False, [conflict("title", "Y", t(3), "X", t(2), "local", "newer_write")])
