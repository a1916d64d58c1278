"""The OpenAPI 3 document, built from the route table (the `Operation`s the route modules
register) and the same field definitions that validation uses (records.KINDS and its patterns),
so the document, the routes and the validation cannot drift apart. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from server.core.records import (
    DATE_RE,
    ID_RE,
    IF_MATCH_RE,
    KINDS,
    MAX_INT,
    NONBLANK_RE,
    SAFE_TEXT_RE,
    URL_MAX,
    URL_RE,
    USER,
    USER_BODIES,
    Field,
    Kind,
    children_of,
)

TIMESTAMP = {"type": "string", "format": "date-time", "pattern": r"Z$"}
ID = {"type": "string", "pattern": ID_RE.pattern, "maxLength": 128}
MESSAGES = {
    400: "Invalid fields, a malformed body or a Host header not in ALLOWED_HOSTS",
    401: "A bearer token is required (API_TOKEN is set; on a hub, a device token), or it was revoked",
    403: "Another device owns an origin of this batch: nothing was written",
    404: "No such record (or no such route)",
    409: "An id already used with other values, or by a deleted record; or sync is busy or off",
    412: "If-Match did not match; the body carries the current record",
    413: "The body is larger than 1 MiB",
    415: "The body is not application/json",
    502: "The hub named by an invitation cannot be reached, is not a coursesync hub, or failed the TLS check",
    503: "The store (or the hub) is unavailable",
}


def field_schema(f: Field) -> dict[str, Any]:
    t = f.type
    schema: dict[str, Any]
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


def input_schema(f: Field) -> dict[str, Any]:
    """What a request may send for a field: a nullable one also takes "" (null), as HTML forms
    send an optional input left empty."""
    schema = field_schema(f)
    if not f.nullable:
        return schema
    return {"anyOf": [schema, {"type": "string", "enum": [""]}], "description": '"" means null'}


def request_schema(kind: str, mode: str) -> dict[str, Any]:
    """The JSON Schema of a create or update body, exactly as strict as records.validate."""
    fields = [f for f in KINDS[kind].fields if (f.on_create if mode == "create" else f.on_update)]
    props = {f.name: input_schema(f) for f in fields}
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
            "properties": {key: input_schema(KINDS[USER].by_name[field_name])}}


def record_schema(kind: str) -> dict[str, Any]:
    props: dict[str, Any] = {"id": {"type": "string"}}
    if KINDS[kind].parent:
        props[f"{KINDS[kind].parent}Id"] = {"type": "string"}
    for f in KINDS[kind].fields:
        schema = field_schema(f)
        schema.pop("pattern", None)  # seeded data may predate a pattern; answers are typed, not re-validated
        schema.pop("maxLength", None)
        schema.pop("minLength", None)
        props[f.name] = schema
    props["createdAt"] = TIMESTAMP
    props["updatedAt"] = TIMESTAMP
    for child in children_of(kind):
        props[child.plural] = {"type": "array", "items": ref(child.title)}
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


def _ok(schema: dict, description: str, etag: bool = False, enveloped: bool = True) -> dict:
    return {"description": description, "headers": {**REQUEST_ID, **(ETAG if etag else {})},
            "content": {"application/json": {"schema": envelope(schema) if enveloped else schema}}}


HUB_MESSAGES = {
    **MESSAGES,
    403: "Another device owns an origin of this batch, or a relay's: nothing was written",
    413: "The body is larger than 8 MiB, as sent or inflated",
    429: "This device is over one of its quotas (requests at once, refusals a minute, origins): see Retry-After",
    410: "The invitation was used, revoked or expired: ask for a new one",
}


def _errors(statuses: list[int], messages: dict[int, str] = MESSAGES) -> dict:
    return {str(s): {"description": messages[s], "headers": REQUEST_ID,
                     "content": {"application/json": {"schema": ref("Error")}}} for s in statuses}


@dataclass(frozen=True)
class Operation:
    """One route: what Flask registers and what the document says of it."""

    method: str  # get, post, patch, delete
    path: str  # a Flask rule under /api/v1, e.g. /courses/<course_id>
    op_id: str
    summary: str
    answers: dict[str, tuple[Any, str, bool]]  # status -> (schema, or a schema's name; description; ETag)
    errors: tuple[int, ...] = ()
    body: str | None = None  # the name of the request body's schema
    if_match: bool = False
    query: tuple[dict, ...] = ()
    public: bool = False  # answered without API_TOKEN
    enveloped: bool = True  # the answer is {"data", "meta"} (all but this document itself)

    @property
    def document_path(self) -> str:
        return re.sub(r"<(\w+)>", lambda m: "{" + _camel(m.group(1)) + "}", self.path)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


DELETED = {"type": "object", "required": ["id", "deleted"], "additionalProperties": False,
           "properties": {"id": {"type": "string"}, "deleted": {"type": "boolean", "enum": [True]}}}


def record_operations(kind: Kind) -> list[Operation]:
    """Create, edit and delete of one record kind, under its parent's record when it has one."""
    collection = f"/{kind.plural}"
    if kind.parent:
        collection = f"/{KINDS[kind.parent].plural}/<{kind.parent}_id>{collection}"
    item = f"{collection}/<{kind.name}_id>"
    record, parent_missing = kind.title, (404,) if kind.parent else ()
    a = "an" if kind.name[0] in "aeiou" else "a"
    cascade = " and ".join(c.plural for c in children_of(kind.name))
    deleting = f"Delete {a} {kind.name}" + (f" with its {cascade}" if cascade else "")
    return [
        Operation("post", collection, f"create{record}", f"Create {a} {kind.name} (a client id makes retries safe)",
                  {"201": (record, "Created", True), "200": (record, "Already there", True)},
                  (*parent_missing, 409), f"{record}Create"),
        Operation("patch", item, f"update{record}", f"Edit {a} {kind.name}",
                  {"200": (record, f"The {kind.name}", True)}, (404,), f"{record}Update", if_match=True),
        Operation("delete", item, f"delete{record}", deleting, {"200": (DELETED, "Deleted", False)}, (404,),
                  if_match=True),
    ]


