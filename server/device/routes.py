"""The routes of API.md, declared once each as an `Operation` (server/web/openapi.py) that both
Flask and the OpenAPI document are built from. The create, edit and delete routes of every
record kind come from the kinds table. Views parse, make one connector call and shape the
answer; no SQL, no pymongo and no sync logic here."""

from __future__ import annotations

import functools

from flask import Blueprint, current_app, request

from server.connectors.base import DatabaseConnector
from server.core.records import RECORD_KINDS, Kind, validate, validate_user_body
from server.core.times import iso_now
from server.web import http
from server.web.http import envelope, if_match, json_object, record_answer
from server.web.openapi import Operation, build_document, record_operations

EXPORT_VERSION = 1
bp = Blueprint("api", __name__, url_prefix="/api/v1")
OPERATIONS: list[Operation] = []


route = http.declaring(bp, OPERATIONS)


def store() -> DatabaseConnector:
    return current_app.extensions["store"]


@route(Operation("get", "/", "apiIndex", "Where things are: this API's document, its main resources and the sync page",
                 {"200": ("ApiIndex", "The links", False)}, public=True))
def api_index():
    return envelope({"name": "coursesync", "api": "v1", "documentation": "/api/v1/openapi.json", "links": {
        "openapi": "/api/v1/openapi.json", "health": "/api/v1/health", "user": "/api/v1/users/me",
        "courses": "/api/v1/courses", "export": "/api/v1/users/me/export", "syncStatus": "/api/v1/sync/status",
        "conflicts": "/api/v1/sync/conflicts", "syncPage": "/sync"}})


@route(Operation("get", "/openapi.json", "openapi", "This document",
                 {"200": ({"type": "object"}, "OpenAPI document", False)}, enveloped=False))
def openapi_document():
    return http.cached_document("openapi", lambda: build_document(
        current_app.extensions["operations"], token_required=bool(current_app.config["SETTINGS"].api_token)))


@route(Operation("get", "/health", "health", "Liveness and store state", {"200": ("Health", "Healthy", False)},
                 public=True))
def health():
    sync = current_app.extensions.get("sync")
    return http.health_answer("The local", hub=sync.health() if sync else {"enabled": False})


# --- the user ----------------------------------------------------------------------------
USER_ANSWER = {"200": ("User", "The user", True)}


@route(Operation("get", "/users/me", "getUser", "The learner", USER_ANSWER))
def get_me():
    return record_answer(store().get_user())


@route(Operation("patch", "/users/me", "updateUser", "Rename the learner", USER_ANSWER, body="UserUpdate",
                 if_match=True))
def patch_me():
    name = validate_user_body(json_object(), "profile")
    return record_answer(store().update_user_profile(name, if_match=if_match()))


@route(Operation("patch", "/users/me/focus-course", "setFocusCourse", "Set or clear the focus course",
                 USER_ANSWER, (404,), "FocusCourse", if_match=True))
def patch_focus():
    course_id = validate_user_body(json_object(), "focus")
    return record_answer(store().set_focus_course(course_id, if_match=if_match()))


@route(Operation("get", "/users/me/export", "exportUser", "Everything, for backup",
                 {"200": ("Export", "Export", False)}))
def export_me():
    now = iso_now()
    return envelope({"user": store().get_user(), "courses": store().get_courses(),
                     "exportedAt": now, "version": EXPORT_VERSION})


# --- course trees ------------------------------------------------------------------------
@route(Operation("get", "/courses", "listCourses", "Every course with its lectures and assignments",
                 {"200": ({"type": "array", "items": {"$ref": "#/components/schemas/Course"}}, "Courses", False)}))
def list_courses():
    return envelope(store().get_courses())


@route(Operation("get", "/courses/<course_id>", "getCourse", "One course",
                 {"200": ("Course", "The course", True)}, (404,)))
def get_course(course_id: str):
    return record_answer(store().get_course(course_id))


# --- every record kind: create, edit, delete -----------------------------------------------
def _parent_id(kind: Kind, ids: dict[str, str]) -> str | None:
    return ids[f"{kind.parent}_id"] if kind.parent else None


def create_record(kind: Kind, **ids: str):
    new = validate(kind.name, json_object(), "create")
    record, created = store().create(kind.name, _parent_id(kind, ids), new)
    status, headers = (201, {"Location": f"{request.path}/{record['id']}"}) if created else (200, None)
    return record_answer(record, status, headers)


def update_record(kind: Kind, **ids: str):
    updates = validate(kind.name, json_object(), "update")
    record = store().update(kind.name, _parent_id(kind, ids), ids[f"{kind.name}_id"], updates, if_match=if_match())
    return record_answer(record)


def delete_record(kind: Kind, **ids: str):
    record_id = ids[f"{kind.name}_id"]
    store().delete(kind.name, _parent_id(kind, ids), record_id, if_match=if_match())
    return envelope({"id": record_id, "deleted": True})


VIEWS = {"post": create_record, "patch": update_record, "delete": delete_record}
for _kind in RECORD_KINDS:
    for _op in record_operations(_kind):
        route(_op)(functools.partial(VIEWS[_op.method], _kind))
