"""The connector contract, run against every store: SQLite, mongomock-ng, and a real MongoDB
when MONGO_URI is set. Both must decide alike, so every assertion here holds for both."""

from __future__ import annotations

import inspect

import pytest
from freezegun import freeze_time

from server.connectors.factory import get_db_connector
from server.connectors.shared.backend import Backend
from server.core.changes import slot_filler
from server.core.clock import encode
from server.core.config import Settings
from server.core.errors import NotFound, StateConflict, StoreUnavailable
from server.core.records import validate
from tests.conftest import ASSIGNMENT, COURSE, LECTURE, break_driver


def new_course(conn, **extra):
    return conn.create("course", None, validate("course", {**COURSE, **extra}, "create"))[0]


def new_lecture(conn, course_id, **extra):
    return conn.create("lecture", course_id, validate("lecture", {**LECTURE, **extra}, "create"))[0]


def new_assignment(conn, course_id, **extra):
    return conn.create("assignment", course_id, validate("assignment", {**ASSIGNMENT, **extra}, "create"))[0]


class TestFactory:
    def test_an_unknown_kind_is_refused_with_the_documented_message(self):
        with pytest.raises(ValueError, match="^Unsupported database connector type: redis$"):
            get_db_connector("redis")

    def test_a_backend_missing_a_method_cannot_be_built(self):
        class Half(Backend):
            def connect(self):
                return []

        with pytest.raises(TypeError):
            Half()

    def test_ping_answers_true_on_a_live_store(self, connector):
        assert connector.ping() is True


class TestCrud:
    def test_a_new_user_reads_as_defaults_without_writing(self, connector):
        user = connector.get_user()
        assert user["id"] == "learner" and user["focusCourseId"] is None
        assert connector.changes_since({}, 10) == []

    def test_creating_a_course_returns_the_canonical_record(self, connector):
        with freeze_time("2026-03-01T12:00:00Z"):
            course = new_course(connector, tags=["math"])
        assert course["title"] == COURSE["title"] and course["status"] == "active"
        assert course["tags"] == ["math"] and course["lectures"] == [] and course["assignments"] == []
        assert course["createdAt"] == course["updatedAt"] == "2026-03-01T12:00:00.000Z"
        assert connector.get_course(course["id"]) == course

    def test_lectures_come_back_by_order_and_assignments_by_creation(self, connector):
        with freeze_time("2026-01-01"):
            course = new_course(connector)
        with freeze_time("2026-02-01"):
            first = new_assignment(connector, course["id"], title="zz first")
        with freeze_time("2026-03-01"):
            second = new_assignment(connector, course["id"], title="aa second")
        new_lecture(connector, course["id"], order=3, title="c")
        new_lecture(connector, course["id"], order=1, title="a")
        got = connector.get_course(course["id"])
        assert [lec["order"] for lec in got["lectures"]] == [1, 3]
        assert [a["id"] for a in got["assignments"]] == [first["id"], second["id"]]

    def test_updates_change_only_the_given_fields(self, connector):
        course = new_course(connector, notes="keep")
        lecture = new_lecture(connector, course["id"])
        updated = connector.update("lecture", course["id"], lecture["id"], {"status": "completed"})
        assert updated["status"] == "completed" and updated["title"] == LECTURE["title"]
        assert connector.update("course", None, course["id"], {"title": "new"})["notes"] == "keep"

    def test_user_profile_and_focus_course(self, connector):
        course = new_course(connector)
        assert connector.update_user_profile("Ada")["displayName"] == "Ada"
        assert connector.set_focus_course(course["id"])["focusCourseId"] == course["id"]
        assert connector.set_focus_course(None)["focusCourseId"] is None

    def test_a_focus_course_that_is_deleted_reads_as_null(self, connector):
        course = new_course(connector)
        connector.set_focus_course(course["id"])
        connector.delete("course", None, course["id"])
        assert connector.get_user()["focusCourseId"] is None

    def test_a_client_id_makes_create_idempotent(self, connector):
        fields = validate("course", {**COURSE, "id": "c-1"}, "create")
        first, created = connector.create("course", None, fields)
        again, created_again = connector.create("course", None, fields)
        assert created and not created_again and first == again
        assert len(connector.changes_since({}, 10)) == 1

    def test_the_same_child_id_under_two_courses_names_two_records(self, connector):
        a, b = new_course(connector, title="a"), new_course(connector, title="b")
        new_lecture(connector, a["id"], id="l1", title="in a")
        new_lecture(connector, b["id"], id="l1", title="in b")
        connector.delete("course", None, a["id"])
        assert connector.get_course(b["id"])["lectures"][0]["title"] == "in b"

    def test_the_same_id_with_another_body_is_a_conflict(self, connector):
        connector.create("course", None, validate("course", {**COURSE, "id": "c-1"}, "create"))
        with pytest.raises(StateConflict):
            connector.create("course", None, validate("course", {**COURSE, "id": "c-1", "title": "x"}, "create"))


