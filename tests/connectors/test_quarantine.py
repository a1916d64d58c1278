"""Changes from someone else are checked at the door: one that fails is quarantined with its
reason, never applied, never moves a clock, and never stops the changes around it."""

from __future__ import annotations

import datetime as dt
import hashlib

import orjson
import pytest
from freezegun import freeze_time

from server.connectors.factory import get_db_connector
from server.core.changes import (
    QUARANTINE_BODY_MAX,
    Refusal,
    at_the_door,
    check_change,
    is_slot_filler_of,
    quarantine_entry,
    slot_filler,
)
from server.core.clock import encode
from server.core.config import Settings
from tests.synckit import World, course

NOW_MS = 1_893_456_000_000  # 2030-01-01T00:00:00Z
FOREIGN = Refusal("foreign_stamp", "hlc was not stamped by its origin")
DAY_MS = 86_400_000


def change(**over):
    base = {"origin": "dev-b", "seq": 1, "hlc": encode(NOW_MS, 0, "dev-b"), "kind": "lecture", "id": "l1",
            "courseId": "c1", "op": "upsert", "fields": {"title": "Elimination", "order": 1},
            "bases": {"title": "", "order": ""}}
    return {**base, **over}


def test_a_well_formed_change_passes():
    assert check_change(change(), now_ms=NOW_MS) is None
    assert check_change(change(op="delete", fields={}, bases={"*": encode(NOW_MS - 1, 0, "x")}), now_ms=NOW_MS) is None
    assert check_change(change(hlc=encode(NOW_MS + DAY_MS, 0, "dev-b")), now_ms=NOW_MS) is None  # the limit itself


LONG = "k" * 50


@pytest.mark.parametrize("bad, reason", [
    ("not a change", "not an object"),
    ({k: v for k, v in change().items() if k != "hlc"}, "missing keys ['hlc']"),
    ({**change(), "extra": 1}, "unknown keys ['extra']"),
    (change(hlc="999999999999999-999999-dev-b"), "hlc is 998106544000 s ahead of this clock (the limit is 86400 s)"),
    (change(hlc=encode(4_102_444_800_000, 0, "dev-b")),  # the year 2100
     "hlc is 2208988800 s ahead of this clock (the limit is 86400 s)"),
    (change(hlc=encode(NOW_MS + DAY_MS + 1, 0, "dev-b")), "hlc is 86400 s ahead of this clock (the limit is 86400 s)"),
    (change(hlc="1893456000000-0-dev-b"), "hlc is not a clock stamp"),
    (change(hlc=encode(NOW_MS, 0, "someone-else")), "hlc was not stamped by its origin"),
    (change(fields="title"), "fields is not an object"),
    (change(bases=["title", "order"]), "bases is not an object"),
    (change(fields={"order": "abc"}, bases={"order": ""}), "fields.order: must be an integer"),
    (change(fields={"title": 5}, bases={"title": ""}), "fields.title: must be a string"),
    (change(fields={"durationMinutes": -5}, bases={"durationMinutes": ""}),
     "fields.durationMinutes: must be at least 1"),
    (change(fields={"status": "lost"}, bases={"status": ""}),
     "fields.status: must be one of: not_started, in_progress, completed"),
    (change(fields={"colour": "red"}, bases={"colour": ""}), "fields.colour: unknown field"),
    (change(kind="course", courseId=None, id="c1", fields={"tags": "not-a-list"}, bases={"tags": ""}),
     "fields.tags: must be a list of at most 100 strings"),
    (change(kind="course", courseId=None, id="c1", fields={"source": "javascript:alert(1)"}, bases={"source": ""}),
     "fields.source: must be an http or https URL (spaces and non-ASCII characters percent-encoded)"),
    (change(kind="course", courseId=None, id="../../etc"), "id is not a record id"),
    (change(kind="planet"), "unknown kind 'planet'"),
    (change(kind=LONG), f"unknown kind {LONG[:40]!r}"),
    (change(courseId=None), "courseId does not fit the kind"),
    (change(kind="course", id="c1"), "courseId does not fit the kind"),
    (change(op="merge"), "op is neither upsert nor delete"),
    (change(seq=0), "seq is not a positive integer"),
    (change(seq=2**53), "seq is not a positive integer"),
    (change(seq="1"), "seq is not a positive integer"),
    (change(seq=True), "seq is not a positive integer"),
    (change(origin={"$ne": None}), "origin is not a device id"),
    (change(bases={"title": ""}), "bases do not name the fields written"),
    (change(bases={"title": encode(NOW_MS + 5, 0, "x"), "order": ""}), "base of 'title' is not a stamp before hlc"),
    (change(bases={"title": encode(NOW_MS, 0, "dev-b"), "order": ""}), "base of 'title' is not a stamp before hlc"),
    (change(bases={"title": "yesterday", "order": ""}), "base of 'title' is not a stamp before hlc"),
    (change(fields={LONG: 1}, bases={LONG: "soon"}), f"base of {LONG[:40]!r} is not a stamp before hlc"),
    (change(op="delete", fields={"title": "x"}, bases={"*": ""}), "a delete carries no fields and one base, *"),
])
def test_a_change_that_fails_a_check_says_exactly_why(bad, reason):
    refusal = check_change(bad, now_ms=NOW_MS)
    assert refusal is not None and refusal.message == reason


