"""Record kinds, their fields and validation: one set of definitions shared by the API, the
seeders and the OpenAPI document. Pure: no I/O."""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Any, Callable

from server.core.errors import ValidationError

USER, COURSE, LECTURE, ASSIGNMENT = "user", "course", "lecture", "assignment"

COURSE_STATUS = ("active", "completed", "parked")
LECTURE_STATUS = ("not_started", "in_progress", "completed")
ASSIGNMENT_STATUS = ("not_started", "in_progress", "submitted", "skipped")

# Ids travel in URLs: unreserved characters only, so a slash, a percent sign or a `$` can never
# reach a store query or a path segment.
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~:-]{0,127}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Text may hold anything but NUL; "blank" means ASCII whitespace only. These patterns are also
# the OpenAPI document's, so the document and the validation cannot disagree. (Lone surrogates
# are refused too: they are not Unicode text at all, so no schema string can contain one.)
SAFE_TEXT_RE = re.compile(r"^[^\x00]*$")
NONBLANK_RE = re.compile(r"^[^\x00]*[^\x00\t\n\v\f\r ][^\x00]*$")
URL_RE = re.compile(
    r"^[Hh][Tt][Tt][Pp][Ss]?://"
    r"(?:[A-Za-z0-9._~%!$&'()*+,;=-]+(?::[A-Za-z0-9._~%!$&'()*+,;=-]*)?@)?"  # user[:password]@
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?"  # host
    r"(?::[0-9]{1,5})?"  # port
    r"(?:[/?#][!-~]*)?$"  # path, query, fragment: printable ASCII, no spaces
)
URL_MAX = 2048
EPOCH_START = "1970-01-01T00:00:00Z"  # createdAt of a record never written (a default user)
IF_MATCH_RE = re.compile(r'^(\*|(W/)?"[!#-~]*"( *, *(W/)?"[!#-~]*")*)$')  # RFC 9110 entity tags
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
MAX_INT = 1_000_000

# Written with every change but never reported as conflicts: they follow the edit they stamp.
META_FIELDS = ("createdAt", "updatedAt")


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # string | text | url | int | enum | date | tags | ref | email | timestamp
    required: bool = False  # on create
    nullable: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    max_length: int = 10_000
    on_create: bool = True
    on_update: bool = True


@dataclass(frozen=True)
class Kind:
    """A record kind: everything else (routes, store queries, the OpenAPI document, seed files,
    the course tree) is derived from this table, so a new kind is one entry here."""

    name: str
    plural: str  # its collection in URLs, in a course's tree and in seed files
    fields: tuple[Field, ...]
    parent: str | None = None  # records of this kind live under one record of that kind
    order_by: tuple[str, ...] = ("createdAt", "id")  # how a parent's tree lists them

    @property
    def by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    @property
    def not_found_code(self) -> str:
        return f"{self.name}_not_found"

    @property
    def title(self) -> str:
        return self.name.capitalize()

    def defaults(self) -> dict[str, Any]:
        return {f.name: _copy(f.default) for f in self.fields}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


KINDS: dict[str, Kind] = {
    USER: Kind(
        USER, "users",
        (
            Field("email", "email", default="", max_length=320, on_create=False, on_update=False),
            Field("displayName", "string", required=True, default="Learner", max_length=200),
            Field("focusCourseId", "ref", nullable=True, on_create=False, on_update=False),
        ),
    ),
    COURSE: Kind(
        COURSE, "courses",
        (
            Field("title", "string", required=True, max_length=500),
            Field("description", "text", default=""),
            Field("source", "url", required=True),
            Field("status", "enum", default="active", choices=COURSE_STATUS),
            Field("tags", "tags", default=[]),
            Field("notes", "text", default="", max_length=100_000),
        ),
    ),
    LECTURE: Kind(
        LECTURE, "lectures",
        (
            Field("order", "int", required=True),
            Field("title", "string", required=True, max_length=500),
            Field("videoUrl", "url", required=True),
            Field("durationMinutes", "int", nullable=True),
            Field("status", "enum", default="not_started", choices=LECTURE_STATUS),
            Field("note", "text", default="", max_length=100_000),
        ),
        parent=COURSE,
        order_by=("order", "createdAt", "id"),
    ),
    ASSIGNMENT: Kind(
        ASSIGNMENT, "assignments",
        (
            Field("title", "string", required=True, max_length=500),
            Field("status", "enum", default="not_started", choices=ASSIGNMENT_STATUS),
            Field("dueDate", "date", nullable=True),
            Field("link", "url", nullable=True),
            Field("note", "text", default="", max_length=100_000),
        ),
        parent=COURSE,
    ),
}
# What a person calls each field (the sync page names a value that lost a merge by it).
LABELS = {
    "email": "email", "displayName": "your name", "focusCourseId": "focus course", "title": "title",
    "description": "description", "source": "source link", "status": "status", "tags": "tags", "notes": "notes",
    "order": "place in the course", "videoUrl": "video link", "durationMinutes": "length in minutes",
    "note": "note", "dueDate": "due date", "link": "link",
}
# The kinds the API creates, edits and deletes (the user is one record, edited by its own routes).
RECORD_KINDS = tuple(k for k in KINDS.values() if k.name != USER)
CHILD_KINDS = tuple(k.name for k in KINDS.values() if k.parent == COURSE)
CHILD_PLURALS = tuple(KINDS[k].plural for k in CHILD_KINDS)


