"""The PWA's REST contract through the Flask test client, on every store."""

from __future__ import annotations

import re

import pytest

from server.core.records import RECORD_KINDS
from server.web.openapi import record_operations
from tests.conftest import ASSIGNMENT, COURSE, LECTURE, break_driver
from tests.core.test_kinds import sample

# Wire tier: a real MongoDB only (conftest); the API's routes.
pytestmark = pytest.mark.wire_when_real

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
COURSE_KEYS = {"id", "title", "description", "source", "status", "tags", "notes", "lectures",
               "assignments", "createdAt", "updatedAt"}
LECTURE_KEYS = {"id", "courseId", "order", "title", "videoUrl", "durationMinutes", "status", "note",
                "createdAt", "updatedAt"}
ASSIGNMENT_KEYS = {"id", "courseId", "title", "status", "dueDate", "link", "note", "createdAt", "updatedAt"}


def data(resp, status=200):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"data", "meta"}
    assert body["meta"]["traceId"] == resp.headers["X-Request-ID"]
    return body["data"]


def make_course(client, **extra):
    return data(client.post("/api/v1/courses", json={**COURSE, **extra}), 201)


def test_health_reports_the_store(client):
    body = data(client.get("/api/v1/health"))
    assert body["status"] == "ok" and body["store"]["ok"] is True and body["hub"]["enabled"] is False


def test_a_course_answer_has_every_field_of_the_contract(client):
    course = make_course(client, tags=["x"], notes="n", description="d")
    assert set(course) == COURSE_KEYS and UUID_RE.match(course["id"])
    assert ISO_Z.match(course["createdAt"]) and ISO_Z.match(course["updatedAt"])
    lecture = data(client.post(f"/api/v1/courses/{course['id']}/lectures", json=LECTURE), 201)
    assert set(lecture) == LECTURE_KEYS and lecture["courseId"] == course["id"]
    assignment = data(client.post(f"/api/v1/courses/{course['id']}/assignments", json=ASSIGNMENT), 201)
    assert set(assignment) == ASSIGNMENT_KEYS and assignment["status"] == "not_started"
    full = data(client.get(f"/api/v1/courses/{course['id']}"))
    assert full["lectures"] == [lecture] and full["assignments"] == [assignment]


def test_the_pwa_flow_list_open_edit_complete_focus_export_delete(client):
    course = make_course(client)
    cid = course["id"]
    assert [c["id"] for c in data(client.get("/api/v1/courses"))] == [cid]
    lecture = data(client.post(f"/api/v1/courses/{cid}/lectures", json=LECTURE), 201)
    done = data(client.patch(f"/api/v1/courses/{cid}/lectures/{lecture['id']}", json={"status": "completed"}))
    assert done["status"] == "completed" and done["title"] == LECTURE["title"]
    edited = data(client.patch(f"/api/v1/courses/{cid}", json={"status": "completed", "tags": ["a", "b"]}))
    assert edited["status"] == "completed" and edited["tags"] == ["a", "b"] and edited["lectures"] == [done]
    user = data(client.patch("/api/v1/users/me/focus-course", json={"courseId": cid}))
    assert user["focusCourseId"] == cid
    assert data(client.patch("/api/v1/users/me", json={"displayName": "Ada"}))["displayName"] == "Ada"
    export = data(client.get("/api/v1/users/me/export"))
    assert set(export) == {"user", "courses", "exportedAt", "version"}
    assert export["user"]["displayName"] == "Ada" and export["courses"][0]["id"] == cid
    gone = data(client.delete(f"/api/v1/courses/{cid}"))
    assert gone == {"id": cid, "deleted": True}
    assert data(client.get("/api/v1/courses")) == []
    assert data(client.get("/api/v1/users/me"))["focusCourseId"] is None
    again = client.delete(f"/api/v1/courses/{cid}")
    assert again.status_code == 404 and again.get_json()["error"]["code"] == "course_not_found"