def operation_object(op: Operation, token_required: bool, hub: bool = False) -> dict[str, Any]:
    statuses = {400, 503, *op.errors} | ({415, 413} if op.body else set()) | ({412} if op.if_match else set())
    if token_required and not op.public:
        statuses.add(401)
        if hub:
            statuses.add(429)
    answers = {status: _ok(ref(schema) if isinstance(schema, str) else schema, description, etag, op.enveloped)
               for status, (schema, description, etag) in op.answers.items()}
    out: dict[str, Any] = {"operationId": op.op_id, "summary": op.summary,
                           "responses": {**answers, **_errors(sorted(statuses), HUB_MESSAGES if hub else MESSAGES)}}
    parameters = [_path_param(name) for name in re.findall(r"\{(\w+)\}", op.document_path)] + list(op.query)
    if op.if_match:
        parameters.append({"name": "If-Match", "in": "header", "required": False,
                           "schema": {"type": "string", "pattern": IF_MATCH_RE.pattern},
                           "description": "An ETag from an earlier answer: write only if unchanged"})
    if parameters:
        out["parameters"] = parameters
    if op.body:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(op.body)}}}
    if token_required and not op.public:
        out["security"] = [{"bearer": []}]
    return out


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


COMMON_SCHEMAS = {
    "Meta": {"type": "object", "required": ["traceId"], "properties": {"traceId": {"type": "string"}}},
    "Error": {"type": "object", "required": ["error", "meta"], "properties": {
        "error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"}},
            "current": {"type": "object"}, "report": {"type": "object"}}},
        "meta": ref("Meta")}},
}
# The device API's own schemas, beside those of the kinds and the shared ones.
DEVICE_SCHEMAS: dict[str, Any] = {
    "ApiIndex": {"type": "object", "required": ["name", "api", "links"], "properties": {
        "name": {"type": "string"}, "api": {"type": "string"}, "documentation": {"type": "string"},
        "links": {"type": "object", "additionalProperties": {"type": "string"}}}},
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
    "SyncStatus": {"type": "object", "required": ["enabled", "state", "origin", "deviceId", "userId"], "properties": {
        "enabled": {"type": "boolean"}, "origin": {"type": "string", "description": "the store's origin"},
        "deviceId": {"type": "string", "deprecated": True,
                     "description": "the same as origin, under its old name; kept for one release"},
        "userId": {"type": "string"},
        "state": {"type": "string", "enum": ["disabled", "idle", "live", "running", "backing_off"]},
        "live": {"type": "object", "description": "the wait held at the hub: waiting, timer, retrying or off"},
        "resolvedConflictsKeptDays": {"type": "number", "nullable": True,
                                      "description": "a resolved conflict is forgotten after so many days (null: "
                                                     "sync off, nothing ages)"}}},
    "Conflict": {"type": "object", "required": ["id", "kind", "recordId", "field", "winner", "detectedAt",
                                                "resolution"],
                 "properties": {"id": {"type": "string"}, "resolution": {
                     "type": "object", "nullable": True, "required": ["action", "at"],
                     "properties": {"action": {"type": "string", "enum": ["restored", "dismissed", "superseded"]},
                                    "at": TIMESTAMP, "edit": {"type": "object", "nullable": True}}}}},
    "SyncRequest": {"type": "object", "additionalProperties": False, "properties": {}},
    "HubInvitation": {"type": "object", "additionalProperties": False, "required": ["invitation"], "properties": {
        "invitation": {"type": "string", "maxLength": 2000,
                       "description": "as `hub invite` printed it: coursesync://host[:port][/path]#csi_..."}}},
    "Quarantined": {"type": "object", "required": ["id", "origin", "seq", "reason", "receivedAt", "change"],
                    "properties": {"id": {"type": "string"}, "origin": {"type": "string", "nullable": True},
                                   "seq": {"type": "integer", "nullable": True}, "reason": {"type": "string"},
                                   "code": {"type": "string", "description": "the refusal's stable code, with its "
                                            "fields beside it (server/core/changes.py, REFUSALS); absent from "
                                            "an entry kept before codes"},
                                   "receivedAt": TIMESTAMP, "change": {"type": "string"}}},
}


def kind_schemas() -> dict[str, Any]:
    """Each kind's record, and the create and update bodies of the kinds a client makes."""
    schemas: dict[str, Any] = {k.title: record_schema(k.name) for k in KINDS.values()}
    for kind in KINDS.values():
        if kind.name != USER:
            schemas[f"{kind.title}Create"] = request_schema(kind.name, "create")
            schemas[f"{kind.title}Update"] = request_schema(kind.name, "update")
    schemas.update(UserUpdate=user_request_schema("profile"), FocusCourse=user_request_schema("focus"))
    return schemas


def build_document(operations: list[Operation], *, token_required: bool = False) -> dict[str, Any]:
    paths: dict[str, dict] = {}
    for op in operations:
        paths.setdefault(op.document_path, {})[op.method] = operation_object(op, token_required)
    schemas = {**kind_schemas(), **COMMON_SCHEMAS, **DEVICE_SCHEMAS}
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