def children_of(kind: str) -> tuple[Kind, ...]:
    return tuple(k for k in KINDS.values() if k.parent == kind)


def _check_table() -> None:
    """What the rest of the code relies on: only courses have children (records are keyed and
    exported with one `courseId`), and a kind's plural, which names it in its parent's tree,
    never hides one of the parent's own fields."""
    for kind in KINDS.values():
        if kind.parent is None:
            continue
        if kind.parent != COURSE:
            raise AssertionError(f"{kind.name}: only a course can be a parent")
        if kind.plural in KINDS[COURSE].by_name or kind.plural in ("id", "createdAt", "updatedAt"):
            raise AssertionError(f"{kind.name}: its plural {kind.plural!r} is a field of the course")


_check_table()


def check_value(f: Field, value: Any) -> tuple[Any, str | None]:
    """Validate one value; return (normalised value, None) or (None, reason)."""
    if value is None:
        return (None, None) if f.nullable else (None, "must not be null")
    problem = CHECKS[f.type](f, value)
    if problem:
        return None, problem
    return (list(value) if f.type == "tags" else value), None


def _string(shape: Callable[[str], Any] | None = None, reason: str = "") -> Callable[[Field, Any], str | None]:
    def check(f: Field, value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a string"
        problem = _string_problem(value, f.max_length)
        if problem is None and shape is not None and not shape(value):
            return reason
        return problem
    return check


def _int_problem(f: Field, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an integer"
    if value < 1:
        return "must be at least 1"
    return f"must be at most {MAX_INT}" if value > MAX_INT else None


def _enum_problem(f: Field, value: Any) -> str | None:
    return None if isinstance(value, str) and value in f.choices else "must be one of: " + ", ".join(f.choices)


def _tags_problem(f: Field, value: Any) -> str | None:
    if not isinstance(value, list) or len(value) > 100:
        return "must be a list of at most 100 strings"
    for tag in value:
        if not isinstance(tag, str):
            return "must be a list of strings"
        problem = _string_problem(tag, 100)
        if problem:
            return "each tag " + problem
    return None


def _string_problem(value: str, max_length: int) -> str | None:
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    if "\x00" in value:  # SAFE_TEXT_RE, without a regular expression's scan: every change pays it
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host name, in printable ASCII (non-ASCII characters must
    be percent-encoded, as the URL standard serialises them)."""
    return len(value) <= URL_MAX and URL_RE.match(value) is not None


def is_date(value: str) -> bool:
    if not DATE_RE.match(value):
        return False
    try:
        dt.date.fromisoformat(value)
        return True
    except ValueError:
        return False


def is_timestamp(value: str) -> bool:
    if not TIMESTAMP_RE.match(value):
        return False
    try:
        dt.datetime.fromisoformat(value[:-1])
        return True
    except ValueError:
        return False


CHECKS: dict[str, Callable[[Field, Any], str | None]] = {
    "string": _string(lambda v: v.strip("\t\n\v\f\r "), "must be a non-empty string"),  # NONBLANK_RE
    "text": _string(),
    "email": _string(),
    "url": _string(is_http_url, "must be an http or https URL (spaces and non-ASCII characters percent-encoded)"),
    "date": _string(is_date, "must be a calendar date as YYYY-MM-DD"),
    "timestamp": _string(is_timestamp, "must be an ISO-8601 UTC timestamp ending in Z"),
    "ref": _string(ID_RE.match, "must be a record id"),
    "int": _int_problem,
    "enum": _enum_problem,
    "tags": _tags_problem,
}
ID_PROBLEM = "must be 1-128 letters, digits or . _ ~ : - (not starting with a symbol)"
TIMESTAMPS = (Field("createdAt", "timestamp"), Field("updatedAt", "timestamp"))


def check_fields(kind: str, body: Any, mode: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(clean fields, problems by key) for a body of `kind`. `create` and `update`: what the API
    takes (a client `id` optional on create; defaults filled in on create). `stored`: a whole
    record as a seed file holds it: its `id` required, every field allowed, `createdAt` and
    `updatedAt` as timestamps, defaults filled in. `change`: the fields a change writes, any of
    a record's fields and its timestamps, nothing required. Nothing about the store is consulted."""
    if not isinstance(body, dict):
        return {}, {"body": "must be a JSON object"}
    allowed = _allowed(kind, mode)
    problems: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for key, value in body.items():
        if key == "id" and mode in ("create", "stored"):
            ok = is_id(value)
            clean["id"] = value
            if not ok:
                problems["id"] = ID_PROBLEM
            continue
        f = allowed.get(key)
        if f is None:
            problems[_field_label(key)] = "unknown field"
            continue
        if value == "" and f.nullable and mode in ("create", "update"):
            value = None  # an HTML form's optional input left empty
        value, problem = check_value(f, value)
        if problem:
            problems[key] = problem
        else:
            clean[key] = value
    if mode == "stored" and "id" not in body:
        problems["id"] = "is required"
    if mode in ("create", "stored"):
        _fill_defaults(allowed.values(), clean, problems)
    return clean, problems


@functools.cache
def _allowed(kind: str, mode: str) -> dict[str, Field]:
    """The fields a body of `kind` may carry in `mode` (asked for on every change a round moves)."""
    fields = KINDS[kind].fields
    if mode in ("stored", "change"):
        return {f.name: f for f in (*fields, *TIMESTAMPS)}
    return {f.name: f for f in fields if (f.on_create if mode == "create" else f.on_update)}


def _fill_defaults(fields: Any, clean: dict[str, Any], problems: dict[str, str]) -> None:
    for f in fields:
        if f.name in clean or f.name in problems or f in TIMESTAMPS:
            continue
        if f.required:
            problems[f.name] = "is required"
        else:
            clean[f.name] = _copy(f.default)


def validate(kind: str, body: Any, mode: str) -> dict[str, Any]:
    """Check a request body for `create` or `update`; return the clean fields (with defaults on
    create, plus a client-supplied `id` when given) or raise ValidationError naming every bad
    field."""
    clean, problems = check_fields(kind, body, mode)
    if problems:
        raise ValidationError(problems)
    return clean


# The two user bodies: the key the client sends, and the user field it sets.
USER_BODIES = {"profile": ("displayName", "displayName"), "focus": ("courseId", "focusCourseId")}


def validate_user_body(body: Any, which: str) -> Any:
    """`{"displayName": ...}` (profile) or `{"courseId": ...}` (focus): the one key required,
    nothing else allowed. Returns the value or raises ValidationError."""
    key, field_name = USER_BODIES[which]
    if not isinstance(body, dict):
        raise ValidationError({"body": "must be a JSON object"})
    errors = {_field_label(k): "unknown field" for k in body if k != key}
    if key not in body:
        errors[key] = "is required" + (" (a course id or null)" if which == "focus" else "")
    else:
        f = KINDS[USER].by_name[field_name]
        value, problem = check_value(f, None if body[key] == "" and f.nullable else body[key])
        if problem:
            errors[key] = problem
    if errors:
        raise ValidationError(errors)
    return value


def _field_label(key: str) -> str:
    # Keys are echoed back in `fields`; keep them printable and short.
    label = key if len(key) <= 100 else key[:100] + "..."
    return label.encode("utf-8", "backslashreplace").decode("utf-8")


def is_id(value: Any) -> bool:
    """A record, user or device id: 1-128 letters, digits or . _ ~ : -."""
    return isinstance(value, str) and ID_RE.match(value) is not None
