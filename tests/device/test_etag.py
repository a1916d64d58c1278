"""Optimistic concurrency for two open tabs: ETag on every record, If-Match on writes."""

from __future__ import annotations

import pytest

from tests.conftest import COURSE, LECTURE

# Wire tier: a real MongoDB only (conftest); ETags are computed above the store.
pytestmark = pytest.mark.wire_when_real


def test_every_record_answer_carries_an_etag_that_changes_with_it(client):
    created = client.post("/api/v1/courses", json=COURSE)
    cid = created.get_json()["data"]["id"]
    got = client.get(f"/api/v1/courses/{cid}")
    assert created.headers["ETag"] == got.headers["ETag"] and got.headers["ETag"].startswith('"')
    edited = client.patch(f"/api/v1/courses/{cid}", json={"notes": "x"})
    assert edited.headers["ETag"] != got.headers["ETag"]
    assert client.get("/api/v1/users/me").headers["ETag"]


def test_a_stale_if_match_is_412_with_the_current_record_and_changes_nothing(client, app):
    cid = client.post("/api/v1/courses", json=COURSE).get_json()["data"]["id"]
    tab_one = client.get(f"/api/v1/courses/{cid}").headers["ETag"]
    tab_two = client.get(f"/api/v1/courses/{cid}").headers["ETag"]
    first = client.patch(f"/api/v1/courses/{cid}", json={"title": "tab one"}, headers={"If-Match": tab_one})
    assert first.status_code == 200
    before = app.extensions["store"].changes_since({}, 100)
    stale = client.patch(f"/api/v1/courses/{cid}", json={"title": "tab two"}, headers={"If-Match": tab_two})
    assert stale.status_code == 412
    body = stale.get_json()
    assert body["error"]["code"] == "precondition_failed" and body["error"]["current"]["title"] == "tab one"
    assert stale.headers["ETag"] == client.get(f"/api/v1/courses/{cid}").headers["ETag"]
    assert client.delete(f"/api/v1/courses/{cid}", headers={"If-Match": tab_two}).status_code == 412
    assert app.extensions["store"].changes_since({}, 100) == before
    assert client.get(f"/api/v1/courses/{cid}").get_json()["data"]["title"] == "tab one"


def test_the_current_etag_and_star_and_a_list_match(client):
    cid = client.post("/api/v1/courses", json=COURSE).get_json()["data"]["id"]
    tag = client.get(f"/api/v1/courses/{cid}").headers["ETag"]
    ok = client.patch(f"/api/v1/courses/{cid}", json={"notes": "a"}, headers={"If-Match": f'"old", {tag}'})
    assert ok.status_code == 200
    for header, status in (("*", 200), ("", 412), (f"W/{tag}", 412), ("not-a-tag", 412)):
        resp = client.patch(f"/api/v1/courses/{cid}", json={"notes": header}, headers={"If-Match": header})
        assert resp.status_code == status, header


def test_editing_a_lecture_does_not_invalidate_its_course(client):
    cid = client.post("/api/v1/courses", json=COURSE).get_json()["data"]["id"]
    lecture = client.post(f"/api/v1/courses/{cid}/lectures", json=LECTURE)
    lid, lecture_tag = lecture.get_json()["data"]["id"], lecture.headers["ETag"]
    course_tag = client.get(f"/api/v1/courses/{cid}").headers["ETag"]
    assert client.patch(f"/api/v1/courses/{cid}/lectures/{lid}", json={"status": "completed"},
                        headers={"If-Match": lecture_tag}).status_code == 200
    assert client.patch(f"/api/v1/courses/{cid}/lectures/{lid}", json={"note": "late"},
                        headers={"If-Match": lecture_tag}).status_code == 412
    assert client.patch(f"/api/v1/courses/{cid}", json={"notes": "fine"},
                        headers={"If-Match": course_tag}).status_code == 200


def test_user_writes_honour_if_match(client):
    tag = client.get("/api/v1/users/me").headers["ETag"]
    assert client.patch("/api/v1/users/me", json={"displayName": "A"}, headers={"If-Match": tag}).status_code == 200
    stale = client.patch("/api/v1/users/me", json={"displayName": "B"}, headers={"If-Match": tag})
    assert stale.status_code == 412 and stale.get_json()["error"]["current"]["displayName"] == "A"
