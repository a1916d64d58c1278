"""Every refusal at a door carries a stable code and its fields beside its sentence
(core/changes.REFUSALS): exact values, one per code."""

from __future__ import annotations

import pytest

from server.core.changes import (
    REFUSALS,
    Refusal,
    check_change,
    quarantine_entry,
    record_refusal,
    refusal_answer,
    refusal_in,
    writes_of,
)
from server.core.clock import encode

NOW_MS = 1_893_456_000_000  # 2030-01-01T00:00:00Z
DAY_MS = 86_400_000
K = "k" * 50


def change(**over):
    base = {"origin": "dev-b", "seq": 1, "hlc": encode(NOW_MS, 0, "dev-b"), "kind": "lecture", "id": "l1",
            "courseId": "c1", "op": "upsert", "fields": {"title": "Elimination", "order": 1},
            "bases": {"title": "", "order": ""}}
    return {**base, **over}


@pytest.mark.parametrize("bad, code, detail", [
    ("not a change", "not_an_object", {}),
    ({k: v for k, v in change().items() if k not in ("hlc", "op")}, "missing_keys", {"keys": ["hlc", "op"]}),
    ({**change(), "extra": 1, K: 2}, "unknown_keys", {"keys": ["extra", K[:40]]}),
    ({**change(), "k\ud800": 1}, "unknown_keys", {"keys": ["k\\ud800"]}),
    (change(origin={"$ne": None}), "bad_origin", {}),
    (change(seq=0), "bad_seq", {}),
    (change(kind=K), "unknown_kind", {"kind": K[:40]}),
    (change(kind="course", courseId=None, id="../x"), "bad_id", {}),
    (change(courseId=None), "bad_course_id", {}),
    (change(op="merge"), "bad_op", {}),
    (change(hlc="soon"), "bad_stamp", {}),
    (change(hlc=encode(NOW_MS, 0, "someone-else")), "foreign_stamp", {}),
    (change(hlc=encode(NOW_MS + DAY_MS + 412_400, 0, "dev-b")), "clock_ahead",
     {"aheadSeconds": 86812, "limitSeconds": 86400}),
    (change(hlc=encode(NOW_MS + DAY_MS + 412_600, 0, "dev-b")), "clock_ahead",
     {"aheadSeconds": 86813, "limitSeconds": 86400}),
    (change(bases=["title"]), "bad_bases", {}),
    (change(fields={K: 1}, bases={K: "soon"}), "bad_base", {"field": K[:40]}),
    (change(fields="title"), "bad_fields", {}),
    (change(op="delete", fields={}, bases={}), "bad_delete", {}),
    (change(bases={"title": ""}), "bases_mismatch", {}),
    (change(fields={"order": "abc"}, bases={"order": ""}), "invalid_field", {"field": "order"}),
])
def test_a_refused_change_carries_its_code_and_fields(bad, code, detail):
    refusal = check_change(bad, now_ms=NOW_MS)
    assert refusal is not None and (refusal.code, refusal.detail) == (code, detail)
    assert refusal.fields() == {"code": code, **detail}
    assert set(detail) == set(REFUSALS[code]), "the table names the fields the code carries"


def test_the_clock_refusal_says_in_its_sentence_what_its_fields_say():
    refusal = check_change(change(hlc=encode(NOW_MS + DAY_MS + 1_000, 0, "dev-b")), now_ms=NOW_MS, max_skew_ms=300_000)
    assert refusal == Refusal("clock_ahead", "hlc is 86401 s ahead of this clock (the limit is 300 s)",
                              {"aheadSeconds": 86401, "limitSeconds": 300})


GOOD = {"kind": "course", "id": "c", "courseId": None, "fields": {"title": "t"},
        "clocks": {"title": "000000000000002-000000-a"}, "bases": {"title": ""}, "deleted": False, "dclock": "",
        "dbase": ""}


@pytest.mark.parametrize("state, code, message, detail", [
    ([], "record_shape",
     "a record is an object with exactly kind, id, courseId, fields, clocks, bases, deleted, dclock, dbase", {}),
    ({**GOOD, "deleted": 1}, "record_fields",
     "fields, clocks and bases name the same fields; deleted is true or false", {}),
    ({**GOOD, "deleted": True, "dclock": "000000000000003-000000-a"}, "tombstone_shape",
     "a tombstone keeps no fields and has the stamp of its delete", {}),
    ({**GOOD, "dbase": "000000000000001-000000-a"}, "live_with_delete_stamp", "a live record has no delete stamp", {}),
    ({**GOOD, "fields": {K: 1}, "clocks": {K: 7}, "bases": {K: ""}}, "bad_clock",
     f"clock of {K[:40]!r} is not a stamp", {"field": K[:40]}),
])
def test_a_record_that_is_no_merge_state_carries_its_code(state, code, message, detail):
    assert writes_of(state) == ([], Refusal(code, message, detail))
    assert set(detail) == set(REFUSALS[code])