def test_deleting_lectures_and_assignments_answers_a_body(client):
    cid = make_course(client)["id"]
    lid = data(client.post(f"/api/v1/courses/{cid}/lectures", json=LECTURE), 201)["id"]
    aid = data(client.post(f"/api/v1/courses/{cid}/assignments", json=ASSIGNMENT), 201)["id"]
    assert data(client.delete(f"/api/v1/courses/{cid}/lectures/{lid}")) == {"id": lid, "deleted": True}
    assert data(client.delete(f"/api/v1/courses/{cid}/assignments/{aid}")) == {"id": aid, "deleted": True}
    assert client.delete(f"/api/v1/courses/{cid}/lectures/{lid}").status_code == 404
    course = data(client.get(f"/api/v1/courses/{cid}"))
    assert course["lectures"] == [] and course["assignments"] == []


def test_a_retried_create_with_a_client_id_does_not_duplicate(client):
    body = {**COURSE, "id": "offline-1"}
    first = data(client.post("/api/v1/courses", json=body), 201)
    assert data(client.post("/api/v1/courses", json=body), 200) == first
    clash = client.post("/api/v1/courses", json={**body, "title": "other"})
    assert clash.status_code == 409 and clash.get_json()["error"]["code"] == "id_conflict"
    assert len(data(client.get("/api/v1/courses"))) == 1


def test_children_under_the_wrong_course_are_not_found(client):
    a, b = make_course(client)["id"], make_course(client, title="b")["id"]
    lid = data(client.post(f"/api/v1/courses/{a}/lectures", json=LECTURE), 201)["id"]
    resp = client.patch(f"/api/v1/courses/{b}/lectures/{lid}", json={"title": "x"})
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "lecture_not_found"


def test_unknown_routes_and_methods_answer_in_the_envelope(client):
    for resp, status, code in [
        (client.get("/nope"), 404, "not_found"),
        (client.get("/api/v1/courses/x/y/z"), 404, "not_found"),
        (client.put("/api/v1/courses"), 405, "method_not_allowed"),
        (client.get("/api/v1/courses/unknown"), 404, "course_not_found"),
        (client.patch("/api/v1/users/me/focus-course", json={"courseId": "nope"}), 404, "course_not_found"),
    ]:
        assert resp.status_code == status and resp.mimetype == "application/json"
        body = resp.get_json()
        assert body["error"]["code"] == code and body["meta"]["traceId"] == resp.headers["X-Request-ID"]


def test_an_unexpected_error_is_a_500_envelope_without_internals(client, app, monkeypatch):
    def boom():
        raise RuntimeError("secret internals /etc/passwd SELECT *")

    monkeypatch.setattr(app.extensions["store"], "get_courses", boom)
    resp = client.get("/api/v1/courses")
    assert resp.status_code == 500 and resp.get_json()["error"]["code"] == "internal_error"
    assert "secret" not in resp.get_data(as_text=True) and "SELECT" not in resp.get_data(as_text=True)


def test_the_store_being_down_is_a_503(client, app, monkeypatch):
    from server.core.errors import StoreUnavailable

    def down():
        raise StoreUnavailable("The MongoDB hub failed: ServerSelectionTimeoutError")

    monkeypatch.setattr(app.extensions["store"], "get_courses", down)
    monkeypatch.setattr(app.extensions["store"], "ping", lambda: False)
    assert client.get("/api/v1/courses").get_json()["error"]["code"] == "store_unavailable"
    assert client.get("/api/v1/health").status_code == 503


def test_a_request_id_from_the_client_is_echoed(client):
    resp = client.get("/api/v1/health", headers={"X-Request-ID": "abcdef0123456789"})
    assert resp.headers["X-Request-ID"] == "abcdef0123456789"


def test_one_log_line_per_request_carries_the_trace_id(client, caplog):
    caplog.set_level("INFO", logger="server.http")
    resp = client.get("/api/v1/courses")
    lines = [r.getMessage() for r in caplog.records if r.name == "server.http"]
    assert len(lines) == 1 and resp.headers["X-Request-ID"] in lines[0] and "GET /api/v1/courses 200" in lines[0]


