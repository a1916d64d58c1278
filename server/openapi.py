"""The OpenAPI 3 document, built from the same field definitions that validation uses
(records.KINDS and its patterns), so the two cannot drift apart. Pure: no I/O."""

from __future__ import annotations

from typing import Any

from server.records import (
    ASSIGNMENT,
    COURSE,
    DATE_RE,
    ID_RE,
    IF_MATCH_RE,
    KINDS,
    LECTURE,
    MAX_INT,
    NONBLANK_RE,
    SAFE_TEXT_RE,
    URL_MAX,
    URL_RE,
    USER,
    USER_BODIES,
    Field,
)

TIMESTAMP = {"type": "string", "format": "date-time", "pattern": r"Z$"}
ID = {"type": "string", "pattern": ID_RE.pattern, "maxLength": 128}
TITLES = {USER: "User", COURSE: "Course", LECTURE: "Lecture", ASSIGNMENT: "Assignment"}
MESSAGES = {
    400: "Invalid fields, a malformed body or a Host header not in ALLOWED_HOSTS",
    401: "A bearer token is required (API_TOKEN is set)",
    404: "No such record (or no such route)",
    409: "An id already used with other values, or by a deleted record; or sync is busy or off",
    412: "If-Match did not match; the body carries the current record",
    413: "The body is larger than 1 MiB",
    415: "The body is not application/json",
    503: "The store (or the hub) is unavailable",
}


def field_schema(f: Field) -> dict[str, Any]:
    t = f.type
    if t == "string":
        schema = {"type": "string", "minLength": 1, "maxLength": f.max_length, "pattern": NONBLANK_RE.pattern}
    elif t in ("text", "email"):
        schema = {"type": "string", "maxLength": f.max_length, "pattern": SAFE_TEXT_RE.pattern}
    elif t == "url":
        schema = {"type": "string", "maxLength": URL_MAX, "pattern": URL_RE.pattern}
    elif t == "ref":
        schema = dict(ID)
    elif t == "int":
        schema = {"type": "integer", "minimum": 1, "maximum": MAX_INT}
    elif t == "enum":
        schema = {"type": "string", "enum": list(f.choices)}
    elif t == "date":
        schema = {"type": "string", "format": "date", "pattern": DATE_RE.pattern}
    elif t == "tags":
        schema = {"type": "array", "maxItems": 100,
                  "items": {"type": "string", "maxLength": 100, "pattern": SAFE_TEXT_RE.pattern}}
    else:  # pragma: no cover - a new field type must be described here
        raise AssertionError(f"no schema for field type {t}")
    if f.nullable:
        schema["nullable"] = True
        if "enum" in schema:
            schema["enum"].append(None)
    return schema


def request_schema(kind: str, mode: str) -> dict[str, Any]:
    """The JSON Schema of a create or update body, exactly as strict as records.validate."""
    fields = [f for f in KINDS[kind].fields if (f.on_create if mode == "create" else f.on_update)]
    props = {f.name: field_schema(f) for f in fields}
    if mode == "create":
        props["id"] = dict(ID)
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    required = [f.name for f in fields if f.required and mode == "create"]
    if required:
        schema["required"] = required
    return schema


def user_request_schema(which: str) -> dict[str, Any]:
    """The body of PATCH /users/me (`profile`) or /users/me/focus-course (`focus`)."""
    key, field_name = USER_BODIES[which]
    return {"type": "object", "additionalProperties": False, "required": [key],
            "properties": {key: field_schema(KINDS[USER].by_name[field_name])}}


def record_schema(kind: str) -> dict[str, Any]:
    props: dict[str, Any] = {"id": {"type": "string"}}
    if kind in (LECTURE, ASSIGNMENT):
        props["courseId"] = {"type": "string"}
    for f in KINDS[kind].fields:
        schema = field_schema(f)
        schema.pop("pattern", None)  # seeded data may predate a pattern; answers are typed, not re-validated
        schema.pop("maxLength", None)
        schema.pop("minLength", None)
        props[f.name] = schema
    props["createdAt"] = TIMESTAMP
    props["updatedAt"] = TIMESTAMP
    if kind == COURSE:
        props["lectures"] = {"type": "array", "items": {"$ref": "#/components/schemas/Lecture"}}
        props["assignments"] = {"type": "array", "items": {"$ref": "#/components/schemas/Assignment"}}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def envelope(data: dict) -> dict:
    return {"type": "object", "required": ["data", "meta"], "additionalProperties": False,
            "properties": {"data": data, "meta": {"$ref": "#/components/schemas/Meta"}}}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