def test_the_largest_sequence_number_and_the_newest_base_pass():
    assert check_change(change(seq=2**53 - 1), now_ms=NOW_MS) is None
    assert check_change(change(bases={"title": encode(NOW_MS - 1, 999_999, "x"), "order": ""}), now_ms=NOW_MS) is None


def test_a_quarantine_entry_keeps_the_change_whatever_it_holds():
    entry = quarantine_entry(change(seq=2), "why", "2030-01-01T00:00:00.000Z")
    assert entry == {"id": hashlib.sha256(b"dev-b#2").hexdigest()[:24], "origin": "dev-b", "seq": 2, "reason": "why",
                     "receivedAt": "2030-01-01T00:00:00.000Z", "change": orjson.dumps(change(seq=2)).decode()}
    odd = quarantine_entry({"origin": 7, "seq": "2", 1: b"x", "when": dt.date(2030, 1, 1)}, "r", "t")
    assert (odd["origin"], odd["seq"]) == (None, None)
    assert odd["change"] == '{"origin":7,"seq":"2","1":"b\'x\'","when":"2030-01-01"}'
    assert odd["id"] == hashlib.sha256(odd["change"].encode()).hexdigest()[:24]
    text = quarantine_entry("x" * 30_000, "r", "t")
    whole = hashlib.sha256(orjson.dumps("x" * 30_000)).hexdigest()
    assert (text["origin"], text["seq"]) == (None, None)
    assert text["change"] == '"' + "x" * (QUARANTINE_BODY_MAX - 1) + f"... (30002 bytes in all, sha256 {whole})"
    short = quarantine_entry("x" * 1023, "r", "t", keep=1025)
    assert short["change"] == '"' + "x" * 1023 + '"', "a body of exactly `keep` characters is kept whole"
    cut = quarantine_entry("x" * 1024, "r", "t", keep=1025)
    assert cut["change"].startswith('"' + "x" * 1024 + "... (1026 bytes in all, sha256 ")
    no_seq = quarantine_entry({"origin": "dev-b"}, "r", "t")
    assert (no_seq["origin"], no_seq["seq"]) == ("dev-b", None)
    assert no_seq["id"] == hashlib.sha256(b'{"origin":"dev-b"}').hexdigest()[:24]
    lone = quarantine_entry({"origin": "d\udb9b", "seq": 1, "t\ud800": "\udfff"}, "r", "t")
    assert (lone["origin"], lone["seq"]) == (None, 1)
    assert lone["change"] == '{"origin":"d\\udb9b","seq":1,"t\\ud800":"\\udfff"}'
    assert lone["id"] == hashlib.sha256(lone["change"].encode()).hexdigest()[:24]
    assert quarantine_entry({"origin": "not an id!", "seq": 1}, "r", "t")["origin"] is None
    both = quarantine_entry({"t\ud800": b"x", "when": dt.date(2030, 1, 1)}, "r", "t")  # escaped, and repr'd
    assert both["change"] == '{"t\\ud800":"b\'x\'","when":"datetime.date(2030, 1, 1)"}'
    no_origin = quarantine_entry({"seq": 3}, "r", "t")
    assert (no_origin["origin"], no_origin["seq"], no_origin["id"]) == (
        None, 3, hashlib.sha256(b'{"seq":3}').hexdigest()[:24])