class TestChanges:
    def test_every_write_appends_one_change_with_gapless_sequence(self, connector):
        course = new_course(connector)
        lecture = new_lecture(connector, course["id"])
        connector.update("lecture", course["id"], lecture["id"], {"note": "n"})
        connector.delete("lecture", course["id"], lecture["id"])
        changes = connector.changes_since({}, 100)
        assert [c["seq"] for c in changes] == [1, 2, 3, 4]
        assert {c["origin"] for c in changes} == {connector.origin}
        assert [c["op"] for c in changes] == ["upsert", "upsert", "upsert", "delete"]
        assert changes[2]["fields"].keys() == {"note", "updatedAt"}
        assert changes == sorted(changes, key=lambda c: c["hlc"])

    def test_changes_since_respects_the_cursor_and_the_limit(self, connector):
        for i in range(5):
            new_course(connector, title=f"c{i}")
        origin = connector.origin
        assert [c["seq"] for c in connector.changes_since({origin: 2}, 2)] == [3, 4]
        assert connector.changes_since({origin: 5}, 10) == []
        assert connector.changes_since({}, 10, exclude_origin=origin) == []

    def test_an_update_records_the_clock_it_replaced(self, connector):
        course = new_course(connector)
        connector.update("course", None, course["id"], {"title": "t2"})
        create, update = connector.changes_since({}, 10)
        assert update["bases"]["title"] == create["hlc"]

    def test_pending_counts_changes_after_the_cursor(self, connector):
        for i in range(3):
            new_course(connector, title=f"c{i}")
        count, oldest = connector.pending_since({connector.origin: 1})
        assert count == 2 and oldest == connector.changes_since({}, 10)[1]["hlc"]


class TestTombstones:
    def test_deleting_a_course_tombstones_its_lectures_and_assignments(self, connector):
        course = new_course(connector)
        lecture = new_lecture(connector, course["id"])
        assignment = new_assignment(connector, course["id"])
        connector.delete("course", None, course["id"])
        records = connector.dump_records()
        cid = course["id"]
        keys = [("course", cid), ("lecture", f"{cid}/{lecture['id']}"), ("assignment", f"{cid}/{assignment['id']}")]
        for key in keys:
            assert records[key]["deleted"] is True
            assert records[key]["fields"] == {}  # a tombstone keeps id, clock and flag only
        assert connector.get_courses() == []

    def test_the_delete_itself_is_exported_as_a_change(self, connector):
        course = new_course(connector)
        connector.delete("course", None, course["id"])
        last = connector.changes_since({}, 10)[-1]
        assert last["op"] == "delete" and last["id"] == course["id"] and last["kind"] == "course"

    def test_a_deleted_id_cannot_be_created_again(self, connector):
        fields = validate("course", {**COURSE, "id": "gone"}, "create")
        connector.create("course", None, fields)
        connector.delete("course", None, "gone")
        with pytest.raises(StateConflict):
            connector.create("course", None, fields)


class TestErrors:
    def test_unknown_ids_are_not_found_with_their_codes(self, connector):
        course = new_course(connector)
        cases = [
            (lambda: connector.get_course("nope"), "course_not_found"),
            (lambda: connector.update("course", None, "nope", {"title": "x"}), "course_not_found"),
            (lambda: connector.update("lecture", course["id"], "nope", {}), "lecture_not_found"),
            (lambda: connector.delete("assignment", course["id"], "nope"), "assignment_not_found"),
            (lambda: connector.create("lecture", "nope", validate("lecture", LECTURE, "create")), "course_not_found"),
            (lambda: connector.set_focus_course("nope"), "course_not_found"),
        ]
        for call, code in cases:
            with pytest.raises(NotFound) as info:
                call()
            assert info.value.code == code
        assert len(connector.changes_since({}, 100)) == 1

    def test_a_lecture_under_the_wrong_course_is_not_found(self, connector):
        a, b = new_course(connector, title="a"), new_course(connector, title="b")
        lecture = new_lecture(connector, a["id"])
        with pytest.raises(NotFound):
            connector.update("lecture", b["id"], lecture["id"], {"title": "x"})
        with pytest.raises(NotFound):
            connector.delete("lecture", b["id"], lecture["id"])

    def test_deleting_twice_is_not_found(self, connector):
        course = new_course(connector)
        connector.delete("course", None, course["id"])
        with pytest.raises(NotFound):
            connector.delete("course", None, course["id"])

    def test_dollar_keys_in_ids_match_nothing(self, connector):
        new_course(connector)
        with pytest.raises(NotFound):
            connector.get_course("$ne")
        with pytest.raises(NotFound):
            connector.get_course({"$ne": None})  # type: ignore[arg-type]


