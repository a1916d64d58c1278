"""What the PWA's HTML forms send: an optional input left empty arrives as "". For a nullable
field that means null, on every create and update route; other fields refuse "" where they did."""

from __future__ import annotations

import pytest

from server.core.records import COURSE, KINDS, RECORD_KINDS
from tests.core.test_kinds import answer, sample

# Wire tier: a real MongoDB only (conftest); the API's forms.
pytestmark = pytest.mark.wire_when_real

FORM_KINDS = [k.name for k in RECORD_KINDS]


def form_body(kind: str, mode: str) -> dict:
    """A form submitted with every optional input left empty: "" for text and nullable inputs,
    a select's shown value for an enum, no tags typed."""
    fields = [f for f in KINDS[kind].fields if (f.on_create if mode == "create" else f.on_update)]
    body = sample(kind) if mode == "create" else {}
    for f in fields:
        if f.required:
            continue
        if f.nullable or f.type == "text":
            body[f.name] = ""
        elif f.type == "enum":
            body[f.name] = f.default
        elif f.type == "tags":
            body[f.name] = []
    return body


def route(client, kind: str) -> str:
    if kind == COURSE:
        return "/api/v1/courses"
    course = answer(client.post("/api/v1/courses", json=sample(COURSE)), 201)
    return f"/api/v1/courses/{course['id']}/{KINDS[kind].plural}"


@pytest.mark.parametrize("kind", FORM_KINDS)
def test_a_create_form_with_every_optional_input_empty_is_taken(client, kind):
    base = route(client, kind)
    body = form_body(kind, "create")
    made = answer(client.post(base, json=body), 201)
    for f in KINDS[kind].fields:
        if f.nullable and f.on_create:
            assert body[f.name] == "" and made[f.name] is None, f.name


@pytest.mark.parametrize("kind", FORM_KINDS)
def test_an_edit_form_with_every_optional_input_empty_is_taken_and_clears_them(client, kind):
    base = route(client, kind)
    full = {**sample(kind, every=True)}
    made = answer(client.post(base, json=full), 201)
    item = f"{base}/{made['id']}"
    edited = answer(client.patch(item, json=form_body(kind, "update")))
    nullable = [f.name for f in KINDS[kind].fields if f.nullable and f.on_update]
    assert all(made[name] is not None for name in nullable)
    assert all(edited[name] is None for name in nullable)
    assert answer(client.get(f"/api/v1/courses/{made.get('courseId') or made['id']}"))  # still served


def test_the_assignment_form_the_pwa_sends_without_a_link(client):
    base = route(client, "assignment")
    made = answer(client.post(base, json={"title": "Problem set 1", "dueDate": "", "link": ""}), 201)
    assert (made["link"], made["dueDate"]) == (None, None)
    lecture = route(client, "lecture")
    made = answer(client.post(lecture, json={"title": "L", "order": 1, "videoUrl": "https://a.b/v",
                                             "durationMinutes": ""}), 201)
    assert made["durationMinutes"] is None


def test_clearing_the_focus_course_with_an_empty_string(client):
    course = answer(client.post("/api/v1/courses", json=sample(COURSE)), 201)
    assert answer(client.patch("/api/v1/users/me/focus-course", json={"courseId": course["id"]}))["focusCourseId"]
    assert answer(client.patch("/api/v1/users/me/focus-course", json={"courseId": ""}))["focusCourseId"] is None


@pytest.mark.parametrize("kind, name", [
    (k.name, f.name) for k in RECORD_KINDS for f in k.fields if not f.nullable and f.type in ("string", "url", "int",
                                                                                            "enum", "date", "tags")
])
def test_a_field_that_is_not_nullable_still_refuses_an_empty_string(client, kind, name):
    base = route(client, kind)
    before = answer(client.get("/api/v1/courses"))
    resp = client.post(base, json={**sample(kind), name: ""})
    assert resp.status_code == 400 and name in resp.get_json()["error"]["fields"]
    assert answer(client.get("/api/v1/courses")) == before


def test_the_document_says_an_empty_string_is_null(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    link = doc["components"]["schemas"]["AssignmentCreate"]["properties"]["link"]
    assert {"type": "string", "enum": [""]} in link["anyOf"]
    title = doc["components"]["schemas"]["AssignmentCreate"]["properties"]["title"]
    assert "anyOf" not in title