@pytest.fixture
def store(tmp_path):
    conn = get_db_connector("sql", Settings(), path=str(tmp_path / "s.sqlite3"), user_id="u", origin="dev-a")
    conn.connect()
    yield conn
    conn.close()


def good_course(seq: int, cid: str, ms: int = NOW_MS) -> dict:
    return {"origin": "dev-b", "seq": seq, "hlc": encode(ms, 0, "dev-b"), "kind": "course", "id": cid,
            "courseId": None, "op": "upsert", "fields": {"title": cid, "source": "https://a.b"},
            "bases": {"title": "", "source": ""}}


def test_a_bad_change_in_a_batch_is_quarantined_and_the_rest_applied(store):
    poisoned = {**good_course(2, "c2"), "hlc": "999999999999999-999999-dev-b"}
    with freeze_time("2030-01-01T00:00:01Z"):
        before = store.clock.last
        result = store.apply_changes([good_course(1, "c1"), poisoned, good_course(3, "c3")])
        assert result["applied"] == 2 and [(q["origin"], q["seq"]) for q in result["quarantined"]] == [("dev-b", 2)]
        assert [c["id"] for c in store.get_courses()] == ["c1", "c3"]
        assert store.clock.last <= encode(NOW_MS + 1000, 0, "dev-a") and store.clock.last >= before
        [entry] = store.list_quarantine()
        assert (entry["origin"], entry["seq"], entry["receivedAt"]) == ("dev-b", 2, "2030-01-01T00:00:01.000Z")
        assert entry["reason"].startswith("hlc is ") and "999999999999999" in entry["change"]
        store.apply_changes([poisoned])  # again: still one entry
        assert store.count_quarantine() == 1
        mine = store.update("course", None, "c1", {"title": "edited"})  # the clock was never poisoned
        assert mine["updatedAt"] == "2030-01-01T00:00:01.000Z"


@pytest.mark.parametrize("hub_kind", ["mongomock", "sqlite"])
def test_a_malformed_change_on_the_hub_wedges_no_device(tmp_path, hub_kind):
    world = World(tmp_path, hub_kind)
    try:
        with freeze_time("2030-01-01T00:00:00Z") as frozen:
            course(world.device("a"), id="before")
            world.settle(["a"])
            hub = world.hub
            broken = [{**good_course(1, "x1"), "origin": "evil", "hlc": encode(NOW_MS, 0, "evil"),
                       "fields": "not an object"},
                      {**good_course(2, "x2"), "origin": "evil", "hlc": "999999999999999-999999-evil"}]
            hub.backend.persist(broken, [], [], own=False, bookmarks=None)  # as a hostile writer could
            frozen.tick(dt.timedelta(seconds=1))
            course(world.device("a"), id="after")
            world.settle(["a", "b"])
            b = world.device("b")
            assert [c["id"] for c in b.get_courses()] == ["before", "after"]
            assert {(q["origin"], q["seq"]) for q in b.list_quarantine()} == {("evil", 1), ("evil", 2)}
            report = world.sync("b")
            assert (report.error, report.quarantined) == (None, 0)  # passed, not pulled again
            edited = b.update("course", None, "after", {"title": "still mine"})
            assert edited["updatedAt"].startswith("2030-01-01")
    finally:
        world.close()