class TestApply:
    def _peer(self, store_factory):
        peer = store_factory("peer", user_id="learner")
        peer.connect()
        return peer

    def test_applying_a_batch_twice_changes_nothing(self, connector, store_factory):
        peer = self._peer(store_factory)
        course = new_course(peer)
        new_lecture(peer, course["id"])
        batch = peer.changes_since({}, 10)
        assert connector.apply_changes(batch)["applied"] == 2
        before = connector.dump_records()
        assert connector.apply_changes(batch) == {
            "received": 2, "applied": 0, "conflicts": 0, "resume": {}, "quarantined": []}
        assert connector.dump_records() == before
        assert connector.get_courses() == peer.get_courses()

    def test_applied_changes_are_exported_again_for_other_readers(self, connector, store_factory):
        peer = self._peer(store_factory)
        new_course(peer)
        connector.apply_changes(peer.changes_since({}, 10))
        assert connector.changes_since({}, 10, exclude_origin=connector.origin) == peer.changes_since({}, 10)

    def test_the_later_write_of_a_field_wins_and_the_loser_is_recorded(self, connector, store_factory):
        peer = self._peer(store_factory)
        course = new_course(connector, id="shared")
        peer.apply_changes(connector.changes_since({}, 10))
        with freeze_time("2030-01-01"):
            connector.update("course", None, "shared", {"title": "mine"})
        with freeze_time("2030-01-02"):
            peer.update("course", None, "shared", {"title": "theirs"})
            connector.apply_changes(peer.changes_since({peer.origin: 0}, 10, exclude_origin=connector.origin))
        assert connector.get_course(course["id"])["title"] == "theirs"
        [conflict] = connector.list_conflicts()
        assert conflict["field"] == "title" and conflict["localValue"] == "mine"
        assert conflict["remoteValue"] == "theirs" and conflict["winner"] == "remote"

    def test_a_conflict_is_named_by_titles_and_settled_when_its_field_is_written_again(self, connector, store_factory):
        peer = self._peer(store_factory)
        new_course(connector, id="shared", title="Shared course")
        new_lecture(connector, "shared", id="l1", title="Intro")
        peer.apply_changes(connector.changes_since({}, 10))
        with freeze_time("2030-01-01"):
            connector.update("lecture", "shared", "l1", {"note": "mine"})
            connector.update("course", None, "shared", {"notes": "mine"})
        with freeze_time("2030-01-02"):
            peer.update("lecture", "shared", "l1", {"note": "theirs"})
            peer.update("course", None, "shared", {"notes": "theirs"})
            connector.apply_changes(peer.changes_since({}, 10, exclude_origin=connector.origin))
        conflicts = {c["kind"]: c for c in connector.list_conflicts()}
        names = connector.conflict_names(list(conflicts.values()))
        assert names[conflicts["lecture"]["id"]] == {"title": "Intro", "courseTitle": "Shared course"}
        assert names[conflicts["course"]["id"]] == {"title": "Shared course", "courseTitle": None}
        assert connector.settle_conflicts() == 0, "nothing wrote those fields since"
        with freeze_time("2030-01-03"):
            peer.update("lecture", "shared", "l1", {"note": "written again"})
            connector.apply_changes(peer.changes_since({}, 10, exclude_origin=connector.origin))
        assert connector.settle_conflicts() == 1
        settled = connector.get_conflict(conflicts["lecture"]["id"])["resolution"]
        assert settled["action"] == "superseded" and settled["by"] == "edited"
        assert connector.get_conflict(conflicts["course"]["id"])["resolution"] is None
        with freeze_time("2030-01-04"):
            peer.delete("course", None, "shared")
            connector.apply_changes(peer.changes_since({}, 10, exclude_origin=connector.origin))
        assert connector.settle_conflicts() == 1 and connector.count_conflicts() == 0
        assert connector.get_conflict(conflicts["course"]["id"])["resolution"]["by"] == "deleted"

    def test_conflicts_resolved_before_a_time_are_forgotten_and_open_ones_stay(self, connector, store_factory):
        peer = self._peer(store_factory)
        for n in range(3):
            new_course(connector, id=f"c{n}")
        peer.apply_changes(connector.changes_since({}, 10))
        for n in range(3):
            with freeze_time("2030-01-01"):
                connector.update("course", None, f"c{n}", {"title": "mine"})
            with freeze_time("2030-01-02"):
                peer.update("course", None, f"c{n}", {"title": "theirs"})
        with freeze_time("2030-01-02"):
            connector.apply_changes(peer.changes_since({}, 10, exclude_origin=connector.origin))
        ids = {c["recordId"]: c["id"] for c in connector.list_conflicts()}
        assert sorted(ids) == ["c0", "c1", "c2"]
        connector.resolve_conflict(ids["c0"], {"action": "dismissed", "at": "2030-01-10T00:00:00.000Z"})
        connector.resolve_conflict(ids["c1"], {"action": "dismissed", "at": "2030-03-10T00:00:00.000Z"})
        assert connector.forget_resolved_conflicts("2030-01-10T00:00:00.000Z") == 0, "strictly before"
        assert connector.forget_resolved_conflicts("2030-02-01T00:00:00.000Z") == 1
        assert sorted(c["recordId"] for c in connector.list_conflicts()) == ["c1", "c2"]
        assert connector.forget_resolved_conflicts("2999-01-01T00:00:00.000Z") == 1
        [left] = connector.list_conflicts()
        assert left["recordId"] == "c2" and left["resolution"] is None, "an open conflict stays whatever its age"
        assert connector.count_conflicts() == 1

    def test_an_older_remote_value_loses_and_is_recorded(self, connector, store_factory):
        peer = self._peer(store_factory)
        new_course(connector, id="shared")
        peer.apply_changes(connector.changes_since({}, 10))
        with freeze_time("2030-01-01"):
            peer.update("course", None, "shared", {"notes": "old"})
        with freeze_time("2030-01-02"):
            connector.update("course", None, "shared", {"notes": "new"})
            connector.apply_changes(peer.changes_since({}, 10, exclude_origin=connector.origin))
        assert connector.get_course("shared")["notes"] == "new"
        [conflict] = connector.list_conflicts()
        assert conflict["winner"] == "local" and conflict["remoteValue"] == "old"

    def test_different_fields_edited_on_two_stores_both_survive(self, connector, store_factory):
        peer = self._peer(store_factory)
        new_course(connector, id="shared")
        peer.apply_changes(connector.changes_since({}, 10))
        connector.update("course", None, "shared", {"title": "local title"})
        peer.update("course", None, "shared", {"notes": "peer notes"})
        connector.apply_changes(peer.changes_since({}, 10, exclude_origin=connector.origin))
        got = connector.get_course("shared")
        assert got["title"] == "local title" and got["notes"] == "peer notes"
        assert connector.list_conflicts() == []

    def test_a_remote_update_to_a_deleted_record_is_dropped_and_recorded(self, connector, store_factory):
        peer = self._peer(store_factory)
        new_course(connector, id="shared")
        peer.apply_changes(connector.changes_since({}, 10))
        peer.update("course", None, "shared", {"title": "edited elsewhere"})
        connector.delete("course", None, "shared")
        connector.apply_changes(peer.changes_since({}, 10, exclude_origin=connector.origin))
        assert connector.get_courses() == []
        assert [c["reason"] for c in connector.list_conflicts()] == ["deleted"]

    def test_a_lecture_created_under_a_course_deleted_here_is_dropped(self, connector, store_factory):
        peer = self._peer(store_factory)
        new_course(connector, id="shared")
        peer.apply_changes(connector.changes_since({}, 10))
        new_lecture(peer, "shared", id="late")
        connector.delete("course", None, "shared")
        connector.apply_changes(peer.changes_since({}, 10, exclude_origin=connector.origin))
        assert connector.dump_records()[("lecture", "shared/late")]["deleted"] is True
        assert connector.list_conflicts(), "the dropped lecture must leave a trace"

    def test_a_sequential_overwrite_is_not_a_conflict(self, connector, store_factory):
        peer = self._peer(store_factory)
        new_course(connector, id="shared")
        connector.update("course", None, "shared", {"title": "first"})
        peer.apply_changes(connector.changes_since({}, 10))
        peer.update("course", None, "shared", {"title": "second"})  # peer had seen "first"
        connector.apply_changes(peer.changes_since({}, 10, exclude_origin=connector.origin))
        assert connector.get_course("shared")["title"] == "second"
        assert connector.list_conflicts() == []

    def test_a_reused_device_id_is_refused_not_silently_dropped(self, connector, store_factory):
        peer = self._peer(store_factory)
        new_course(peer, title="one")
        connector.apply_changes(peer.changes_since({}, 10))
        forged = [{**peer.changes_since({}, 10)[0], "hlc": encode(1, 0, peer.origin)}]
        with pytest.raises(StateConflict):
            connector.apply_changes(forged)

    def test_sync_state_is_kept_with_the_batch(self, connector):
        connector.apply_changes([], bookmarks={"hub": {"epoch": "e1", "cursor": {"a": 3}}})
        assert connector.get_bookmark("hub") == {"epoch": "e1", "cursor": {"a": 3}}

    def test_after_a_wipe_own_writes_are_listed_under_a_new_origin_from_one(self, connector):
        new_course(connector, title="before")
        old = connector.origin
        connector.wipe()
        assert connector.origin != old and connector.changes_since({}, 10) == []
        new_course(connector, title="after")
        assert [(c["origin"], c["seq"]) for c in connector.changes_since({}, 10)] == [(connector.origin, 1)]

    def test_own_changes_written_again_carry_what_the_records_still_hold(self, connector, store_factory):
        new_course(connector, id="c1", title="t0", notes="n0")  # seq 1
        connector.update("course", None, "c1", {"title": "t1", "notes": "n1"})  # seq 2
        connector.update("course", None, "c1", {"notes": "n2"})  # seq 3: n1 is gone
        connector.delete("lecture", "c1", new_lecture(connector, "c1")["id"])  # seq 4, 5
        first = connector.changes_since({}, 10)
        assert connector.resend_own([2, 3, 5, 99]) == 3
        again = connector.changes_since({connector.origin: 5}, 10)
        assert [c["seq"] for c in again] == [6, 7, 8]
        assert [c["hlc"] > first[-1]["hlc"] for c in again] == [True] * 3
        assert [(c["op"], set(c["fields"]) - {"updatedAt"}) for c in again] == [
            ("upsert", {"title"}), ("upsert", {"notes"}), ("delete", set())]
        assert again[0]["bases"]["title"] == first[1]["bases"]["title"] == first[0]["hlc"]
        assert again[2]["bases"] == first[4]["bases"]
        assert connector.resend_own([2, 3, 5]) == 0, "the records hold the copies' stamps now"
        peer = self._peer(store_factory)
        # The hub refused 2, 3 and 5 (their slots hold fillers); their copies bring what they wrote.
        fillers = {c["seq"]: slot_filler(c, connector.user_id) for c in first}
        peer.apply_changes([first[0], fillers[2], fillers[3], first[3], fillers[5]])
        peer.apply_changes(again)
        assert (peer.get_course("c1")["title"], peer.get_course("c1")["notes"]) == ("t1", "n2")
        assert peer.get_course("c1")["lectures"] == [] and peer.list_conflicts() == []

    def test_a_released_quarantine_entry_is_gone(self, connector):
        entry = {"id": "q1", "origin": None, "seq": None, "reason": "r", "receivedAt": "2030-01-01T00:00:00.000Z",
                 "change": "{}"}
        connector.quarantine([entry, {**entry, "id": "q2"}])
        assert connector.release_quarantined(["q1", "q1", "nope"]) == 1
        assert [e["id"] for e in connector.list_quarantine()] == ["q2"]