def test_a_refused_record_names_its_problem_as_a_field():
    problem = Refusal("clock_ahead", "hlc is 9 s ahead of this clock (the limit is 1 s)",
                      {"aheadSeconds": 9, "limitSeconds": 1})
    assert record_refusal("a record a device gave back", problem) == Refusal(
        "bad_record", "a record a device gave back: hlc is 9 s ahead of this clock (the limit is 1 s)",
        {"problem": "clock_ahead", "aheadSeconds": 9, "limitSeconds": 1})


def test_a_quarantine_entry_keeps_the_code_and_fields_beside_the_reason():
    refusal = Refusal("invalid_field", "fields.order: must be an integer", {"field": "order"})
    entry = quarantine_entry(change(), refusal, "2030-01-01T00:00:00.000Z")
    assert {k: entry[k] for k in ("origin", "seq", "reason", "code", "field")} == {
        "origin": "dev-b", "seq": 1, "reason": "fields.order: must be an integer", "code": "invalid_field",
        "field": "order"}
    assert set(quarantine_entry(change(), "why", "t")) == {"id", "origin", "seq", "reason", "receivedAt", "change"}


def test_an_answer_names_the_refused_change_its_reason_code_and_fields():
    entry = quarantine_entry(change(seq=4), Refusal("bad_base", "base of 'title' is not a stamp before hlc",
                                                    {"field": "title"}), "t")
    assert refusal_answer(entry) == {"origin": "dev-b", "seq": 4, "reason": "base of 'title' is not a stamp before hlc",
                                     "code": "bad_base", "field": "title"}
    kept_before_codes = {"origin": None, "seq": None, "reason": "not an object", "receivedAt": "t", "change": "1"}
    assert refusal_answer(kept_before_codes) == {"origin": None, "seq": None, "reason": "not an object"}


def test_a_refusal_is_read_back_by_its_code_and_only_the_fields_it_carries():
    said = {"origin": "a", "seq": 1, "reason": "r", "code": "clock_ahead", "aheadSeconds": 9, "limitSeconds": 1,
            "field": "not one of its fields"}
    assert refusal_in(said) == Refusal("clock_ahead", "r", {"aheadSeconds": 9, "limitSeconds": 1})
    assert refusal_in({"reason": "r", "code": "something_newer", "more": 1}) == Refusal("something_newer", "r")
    assert refusal_in({"reason": "r", "code": 7}) is None
    assert refusal_in({"reason": "r"}) is None


def test_the_codes_and_their_fields_are_a_contract_never_renamed():
    assert REFUSALS == {
        "not_an_object": (), "missing_keys": ("keys",), "unknown_keys": ("keys",), "bad_origin": (), "bad_seq": (),
        "unknown_kind": ("kind",), "bad_id": (), "bad_course_id": (), "bad_op": (), "bad_stamp": (),
        "foreign_stamp": (), "clock_ahead": ("aheadSeconds", "limitSeconds"), "bad_bases": (),
        "bad_base": ("field",), "bad_fields": (), "bad_delete": (), "bases_mismatch": (), "invalid_field": ("field",),
        "record_shape": (), "record_fields": (), "tombstone_shape": (), "live_with_delete_stamp": (),
        "bad_clock": ("field",),
        "bad_record": ("problem", "kind", "keys", "field", "aheadSeconds", "limitSeconds"),
        "unclassified": (),
    }


def test_a_refused_record_is_read_back_with_its_problems_fields():
    said = {"reason": "r", "code": "bad_record", "problem": "unknown_keys", "keys": ["x"], "kind": "k", "field": "f",
            "aheadSeconds": 2, "limitSeconds": 1, "other": 0}
    assert refusal_in(said) == Refusal("bad_record", "r", {"problem": "unknown_keys", "keys": ["x"], "kind": "k",
                                                          "field": "f", "aheadSeconds": 2, "limitSeconds": 1})