def test_a_change_the_hub_refuses_is_kept_on_the_device_and_the_queue_goes_on(tmp_path):
    world = World(tmp_path, "mongomock")
    try:
        a, b = world.device("a"), world.device("b")
        with freeze_time("2030-01-01T00:00:00Z"):
            course(a, id="on-time")
        with freeze_time("2030-01-03T00:00:00Z"):  # then this device's clock runs two days fast
            course(a, id="from-the-future")
        with freeze_time("2030-01-01T00:01:00Z"):
            report = world.sync("a")
            assert (report.error, report.pushed, report.quarantined) == (None, 1, 1)
            [kept] = a.list_quarantine()
            assert kept["reason"].startswith("refused by the hub: hlc is 172740 s ahead")
            assert (kept["origin"], kept["seq"]) == ("a", 2)
            assert world.sync("a").pushed_sent == 0  # the queue moved past it
            world.settle(["b"])
            assert [c["id"] for c in b.get_courses()] == ["on-time"]
    finally:
        world.close()


def test_the_quarantine_is_listed_by_the_api_and_counted_in_the_status(client, connector):
    with freeze_time("2030-01-01T00:00:00Z"):
        connector.apply_changes([{**good_course(1, "c1"), "kind": "planet"}])
    body = client.get("/api/v1/sync/quarantine").get_json()["data"]
    assert [(q["origin"], q["seq"], q["reason"]) for q in body] == [("dev-b", 1, "unknown kind 'planet'")]
    assert client.get("/api/v1/sync/status").get_json()["data"]["quarantined"] == 1
    assert client.get("/api/v1/sync/quarantine?limit=0").status_code == 400


@pytest.mark.parametrize("hub_kind", ["mongomock", "sqlite"])
def test_a_refused_change_leaves_no_gap_that_would_hide_the_changes_after_it(tmp_path, hub_kind):
    world = World(tmp_path, hub_kind)
    try:
        a, b = world.device("a"), world.device("b")
        with freeze_time("2030-01-01T00:00:00Z"):
            course(a, id="first")
        with freeze_time("2030-01-03T00:00:00Z"):  # the clock runs two days fast for one edit
            course(a, id="ahead")
        with freeze_time("2030-01-01T01:00:00Z"):
            assert world.sync("a").quarantined == 1  # the hub refused seq 2
        with freeze_time("2030-01-01T02:00:00Z"):  # the clock is right again
            course(a, id="later")  # seq 3, stamped past seq 2 (the clock never goes back): refused too
            assert world.sync("a").error is None
            world.settle(["b"])
            assert [c["id"] for c in b.get_courses()] == ["first"]
            # The refused edits stay on the device that made them, listed in its quarantine.
            assert [c["id"] for c in a.get_courses()] == ["first", "ahead", "later"]
            assert [(q["origin"], q["seq"]) for q in a.list_quarantine()] == [("a", 3), ("a", 2)]
        with freeze_time("2030-01-03T00:05:00Z"):  # real time has caught up with those stamps
            course(a, id="after")  # seq 4
            report = world.sync("a")
            assert (report.error, report.resent, report.quarantined) == (None, 2, 0)  # as seq 5 and 6
            world.settle(["b"])
            assert {c["id"] for c in b.get_courses()} == {"first", "ahead", "later", "after"}
            pulled = b.changes_since({"b": 0}, 10, exclude_origin="b")
            assert b.list_quarantine() == [] and [c["seq"] for c in pulled] == [1, 2, 3, 4, 5, 6]
            assert [is_slot_filler_of(c["hlc"], "a") for c in pulled] == [False, True, True, False, False, False]
            assert a.list_quarantine() == []
            assert {c["id"] for c in world.hub.get_courses()} == {"first", "ahead", "later", "after"}
    finally:
        world.close()