REQUEST_ID = {"X-Request-ID": {"required": True, "schema": {"type": "string"},
                               "description": "The traceId of this answer"}}
ETAG = {"ETag": {"required": True, "schema": {"type": "string"},
                 "description": "Send back in If-Match to update only what you read"}}


def _ok(schema: dict, description: str, etag: bool = False) -> dict:
    return {"description": description, "headers": {**REQUEST_ID, **(ETAG if etag else {})},
            "content": {"application/json": {"schema": envelope(schema)}}}


def _errors(statuses: list[int]) -> dict:
    return {str(s): {"description": MESSAGES[s], "headers": REQUEST_ID,
                     "content": {"application/json": {"schema": ref("Error")}}} for s in statuses}


def _op(op_id: str, summary: str, ok: dict[str, dict], errors: list[int], body: str | None = None,
        params: list[dict] | None = None, if_match: bool = False) -> dict:
    statuses = sorted({400, 503, *errors} | ({415, 413} if body else set()) | ({412} if if_match else set()))
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": {**ok, **_errors(statuses)}}
    parameters = list(params or [])
    if if_match:
        parameters.append({"name": "If-Match", "in": "header", "required": False,
                           "schema": {"type": "string", "pattern": IF_MATCH_RE.pattern},
                           "description": "An ETag from an earlier answer: write only if unchanged"})
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    return op


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def build_document(*, token_required: bool = False) -> dict[str, Any]:
    course_p, lecture_p, assignment_p = _path_param("courseId"), _path_param("lectureId"), _path_param("assignmentId")
    deleted = {"type": "object", "required": ["id", "deleted"], "additionalProperties": False,
               "properties": {"id": {"type": "string"}, "deleted": {"type": "boolean", "enum": [True]}}}
    rec = {k: ref(TITLES[k]) for k in TITLES}
    paths: dict[str, dict] = {
        "/health": {"get": _op("health", "Liveness and store state", {"200": _ok(ref("Health"), "Healthy")}, [])},
        "/openapi.json": {"get": _op("openapi", "This document", {"200": {
            "description": "OpenAPI document", "headers": REQUEST_ID,
            "content": {"application/json": {"schema": {"type": "object"}}}}}, [])},
        "/users/me": {
            "get": _op("getUser", "The learner", {"200": _ok(rec[USER], "The user", True)}, []),
            "patch": _op("updateUser", "Rename the learner", {"200": _ok(rec[USER], "The user", True)}, [],
                         "UserUpdate", if_match=True),
        },
        "/users/me/focus-course": {"patch": _op(
            "setFocusCourse", "Set or clear the focus course", {"200": _ok(rec[USER], "The user", True)}, [404],
            "FocusCourse", if_match=True)},
        "/users/me/export": {"get": _op("exportUser", "Everything, for backup", {"200": _ok(ref("Export"), "Export")},
                                        [])},
        "/courses": {
            "get": _op("listCourses", "Every course with lectures and assignments",
                       {"200": _ok({"type": "array", "items": rec[COURSE]}, "Courses")}, []),
            "post": _op("createCourse", "Create a course (a client id makes retries safe)",
                        {"201": _ok(rec[COURSE], "Created", True), "200": _ok(rec[COURSE], "Already there", True)},
                        [409], "CourseCreate"),
        },
        "/courses/{courseId}": {
            "get": _op("getCourse", "One course", {"200": _ok(rec[COURSE], "The course", True)}, [404],
                       params=[course_p]),
            "patch": _op("updateCourse", "Edit a course", {"200": _ok(rec[COURSE], "The course", True)}, [404],
                         "CourseUpdate", [course_p], if_match=True),
            "delete": _op("deleteCourse", "Delete a course with its lectures and assignments",
                          {"200": _ok(deleted, "Deleted")}, [404], params=[course_p], if_match=True),
        },
        "/courses/{courseId}/lectures": {"post": _op(
            "createLecture", "Add a lecture", {"201": _ok(rec[LECTURE], "Created", True),
                                               "200": _ok(rec[LECTURE], "Already there", True)},
            [404, 409], "LectureCreate", [course_p])},
        "/courses/{courseId}/lectures/{lectureId}": {
            "patch": _op("updateLecture", "Edit a lecture", {"200": _ok(rec[LECTURE], "The lecture", True)}, [404],
                         "LectureUpdate", [course_p, lecture_p], if_match=True),
            "delete": _op("deleteLecture", "Delete a lecture", {"200": _ok(deleted, "Deleted")}, [404],
                          params=[course_p, lecture_p], if_match=True),
        },
        "/courses/{courseId}/assignments": {"post": _op(
            "createAssignment", "Add an assignment", {"201": _ok(rec[ASSIGNMENT], "Created", True),
                                                      "200": _ok(rec[ASSIGNMENT], "Already there", True)},
            [404, 409], "AssignmentCreate", [course_p])},
        "/courses/{courseId}/assignments/{assignmentId}": {
            "patch": _op("updateAssignment", "Edit an assignment",
                         {"200": _ok(rec[ASSIGNMENT], "The assignment", True)}, [404], "AssignmentUpdate",
                         [course_p, assignment_p], if_match=True),
            "delete": _op("deleteAssignment", "Delete an assignment", {"200": _ok(deleted, "Deleted")}, [404],
                          params=[course_p, assignment_p], if_match=True),
        },
        "/sync": {"post": _op("syncNow", "Run one sync round now", {"200": _ok(ref("SyncReport"), "The round")},
                              [409])},
        "/sync/status": {"get": _op("syncStatus", "Sync state", {"200": _ok(ref("SyncStatus"), "Status")}, [])},
        "/sync/conflicts": {"get": _op(
            "syncConflicts", "Values that lost a merge, newest first",
            {"200": _ok({"type": "array", "items": ref("Conflict")}, "Conflicts")}, [],
            params=[{"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}])},
    }
    if token_required:
        for route, item in paths.items():
            for op in item.values():
                if route != "/health":
                    op["security"] = [{"bearer": []}]
                    op["responses"].update(_errors([401]))
    schemas: dict[str, Any] = {TITLES[k]: record_schema(k) for k in TITLES}
    for kind in (COURSE, LECTURE, ASSIGNMENT):
        schemas[f"{TITLES[kind]}Create"] = request_schema(kind, "create")
        schemas[f"{TITLES[kind]}Update"] = request_schema(kind, "update")
    schemas.update(UserUpdate=user_request_schema("profile"), FocusCourse=user_request_schema("focus"))
    schemas.update({
        "Meta": {"type": "object", "required": ["traceId"], "properties": {"traceId": {"type": "string"}}},
        "Error": {"type": "object", "required": ["error", "meta"], "properties": {
            "error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                "current": {"type": "object"}, "report": {"type": "object"}}},
            "meta": ref("Meta")}},
        "Health": {"type": "object", "required": ["status"], "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]}, "store": {"type": "object"},
            "hub": {"type": "object"}}},
        "Export": {"type": "object", "required": ["user", "courses", "exportedAt", "version"],
                   "additionalProperties": False, "properties": {
                       "user": ref("User"), "courses": {"type": "array", "items": ref("Course")},
                       "exportedAt": TIMESTAMP, "version": {"type": "integer"}}},
        "SyncReport": {"type": "object", "required": ["pushed", "pulled", "conflicts", "durationMs", "error"],
                       "properties": {"pushed": {"type": "integer"}, "pulled": {"type": "integer"},
                                      "conflicts": {"type": "integer"}, "durationMs": {"type": "number"},
                                      "error": {"type": "string", "nullable": True}}},
        "SyncStatus": {"type": "object", "required": ["enabled", "state", "deviceId", "userId"], "properties": {
            "enabled": {"type": "boolean"}, "deviceId": {"type": "string"}, "userId": {"type": "string"},
            "state": {"type": "string", "enum": ["disabled", "idle", "running", "backing_off"]}}},
        "Conflict": {"type": "object", "required": ["kind", "recordId", "field", "winner", "detectedAt"]},
    })
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "coursesync local API", "version": "1.0.0",
                 "description": "The course tracker's REST API, served from the device's own store."},
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if token_required:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc
