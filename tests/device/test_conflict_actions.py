"""Restore a lost value, or dismiss the loss: through the API, on a real sync between devices."""

from __future__ import annotations

import datetime as dt

import pytest
from freezegun import freeze_time

from server.api import create_app
from server.core.config import Settings
from tests.synckit import World, course, lecture

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)  # before now: later edits sort after
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path, "sqlite")
    yield w
    w.close()


def lost_title(world):
    """A on the loser's side: its title lost to B's later one. Returns A's API client."""
    a, b = world.device("a"), world.device("b")
    with freeze_time(T0):
        course(a, id="c1", title="first")
        lecture(a, "c1", id="l1")
        world.settle(["a", "b"])
    with freeze_time(T0 + dt.timedelta(minutes=1)):
        a.update("course", None, "c1", {"title": "A's title"})
    with freeze_time(T0 + dt.timedelta(minutes=2)):
        b.update("course", None, "c1", {"title": "B's title"})
        world.settle(["b", "a"])
    app = create_app(Settings(sqlite_path=a.path), store=a, start_sync=False, testing=True)
    return app.test_client()


def post(client, path, **kw):
    return client.post(f"/api/v1/sync/conflicts{path}", data="{}", headers=JSON, **kw)


def test_restore_writes_the_lost_value_back_and_it_reaches_the_other_device(world):
    client = lost_title(world)
    [conflict] = client.get("/api/v1/sync/conflicts").get_json()["data"]
    assert conflict["resolution"] is None and conflict["field"] == "title"
    resp = post(client, f"/{conflict['id']}/restore")
    assert resp.status_code == 200 and resp.get_json()["data"]["title"] == "A's title"
    [done] = client.get("/api/v1/sync/conflicts").get_json()["data"]
    assert done["resolution"]["action"] == "restored" and done["resolution"]["value"] == "A's title"
    edit = done["resolution"]["edit"]
    clocks = world.device("a").dump_records()[("course", "c1")]["clocks"]
    assert edit["origin"] == "a" and edit["hlc"] == clocks["title"]
    assert client.get("/api/v1/sync/conflicts?status=open").get_json()["data"] == []
    assert client.get("/api/v1/sync/conflicts?status=resolved").get_json()["data"] == [done]
    assert client.get("/api/v1/sync/status").get_json()["data"]["openConflicts"] == 0
    world.settle(["a", "b"])
    assert world.device("b").get_course("c1")["title"] == "A's title"
    again = post(client, f"/{conflict['id']}/restore")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "conflict_resolved"


def test_dismiss_marks_it_resolved_and_writes_nothing(world):
    client = lost_title(world)
    [conflict] = client.get("/api/v1/sync/conflicts").get_json()["data"]
    pending = client.get("/api/v1/sync/status").get_json()["data"]["pending"]["count"]
    resp = post(client, f"/{conflict['id']}/dismiss")
    assert resp.status_code == 200 and resp.get_json()["data"]["resolution"]["action"] == "dismissed"
    assert client.get("/api/v1/courses/c1").get_json()["data"]["title"] == "B's title"
    assert client.get("/api/v1/sync/status").get_json()["data"]["pending"]["count"] == pending
    assert post(client, f"/{conflict['id']}/restore").status_code == 409


def test_restoring_into_a_deleted_record_answers_409_and_writes_nothing(world):
    client = lost_title(world)
    [conflict] = client.get("/api/v1/sync/conflicts").get_json()["data"]
    world.device("a").delete("course", None, "c1")  # here, before any round could settle the conflict
    open_ones = client.get("/api/v1/sync/conflicts?status=open").get_json()["data"]
    resp = post(client, f"/{conflict['id']}/restore")
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "record_deleted"
    assert "deleted" in resp.get_json()["error"]["message"]
    assert client.get("/api/v1/sync/conflicts?status=open").get_json()["data"] == open_ones


def test_a_conflict_settled_on_another_device_shows_settled_here_after_a_round(world):
    client = lost_title(world)  # A's title lost to B's; both devices list the conflict
    [on_a] = client.get("/api/v1/sync/conflicts").get_json()["data"]
    [on_b] = world.device("b").list_conflicts()
    assert on_a["resolution"] is None and on_b["resolution"] is None
    b_client = create_app(Settings(sqlite_path=world.device("b").path), store=world.device("b"), start_sync=False,
                          testing=True).test_client()
    assert post(b_client, f"/{on_b['id']}/restore").status_code == 200  # B brings A's title back
    world.settle(["b", "a"])
    [settled] = client.get("/api/v1/sync/conflicts").get_json()["data"]
    assert settled["resolution"]["action"] == "superseded" and settled["resolution"]["by"] == "edited"
    assert post(client, f"/{on_a['id']}/restore").get_json()["error"]["code"] == "conflict_resolved"
    assert client.get("/api/v1/sync/status").get_json()["data"]["openConflicts"] == 0
    # A conflict whose record was deleted since is settled too, and one that nothing touched stays open.
    a, b = world.device("a"), world.device("b")
    course(a, id="c2", title="two")
    course(a, id="c3", title="three")
    world.settle(["a", "b"])
    for n in (2, 3):  # edited on both, B later: A's note loses (the restore above moved both clocks to now)
        a.update("course", None, f"c{n}", {"notes": "A's"})
        b.update("course", None, f"c{n}", {"notes": "B's"})
    world.settle(["b", "a"])
    assert {c["recordId"] for c in a.list_conflicts(status="open")} == {"c2", "c3"}
    b.delete("course", None, "c2")
    world.settle(["b", "a"])
    assert {c["recordId"] for c in a.list_conflicts(status="open")} == {"c3"}
    [gone] = [c for c in a.list_conflicts() if c["recordId"] == "c2"]
    assert gone["resolution"]["by"] == "deleted"


def test_unknown_ids_bad_filters_and_form_posts(world):
    client = lost_title(world)
    [conflict] = client.get("/api/v1/sync/conflicts").get_json()["data"]
    assert post(client, "/nope/restore").status_code == 404
    assert post(client, "/nope/dismiss").get_json()["error"]["code"] == "conflict_not_found"
    assert client.get("/api/v1/sync/conflicts?status=maybe").status_code == 400
    form = client.post(f"/api/v1/sync/conflicts/{conflict['id']}/restore", data={"x": "1"})
    assert form.status_code == 415
    bare = client.post(f"/api/v1/sync/conflicts/{conflict['id']}/dismiss")
    assert bare.status_code == 415
    assert client.post(f"/api/v1/sync/conflicts/{conflict['id']}/dismiss", json={"x": 1}).status_code == 400
    assert client.get("/api/v1/sync/conflicts?status=open").get_json()["data"] == [conflict]


def test_both_routes_are_in_the_document(world):
    client = lost_title(world)
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"/sync/conflicts/{conflictId}/restore", "/sync/conflicts/{conflictId}/dismiss"} <= set(paths)