def test_a_slot_filler_is_a_valid_change_that_changes_nothing_and_moves_no_clock():
    filler = slot_filler(change(seq=7, fields="broken"), "learner")
    assert filler == {"origin": "dev-b", "seq": 7, "hlc": "000000000000000-000000-dev-b", "kind": "user",
                      "id": "learner", "courseId": None, "op": "upsert", "fields": {}, "bases": {}}
    assert check_change(filler, now_ms=NOW_MS) is None
    assert slot_filler(change(seq=2**53 - 1), "u")["seq"] == 2**53 - 1
    assert slot_filler(change(seq=1), "u")["seq"] == 1
    for unreadable in ["x", change(origin="a b"), change(origin=5), change(seq=0), change(seq=2**53),
                       change(seq="7"), change(seq=True), {"seq": 7}]:
        assert slot_filler(unreadable, "learner") is None


def test_the_door_sorts_a_batch_into_passed_refused_and_fillers():
    good, bad, unreadable = change(seq=1), change(seq=2, op="merge"), "garbage"
    passed, refused, fillers = at_the_door([good, bad, unreadable], now_ms=NOW_MS, max_skew_ms=DAY_MS, user_id="u")
    assert passed == [good]
    assert [(q["origin"], q["seq"], q["reason"], q["receivedAt"]) for q in refused] == [
        ("dev-b", 2, "op is neither upsert nor delete", "2030-01-01T00:00:00.000Z"),
        (None, None, "not an object", "2030-01-01T00:00:00.000Z")]
    assert fillers == [slot_filler(bad, "u")]
    assert at_the_door([change(hlc=encode(NOW_MS + 2000, 0, "dev-b"))], now_ms=NOW_MS, max_skew_ms=1000,
                       user_id="u")[0] == []
    _, [kept], _ = at_the_door([{"origin": "dev-b", "seq": 1, "note": "x" * 500}], now_ms=NOW_MS, max_skew_ms=1000,
                               user_id="u", keep=40)
    assert kept["change"].startswith('{"origin":"dev-b","seq":1,"note":"xxxxx') and len(kept["change"]) < 150


def test_documents_written_into_the_mongo_hub_by_hand_stop_no_reader(tmp_path):
    world = World(tmp_path, "mongomock")
    try:
        with freeze_time("2030-01-01T00:00:00Z"):
            course(world.device("a"), id="c1")
            world.settle(["a"])
            hub = world.hub
            hub.db.origins.insert_many([{"userId": "learner", "origin": {"$ne": None}, "maxSeq": 3},
                                        {"userId": "learner", "origin": "x", "maxSeq": "lots"}])
            hub.db.changes.insert_one({"userId": "learner", "origin": "a", "seq": "2"})
            fresh = world.new_hub_connector()  # connecting repairs tails: it must pass them over
            assert fresh.pending_since({}) == (1, fresh.changes_since({}, 10)[0]["hlc"])
            world.settle(["b"])
            assert [c["id"] for c in world.device("b").get_courses()] == ["c1"]
    finally:
        world.close()


def test_a_reason_names_at_most_five_unknown_keys_each_cut_to_forty_characters():
    five = {**change(), **{f"k{n}": 1 for n in range(5)}}
    five_named = ["k0", "k1", "k2", "k3", "k4"]
    assert check_change(five, now_ms=NOW_MS) == Refusal("unknown_keys", f"unknown keys {five_named}",
                                                        {"keys": five_named})
    six = {**change(), **{f"k{n}": 1 for n in range(6)}, "x" * 8_000_000: 1}
    assert check_change(six, now_ms=NOW_MS) == Refusal("unknown_keys", f"unknown keys {five_named} and 2 more",
                                                       {"keys": five_named})
    huge = {**change(), "y" * 8_000_000: 1}
    assert check_change(huge, now_ms=NOW_MS) == Refusal("unknown_keys", f"unknown keys [{'y' * 40!r}]",
                                                        {"keys": ["y" * 40]})


