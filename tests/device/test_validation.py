"""Bad input: every validation rule, malformed bodies, unknown ids. Each case asserts the status,
the error code, the field named, and that nothing in the store changed."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ASSIGNMENT, COURSE, LECTURE

# Wire tier: a real MongoDB only (conftest); bad input is refused before any store sees it.
pytestmark = pytest.mark.wire_when_real


@pytest.fixture
def seeded(client):
    course = client.post("/api/v1/courses", json={**COURSE, "id": "c1"}).get_json()["data"]
    client.post("/api/v1/courses", json={**COURSE, "id": "c2", "title": "other"})
    client.post("/api/v1/courses/c1/lectures", json={**LECTURE, "id": "l1"})
    client.post("/api/v1/courses/c1/assignments", json={**ASSIGNMENT, "id": "a1"})
    return course


def snapshot(app):
    store = app.extensions["store"]
    return store.dump_records(), store.changes_since({}, 10_000), store.get_user()


FIELD_CASES = [
    # (path, method, body, field, why-fragment)
    ("/api/v1/courses", "post", {"source": COURSE["source"]}, "title", "required"),
    ("/api/v1/courses", "post", {**COURSE, "title": ""}, "title", "non-empty"),
    ("/api/v1/courses", "post", {**COURSE, "title": "   "}, "title", "non-empty"),
    ("/api/v1/courses", "post", {**COURSE, "title": 5}, "title", "string"),
    ("/api/v1/courses", "post", {**COURSE, "source": "ftp://x.org"}, "source", "http"),
    ("/api/v1/courses", "post", {**COURSE, "source": "javascript:alert(1)"}, "source", "http"),
    ("/api/v1/courses", "post", {**COURSE, "source": "https://"}, "source", "http"),
    ("/api/v1/courses", "post", {"title": "t"}, "source", "required"),
    ("/api/v1/courses", "post", {**COURSE, "tags": "math"}, "tags", "list"),
    ("/api/v1/courses", "post", {**COURSE, "tags": ["ok", 3]}, "tags", "strings"),
    ("/api/v1/courses", "post", {**COURSE, "status": "done"}, "status", "one of"),
    ("/api/v1/courses", "post", {**COURSE, "color": "red"}, "color", "unknown"),
    ("/api/v1/courses", "post", {**COURSE, "$where": "1"}, "$where", "unknown"),
    ("/api/v1/courses", "post", {**COURSE, "id": "a/b"}, "id", "letters"),
    ("/api/v1/courses", "post", {**COURSE, "id": "$ne"}, "id", "letters"),
    ("/api/v1/courses", "post", {**COURSE, "id": {"$ne": None}}, "id", "letters"),
    ("/api/v1/courses", "post", {**COURSE, "title": {"$ne": None}}, "title", "string"),
    ("/api/v1/courses", "post", {**COURSE, "notes": "a\x00b"}, "notes", "NUL"),
    ("/api/v1/courses", "post", {**COURSE, "notes": "a\ud800b"}, "notes", "surrogate"),
    ("/api/v1/courses/c1", "patch", {"title": None}, "title", "null"),
    ("/api/v1/courses/c1", "patch", {"status": "parked", "lectures": []}, "lectures", "unknown"),
    ("/api/v1/courses/c1", "patch", {"id": "c9"}, "id", "unknown"),
    ("/api/v1/courses/c1/lectures", "post", {**LECTURE, "order": 0}, "order", "at least 1"),
    ("/api/v1/courses/c1/lectures", "post", {**LECTURE, "order": True}, "order", "integer"),
    ("/api/v1/courses/c1/lectures", "post", {**LECTURE, "order": 1.5}, "order", "integer"),
    ("/api/v1/courses/c1/lectures", "post", {**LECTURE, "order": 1.0}, "order", "integer"),
    ("/api/v1/courses/c1/lectures", "post", {**LECTURE, "order": "1"}, "order", "integer"),
    ("/api/v1/courses/c1/lectures", "post", {**LECTURE, "order": 2**70}, "order", "at most"),
    ("/api/v1/courses/c1/lectures", "post", {**LECTURE, "durationMinutes": 0}, "durationMinutes", "at least 1"),
    ("/api/v1/courses/c1/lectures", "post", {**LECTURE, "durationMinutes": False}, "durationMinutes", "integer"),
    ("/api/v1/courses/c1/lectures", "post", {**LECTURE, "videoUrl": "not a url"}, "videoUrl", "http"),
    ("/api/v1/courses/c1/lectures", "post", {**LECTURE, "status": "completed!"}, "status", "one of"),
    ("/api/v1/courses/c1/lectures/l1", "patch", {"courseId": "c2"}, "courseId", "unknown"),
    ("/api/v1/courses/c1/assignments", "post", {**ASSIGNMENT, "dueDate": "2026-02-30"}, "dueDate", "calendar"),
    ("/api/v1/courses/c1/assignments", "post", {**ASSIGNMENT, "dueDate": "2026-2-3"}, "dueDate", "calendar"),
    ("/api/v1/courses/c1/assignments", "post", {**ASSIGNMENT, "dueDate": "2026-02-03T00:00Z"}, "dueDate", "calendar"),
    ("/api/v1/courses/c1/assignments", "post", {**ASSIGNMENT, "link": "mailto:x@y.z"}, "link", "http"),
    ("/api/v1/courses/c1/assignments", "post", {**ASSIGNMENT, "status": "done"}, "status", "one of"),
    ("/api/v1/courses/c1/assignments/a1", "patch", {"title": ""}, "title", "non-empty"),
    ("/api/v1/users/me", "patch", {}, "displayName", "required"),
    ("/api/v1/users/me", "patch", {"displayName": ""}, "displayName", "non-empty"),
    ("/api/v1/users/me", "patch", {"displayName": "x", "email": "a@b.c"}, "email", "unknown"),
    ("/api/v1/users/me/focus-course", "patch", {}, "courseId", "required"),
    ("/api/v1/users/me/focus-course", "patch", {"courseId": 7}, "courseId", "string"),
    ("/api/v1/users/me/focus-course", "patch", {"courseId": {"$gt": ""}}, "courseId", "string"),
]


@pytest.mark.parametrize("path,method,body,field,why", FIELD_CASES)
def test_each_invalid_field_is_named_and_nothing_is_written(client, app, seeded, path, method, body, field, why):
    before = snapshot(app)
    resp = getattr(client, method)(path, json=body)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    err = resp.get_json()["error"]
    assert err["code"] == "invalid_fields" and why in err["fields"][field]
    assert snapshot(app) == before


def test_several_bad_fields_are_all_named(client, seeded):
    resp = client.post("/api/v1/courses/c1/lectures", json={"order": -1, "videoUrl": "x", "extra": 1})
    assert set(resp.get_json()["error"]["fields"]) == {"order", "videoUrl", "extra", "title"}


BODY_CASES = [
    # (raw body, content type, status, code)
    (b"{not json", "application/json", 400, "invalid_body"),
    (b"[1, 2]", "application/json", 400, "invalid_body"),
    (b'"title"', "application/json", 400, "invalid_body"),
    (b"null", "application/json", 400, "invalid_body"),
    (b"", "application/json", 400, "invalid_body"),
    (b'{"title": NaN, "source": "https://a.b"}', "application/json", 400, "invalid_body"),
    (b'{"title": "a", "title": "b", "source": "https://a.b"}', "application/json", 400, "invalid_body"),
    (b"\xff\xfe{}", "application/json", 400, "invalid_body"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "invalid_body"),
    (json.dumps(COURSE).encode(), "text/plain", 415, "unsupported_media_type"),
    (json.dumps(COURSE).encode(), "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (json.dumps({**COURSE, "notes": "x" * (1024 * 1024)}).encode(), "application/json", 413, "payload_too_large"),
    (b"{" + b'"a":' * 1 + b"1}" + b" " * (10 * 1024 * 1024), "application/json", 413, "payload_too_large"),
    (b'{"title": Infinity, "source": "https://a.b"}', "application/json", 400, "invalid_body"),
    (b'{"title": -Infinity, "source": "https://a.b"}', "application/json", 400, "invalid_body"),
    (b'{"title": "t", "source": "https://a.b", "tags": ["a"], "tags": []}', "application/json", 400, "invalid_body"),
    (rb'{"title": "t\u0000", "source": "https://a.b"}', "application/json", 400, "invalid_fields"),
    (rb'{"title": "\ud800", "source": "https://a.b"}', "application/json", 400, "invalid_fields"),
    (b'{"title": "' + "é".encode("latin-1") + b'", "source": "https://a.b"}', "application/json", 400,
     "invalid_body"),
    (b'{"title": ' + b"[" * 1000 + b"]" * 1000 + b', "source": "https://a.b"}', "application/json", 400,
     "invalid_body"),
    (b'{"title": ' + b"[" * 100 + b"]" * 100 + b', "source": "https://a.b"}', "application/json", 400,
     "invalid_fields"),
    (b'{"title": "t", "source": "https://a.b", "tags": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json",
     400, "invalid_body"),
    (b'{"title": "t", "source": "https://a.b", "order": 1e400}', "application/json", 400, "invalid_fields"),
    (b'{"title": "t", "source": "https://a.b", "notes": 99999999999999999999999999999}', "application/json", 400,
     "invalid_fields"),
    (json.dumps(COURSE).encode(), None, 415, "unsupported_media_type"),
    (json.dumps(COURSE).encode(), "application/json-patch+json", 415, "unsupported_media_type"),
]


@pytest.mark.parametrize("raw,ctype,status,code", BODY_CASES, ids=range(len(BODY_CASES)))
def test_malformed_bodies_are_refused_and_nothing_is_written(client, app, seeded, raw, ctype, status, code):
    before = snapshot(app)
    for path, method in [("/api/v1/courses", "post"), ("/api/v1/courses/c1", "patch")]:
        headers = {"Content-Type": ctype} if ctype else {}
        resp = getattr(client, method)(path, data=raw, headers=headers)
        assert resp.status_code == status, resp.get_data(as_text=True)[:300]
        assert resp.get_json()["error"]["code"] == code
    assert snapshot(app) == before


UNKNOWN_ID_CASES = [
    ("get", "/api/v1/courses/nope", None, "course_not_found"),
    ("patch", "/api/v1/courses/nope", {"title": "x"}, "course_not_found"),
    ("delete", "/api/v1/courses/nope", None, "course_not_found"),
    ("post", "/api/v1/courses/nope/lectures", LECTURE, "course_not_found"),
    ("patch", "/api/v1/courses/c1/lectures/nope", {"title": "x"}, "lecture_not_found"),
    ("patch", "/api/v1/courses/c1/lectures/l1%00", {"title": "x"}, "lecture_not_found"),
    ("delete", "/api/v1/courses/c1/lectures/nope", None, "lecture_not_found"),
    ("patch", "/api/v1/courses/c2/lectures/l1", {"title": "x"}, "lecture_not_found"),
    ("delete", "/api/v1/courses/c2/lectures/l1", None, "lecture_not_found"),
    ("patch", "/api/v1/courses/c2/assignments/a1", {"title": "x"}, "assignment_not_found"),
    ("delete", "/api/v1/courses/c1/assignments/nope", None, "assignment_not_found"),
    ("get", "/api/v1/courses/%24ne", None, "course_not_found"),
    ("get", "/api/v1/courses/%24where", None, "course_not_found"),
    ("get", "/api/v1/courses/c1%00", None, "course_not_found"),
    ("get", "/api/v1/courses/%E2%80%AE", None, "course_not_found"),
    ("delete", "/api/v1/courses/..%2F..%2Fetc", None, "not_found"),
    ("get", "/api/v1/courses/" + "a" * 5000, None, "course_not_found"),
    ("get", "/api/v1/courses/..", None, "course_not_found"),
    ("get", "/api/v1/courses/%2e%2e", None, "course_not_found"),
    ("patch", "/api/v1/users/me/focus-course", {"courseId": "nope"}, "course_not_found"),
]


@pytest.mark.parametrize("method,path,body,code", UNKNOWN_ID_CASES)
def test_unknown_ids_are_404_and_nothing_is_written(client, app, seeded, method, path, body, code):
    before = snapshot(app)
    kwargs = {"json": body} if body is not None else {}
    resp = getattr(client, method)(path, **kwargs)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == code
    assert snapshot(app) == before


def test_deleting_twice_is_404_the_second_time(client, app, seeded):
    assert client.delete("/api/v1/courses/c1/lectures/l1").status_code == 200
    before = snapshot(app)
    resp = client.delete("/api/v1/courses/c1/lectures/l1")
    assert resp.status_code == 404 and snapshot(app) == before


def test_a_child_of_a_deleted_course_is_gone(client, seeded):
    client.delete("/api/v1/courses/c1")
    assert client.patch("/api/v1/courses/c1/lectures/l1", json={"title": "x"}).status_code == 404
    assert client.post("/api/v1/courses/c1/lectures", json=LECTURE).status_code == 404