CHANGE = {"origin": "peer", "seq": 1, "hlc": "001893456000000-000000-peer", "kind": "course", "id": "c9",
          "courseId": None, "op": "upsert", "fields": {"title": "t"}, "bases": {"title": ""}}
RECORD = {"kind": "course", "id": "c9", "courseId": None, "fields": {"title": "t"}, "clocks": {"title": CHANGE["hlc"]},
          "bases": {"title": ""}, "deleted": False, "dclock": "", "dbase": ""}
# One call of every public method; a public method missing here fails the test below.
CALLS = {
    "connect": (), "migrate": (), "set_owner": ("learner",),
    "get_user": (), "get_courses": (), "get_course": ("c1",),
    "update_user_profile": ("Me",), "set_focus_course": (None,),
    "create": ("course", None, {"title": "t", "source": "https://a.b"}),
    "update": ("course", None, "c1", {"title": "t"}),
    "delete": ("lecture", "c1", "l1"),
    "changes_since": ({}, 10), "apply_changes": ([CHANGE],), "pending_since": ({},),
    "relay_changes": ([CHANGE],), "shortfall": ({"x": 1},),
    "list_conflicts": (), "count_conflicts": (), "list_quarantine": (), "count_quarantine": (),
    "get_conflict": ("x",), "resolve_conflict": ("x", {"action": "dismissed", "at": "2030-01-01T00:00:00.000Z"}),
    "quarantine": ([{"id": "q1", "origin": None, "seq": None, "reason": "r", "receivedAt": "2030-01-01T00:00:00Z",
                     "change": "{}"}],), "get_bookmark": ("hub",), "set_bookmark": ("hub", {}),
    "hub_epoch": (), "dump_records": (), "is_empty": (), "wipe": (), "restart_origin": ("<own origin>", 1),
    "release_quarantined": (["q1"],), "resend_own": ([1],), "tops": (["peer"],),
    "snapshot_page": (None, 10), "apply_snapshot": ([RECORD],), "heal": ([RECORD],), "floors": (), "log_sizes": (),
    "compact": ({"peer": 1}, 10),
    "forget_resolved_conflicts": ("2030-01-01T00:00:00.000Z",), "settle_conflicts": (),
    "conflict_names": ([{"id": "k", "kind": "lecture", "recordId": "l1", "courseId": "c1"}],),
    "guarded": ("<a raw driver call>",),
}
NEVER_RAISE = {"close", "ping", "one_look"}  # one_look opens a section: the reads in it raise (test_one_look.py)