def test_sync_routes_without_a_hub(client):
    status = data(client.get("/api/v1/sync/status"))
    assert status["enabled"] is False and status["state"] == "disabled"
    resp = client.post("/api/v1/sync", json={})
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "sync_disabled"
    assert data(client.get("/api/v1/sync/conflicts")) == []


def body_for(method: str, rule: str) -> dict | None:
    """A valid body for the route, from the kinds table (so a new kind's routes are covered)."""
    if (method, rule) == ("PATCH", "/api/v1/users/me"):
        return {"displayName": "Me"}
    if (method, rule) == ("PATCH", "/api/v1/users/me/focus-course"):
        return {"courseId": None}
    if method in ("POST", "DELETE") and rule.startswith("/api/v1/sync"):  # a round, restore, dismiss: {}
        return {}
    kind = next((k for k in RECORD_KINDS if rule.endswith((f"/{k.plural}", f"/<{k.name}_id>"))), None)
    if kind is None or method not in ("POST", "PATCH"):
        return None
    body = sample(kind.name)
    return body if method == "POST" else dict([next(iter(body.items()))])


# Routes that never touch the store, with what they answer then.
STORELESS = {("GET", "/api/v1/openapi.json"): 200, ("GET", "/api/v1/"): 200, ("POST", "/api/v1/sync"): 409,
             ("POST", "/api/v1/sync/hub"): 400}  # (no invitation: refused before anything is read)


@pytest.mark.parametrize("how", ["gone", "malformed"])
def test_every_route_answers_503_store_unavailable_when_the_store_fails(app, client, connector, how):
    make_course(client, id="x1")
    break_driver(connector, how)
    answers, checked = {}, set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            path = re.sub(r"<\w+>", "x1", rule.rule)
            resp = client.open(path, method=method, json=body_for(method, rule.rule))
            checked.add((method, rule.rule))
            want = STORELESS.get((method, rule.rule), 503)
            if (method, rule.rule) == ("DELETE", "/api/v1/sync/hub") and connector.store_kind == "mongo":
                want = 409  # a device on MongoDB writes to the hub itself: it keeps no hub to forget
            code = (resp.get_json() or {}).get("error", {}).get("code") if want == 503 else None
            if (resp.status_code, code) != (want, "store_unavailable" if want == 503 else None):
                answers[(method, rule.rule)] = (resp.status_code, resp.get_data(as_text=True)[:200])
    assert answers == {}
    kind_routes = {(op.method.upper(), f"/api/v1{op.path}") for k in RECORD_KINDS for op in record_operations(k)}
    sync_reads = {("GET", "/api/v1/sync/conflicts"), ("GET", "/api/v1/sync/status"), ("GET", "/api/v1/sync/quarantine")}
    assert {*sync_reads, *kind_routes} <= checked
    assert len(checked) == 17 + len(kind_routes)


def test_the_api_root_answers_where_things_are_with_or_without_its_slash(tmp_path):
    from server.api import create_app
    from server.core.config import Settings

    token = "t" * 32
    app = create_app(Settings(sqlite_path=str(tmp_path / "x.sqlite3"), api_token=token), start_sync=False,
                     testing=True)
    client = app.test_client()
    first = client.get("/api/v1")
    assert first.status_code == 200, "the address the README gives answers, without a token (it holds no data)"
    assert client.get("/api/v1/").get_json()["data"] == first.get_json()["data"]
    links = first.get_json()["data"]["links"]
    assert {"openapi", "courses", "syncStatus", "syncPage"} <= set(links)
    for name, href in links.items():
        assert client.get(href, headers={"Authorization": f"Bearer {token}"}).status_code == 200, name
    assert client.get("/api/v1/courses").status_code == 401, "the rest still needs the token"
    assert client.post("/api/v1/", json={}).get_json()["error"]["code"] == "method_not_allowed"