def test_a_kept_reason_is_at_most_its_limit_in_bytes_whatever_it_quotes():
    from server.core.changes import REASON_MAX

    assert quarantine_entry({}, "r" * REASON_MAX, "t")["reason"] == "r" * REASON_MAX, "exactly the limit: whole"
    assert quarantine_entry({}, "r" * (REASON_MAX + 1), "t")["reason"] == "r" * REASON_MAX + "..."
    # A character of several bytes across the limit is left out whole, never cut in two.
    wide = quarantine_entry({}, "r" * (REASON_MAX - 1) + "é" + "r", "t")["reason"]
    assert wide == "r" * (REASON_MAX - 1) + "..."
    assert quarantine_entry({}, "key 't\ud800'", "t")["reason"] == "key 't\\ud800'", "a lone surrogate, escaped"
    assert quarantine_entry({}, "écrit", "t")["reason"] == "écrit"


def test_a_kept_change_is_cut_in_bytes_never_inside_a_character():
    body = orjson.dumps("é" * 10).decode()  # 22 bytes: two quotes and ten two-byte characters
    digest = hashlib.sha256(body.encode()).hexdigest()
    assert quarantine_entry("é" * 10, "r", "t", keep=22)["change"] == body
    cut = quarantine_entry("é" * 10, "r", "t", keep=20)["change"]
    assert cut == f'"{"é" * 9}... (22 bytes in all, sha256 {digest})'
    assert quarantine_entry("é" * 10, "r", "t", keep=4)["change"].startswith('"é... (22 bytes')


@pytest.mark.parametrize("hub_kind", ["mongomock", "sqlite"])
def test_a_hubs_quarantine_keeps_so_many_refusals_in_so_many_bytes(tmp_path, hub_kind):
    from server.connectors.shared.backend import entry_bytes

    world = World(tmp_path, hub_kind)
    try:
        hub = world.hub
        hub.quarantine_keep, hub.quarantine_cap, hub.quarantine_cap_bytes = 1024, 6, None
        with freeze_time("2030-01-01T00:00:00Z"):
            worst = [{**good_course(n, f"c{n}"), "x" * 1_000_000: "y" * 1_000_000} for n in range(1, 5)]
            result = hub.apply_changes(worst)
            assert len(result["quarantined"]) == 4, "the sender hears of every refusal"
            kept = hub.list_quarantine()
            assert len(kept) == 4 and all(entry_bytes(q) < 2048 for q in kept), "each row about 2 KB at most"
            assert hub.backend.ledgers.quarantine_held() == (4, sum(map(entry_bytes, kept)))
            hub.quarantine_cap_bytes = sum(map(entry_bytes, kept)) + 10  # no room for one more in bytes
            hub.apply_changes([{**good_course(n, f"c{n}"), "extra": 1} for n in range(5, 8)])
            assert hub.count_quarantine() == 4
            hub.quarantine_cap_bytes = None  # the rows cap: 6
            hub.apply_changes([{**good_course(n, f"c{n}"), "extra": 1} for n in range(8, 11)])
            assert hub.count_quarantine() == 6
    finally:
        world.close()


