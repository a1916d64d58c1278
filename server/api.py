"""The Flask app factory and the routes of API.md. Views parse, make one connector call and
shape the answer; no SQL, no pymongo and no sync logic here."""

from __future__ import annotations

import atexit
import json
import logging
import time
from typing import Any

from flask import Blueprint, Flask, current_app

from server import cli, http, sync_routes
from server.config import Settings, load_settings
from server.connectors.base import DatabaseConnector
from server.connectors.factory import get_db_connector
from server.http import envelope, if_match, json_object, record_answer
from server.openapi import build_document
from server.records import ASSIGNMENT, COURSE, LECTURE, iso_now_from_ms, validate, validate_user_body

EXPORT_VERSION = 1
bp = Blueprint("api", __name__, url_prefix="/api/v1")


def store() -> DatabaseConnector:
    return current_app.extensions["store"]


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Defaults, then settings from the environment (or `test_config["SETTINGS"]`), then the
    rest of the test mapping. `test_config["STORE"]` may supply an already built connector."""
    app = Flask(__name__)
    test_config = dict(test_config or {})
    settings: Settings = test_config.pop("SETTINGS", None) or load_settings()
    app.config.update(SETTINGS=settings, MAX_CONTENT_LENGTH=1024 * 1024, START_SYNC=True)
    app.config.update(test_config)
    connector = app.config.pop("STORE", None)
    if connector is None:
        connector = get_db_connector(settings.db_connector, settings)
        connector.connect()
        atexit.register(connector.close)
    app.extensions["store"] = connector
    http.install(app)
    app.register_blueprint(bp)
    sync_routes.install(app)
    cli.install(app)
    return app


@bp.get("/openapi.json")
def openapi_document():
    doc = current_app.extensions.get("openapi")
    if doc is None:
        doc = current_app.extensions["openapi"] = build_document(
            token_required=bool(current_app.config["SETTINGS"].api_token))
    return current_app.response_class(json.dumps(doc), mimetype="application/json")


# --- health and the user -----------------------------------------------------------------
@bp.get("/health")
def health():
    if not store().ping():
        return http.error(503, "store_unavailable", "The local store does not answer.")
    sync = current_app.extensions.get("sync")
    return envelope({"status": "ok", "store": {"kind": current_app.config["SETTINGS"].db_connector, "ok": True},
                     "hub": sync.health() if sync else {"enabled": False}})


@bp.get("/users/me")
def get_me():
    return record_answer(store().get_user())


@bp.patch("/users/me")
def patch_me():
    name = validate_user_body(json_object(), "profile")
    return record_answer(store().update_user_profile(name, if_match=if_match()))


@bp.patch("/users/me/focus-course")
def patch_focus():
    course_id = validate_user_body(json_object(), "focus")
    return record_answer(store().set_focus_course(course_id, if_match=if_match()))


@bp.get("/users/me/export")
def export_me():
    now = iso_now_from_ms(int(time.time() * 1000))
    return envelope({"user": store().get_user(), "courses": store().get_courses(),
                     "exportedAt": now, "version": EXPORT_VERSION})


# --- courses -----------------------------------------------------------------------------
def _created(record: dict, created: bool, location: str):
    return record_answer(record, 201 if created else 200, {"Location": location} if created else None)


def _deleted(record_id: str):
    return envelope({"id": record_id, "deleted": True})


@bp.get("/courses")
def list_courses():
    return envelope(store().get_courses())


@bp.post("/courses")
def create_course():
    course, created = store().create("course", None, validate(COURSE, json_object(), "create"))
    return _created(course, created, f"/api/v1/courses/{course['id']}")


@bp.get("/courses/<course_id>")
def get_course(course_id: str):
    return record_answer(store().get_course(course_id))


@bp.patch("/courses/<course_id>")
def patch_course(course_id: str):
    updates = validate(COURSE, json_object(), "update")
    return record_answer(store().update("course", None, course_id, updates, if_match=if_match()))


@bp.delete("/courses/<course_id>")
def delete_course(course_id: str):
    store().delete("course", None, course_id, if_match=if_match())
    return _deleted(course_id)


# --- lectures and assignments -------------------------------------------------------------
@bp.post("/courses/<course_id>/lectures")
def create_lecture(course_id: str):
    lecture, created = store().create("lecture", course_id, validate(LECTURE, json_object(), "create"))
    return _created(lecture, created, f"/api/v1/courses/{course_id}/lectures/{lecture['id']}")


@bp.patch("/courses/<course_id>/lectures/<lecture_id>")
def patch_lecture(course_id: str, lecture_id: str):
    updates = validate(LECTURE, json_object(), "update")
    return record_answer(store().update("lecture", course_id, lecture_id, updates, if_match=if_match()))


@bp.delete("/courses/<course_id>/lectures/<lecture_id>")
def delete_lecture(course_id: str, lecture_id: str):
    store().delete("lecture", course_id, lecture_id, if_match=if_match())
    return _deleted(lecture_id)


@bp.post("/courses/<course_id>/assignments")
def create_assignment(course_id: str):
    new = validate(ASSIGNMENT, json_object(), "create")
    assignment, created = store().create("assignment", course_id, new)
    return _created(assignment, created, f"/api/v1/courses/{course_id}/assignments/{assignment['id']}")


@bp.patch("/courses/<course_id>/assignments/<assignment_id>")
def patch_assignment(course_id: str, assignment_id: str):
    updates = validate(ASSIGNMENT, json_object(), "update")
    return record_answer(store().update("assignment", course_id, assignment_id, updates, if_match=if_match()))


@bp.delete("/courses/<course_id>/assignments/<assignment_id>")
def delete_assignment(course_id: str, assignment_id: str):
    store().delete("assignment", course_id, assignment_id, if_match=if_match())
    return _deleted(assignment_id)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