def public_methods(conn) -> set[str]:
    cls = type(conn)
    return {n for n in dir(cls) if not n.startswith("_") and inspect.isfunction(inspect.getattr_static(cls, n))}


class TestDriverFailures:
    def test_every_public_method_is_called_here(self, connector):
        assert public_methods(connector) <= CALLS.keys() | NEVER_RAISE

    @pytest.mark.parametrize("how", ["gone", "malformed"])
    def test_every_public_method_raises_store_unavailable_when_the_driver_fails(self, connector, how):
        new_course(connector, id="c1")
        break_driver(connector, how)
        escaped = {}
        for name in sorted(public_methods(connector) - NEVER_RAISE):
            try:
                raw_call = type(connector).dump_records.__wrapped__.__get__(connector)  # untranslated
                args = [{"<own origin>": connector.origin, "<a raw driver call>": raw_call}.get(a, a)
                        if isinstance(a, str) else a for a in CALLS[name]]
                getattr(connector, name)(*args)
                escaped[name] = "returned"
            except StoreUnavailable as exc:
                assert exc.status == 503 and exc.code == "store_unavailable"
                assert "went away" not in exc.message and str(connector.__dict__.get("path", "?")) not in exc.message
            except Exception as exc:  # noqa: BLE001 - the point is to see what escapes
                escaped[name] = repr(exc)
        assert escaped == {}

    def test_ping_answers_false_and_close_returns_when_the_driver_fails(self, connector):
        break_driver(connector)
        assert connector.ping() is False
        connector.close()
        connector.close()


def test_a_store_path_sqlite_cannot_open_says_so(tmp_path):
    path = tmp_path / "store"
    path.mkdir()
    conn = get_db_connector("sql", Settings(), path=str(path))
    # What to do about its place (the path is named by whoever knows the setting: start-up).
    with pytest.raises(StoreUnavailable, match=r"^The SQLite store failed: the store file cannot be opened; "
                                                "make the file and its folder writable by this user, or set "
                                                r"SQLITE_PATH to a file elsewhere\.$"):
        conn.connect()


def test_a_store_path_under_a_file_is_unavailable_not_an_os_error(tmp_path):
    (tmp_path / "file").write_text("x")
    conn = get_db_connector("sql", Settings(), path=str(tmp_path / "file" / "store.sqlite3"))
    with pytest.raises(StoreUnavailable, match=rf"^The SQLite store's folder {tmp_path / 'file'} cannot be made "
                                                r"\(.* is a file, not a folder\): set SQLITE_PATH to a file in a "
                                                r"folder this user may write\.$"):
        conn.connect()