def test_two_mongo_hub_processes_that_pass_the_cap_at_once_store_no_more_than_it(tmp_path):
    """Without a transaction both may count before either stores: each counts again after
    storing and takes back what it stored if the two went over."""
    world = World(tmp_path, "mongomock")
    try:
        first, second = world.new_hub_connector(), world.new_hub_connector()
        for hub in (first, second):
            hub.quarantine_keep, hub.quarantine_cap, hub.quarantine_cap_bytes = 1024, 3, None
        with freeze_time("2030-01-01T00:00:00Z"):
            refusals = [quarantine_entry({"n": n}, "r", "t", 1024) for n in range(6)]
            first.backend.persist([], [], [], own=False, bookmarks=None, quarantined=refusals[:3])
            second.backend.persist([], [], [], own=False, bookmarks=None, quarantined=refusals[3:])  # counted first
            assert first.count_quarantine() == 3
            first.backend.persist([], [], [], own=False, bookmarks=None, quarantined=refusals[:3])  # stored already
            assert first.count_quarantine() == 3
    finally:
        world.close()


@pytest.mark.parametrize("hub_kind", ["mongomock", "sqlite"])
def test_a_heal_and_a_push_at_once_do_not_pass_the_cap_together(tmp_path, hub_kind):
    import threading

    world = World(tmp_path, hub_kind)
    try:
        stores = [world.new_hub_connector(), world.new_hub_connector()]
        for hub in stores:
            hub.quarantine_keep, hub.quarantine_cap, hub.quarantine_cap_bytes = 1024, 50, None
        bad_records = [{"kind": "course", "id": f"r{n}"} for n in range(40)]
        bad_changes = [{**good_course(n, f"c{n}"), "op": "merge"} for n in range(1, 41)]
        start = threading.Barrier(2)

        def heal():
            start.wait()
            stores[0].heal(bad_records)

        def push():
            start.wait()
            stores[1].apply_changes(bad_changes)

        with freeze_time("2030-01-01T00:00:00Z"):
            threads = [threading.Thread(target=heal), threading.Thread(target=push)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        # Never over the cap (on MongoDB, without a transaction, both may give way: then none is kept).
        assert world.hub.count_quarantine() <= 50
    finally:
        world.close()


def test_only_a_heal_origins_change_pulled_from_a_hub_may_carry_another_origins_stamp():
    from server.core.changes import is_heal_origin

    carried = change(origin="h0123456789ab")  # stamped by dev-b: a write a hub logged of a heal
    assert check_change(carried, now_ms=NOW_MS) == FOREIGN, "pushed: never"
    assert check_change(carried, now_ms=NOW_MS, carried=True) is None
    for origin in ("dev-c", "h0123456789a", "h0123456789abc", "H0123456789ab", "h0123456789ag", "xh0123456789ab"):
        assert not is_heal_origin(origin)
        assert check_change(change(origin=origin), now_ms=NOW_MS, carried=True) == FOREIGN
    assert is_heal_origin("h0123456789ab") and not is_heal_origin(None) and not is_heal_origin("h0123456789ab\n")
    passed, refused, _ = at_the_door([carried], now_ms=NOW_MS, max_skew_ms=DAY_MS, user_id="u", carried=True)
    assert (passed, refused) == ([carried], [])
    passed, refused, _ = at_the_door([carried], now_ms=NOW_MS, max_skew_ms=DAY_MS, user_id="u")
    assert passed == [] and refused[0]["reason"] == "hlc was not stamped by its origin"


def test_a_device_merges_what_a_hub_logged_of_a_heal_without_logging_it_whatever_its_number(store):
    carried = {**good_course(1, "c1"), "origin": "h0123456789ab"}
    with freeze_time("2030-01-01T00:00:00Z"):
        assert store.apply_changes([carried], from_hub=True)["applied"] == 1
        again = {**carried, "hlc": encode(NOW_MS + 5, 0, "dev-b"), "fields": {"title": "again", "source": "https://a.b"}}
        assert store.apply_changes([again], from_hub=True)["applied"] == 1, "a number the hub took again: merged"
        assert store.get_course("c1")["title"] == "again" and store.changes_since({}, 10) == []
        assert store.apply_changes([{**carried, "seq": 2}])["quarantined"][0]["reason"] == \
            "hlc was not stamped by its origin", "not from a hub: refused"
