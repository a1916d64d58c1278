"""The OpenAPI document and the validation are one source of truth: for every request body of
every route, a JSON Schema validator and records.validate accept exactly the same bodies."""

from __future__ import annotations

import copy
import re

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.core.errors import ValidationError
from server.core.records import KINDS, MAX_INT, validate, validate_user_body
from server.device import routes, sync_routes
from server.web.openapi import build_document, field_schema, request_schema, user_request_schema

BODIES = [("course", "create"), ("course", "update"), ("lecture", "create"), ("lecture", "update"),
          ("assignment", "create"), ("assignment", "update")]


def as_json_schema(schema):
    """OpenAPI 3.0's `nullable` spelled as plain JSON Schema, for a stock validator."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.pop("nullable", False):
                node["type"] = [node["type"], "null"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)
    return schema


def schema_accepts(schema, body) -> bool:
    return jsonschema_rs.Draft4Validator(as_json_schema(schema), validate_formats=True).is_valid(body)


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False),
                 st.text(max_size=4), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=2), st.none()))


def plausible(f) -> st.SearchStrategy:
    """Values near the edges of one field's rules, valid or not."""
    s = field_schema(f)
    t = f.type
    if t == "int":
        base = st.one_of(st.integers(-2, 3), st.integers(MAX_INT - 2, MAX_INT + 2), st.just(1.0))
    elif t == "enum":
        base = st.one_of(st.sampled_from(f.choices), st.sampled_from([c.upper() for c in f.choices]))
    elif t == "date":
        base = st.one_of(st.dates().map(lambda d: d.isoformat()), st.sampled_from(["2026-02-30", "2026-2-3", ""]))
    elif t == "tags":
        base = st.lists(st.one_of(st.text(max_size=3), st.integers(), st.just("x" * 101)), max_size=3)
    elif t == "url":
        base = st.one_of(st.from_regex(s["pattern"], fullmatch=True).filter(lambda v: len(v) < 60),
                         st.sampled_from(["ftp://a.b", "https://", "https://a b", "http://é.fr", "https://a.b/ç"]))
    elif t == "ref":
        base = st.one_of(st.from_regex(s["pattern"], fullmatch=True), st.sampled_from(["a/b", "$ne", "-x", ""]))
    else:
        base = st.one_of(st.text(max_size=6), st.sampled_from(["   ", "\t", "a\x00", "", " a "]),
                         st.just("y" * (f.max_length + 1)))
    return st.one_of(base, JUNK)


def bodies(kind: str, mode: str) -> st.SearchStrategy:
    fields = [f for f in KINDS[kind].fields if (f.on_create if mode == "create" else f.on_update)]
    values = {f.name: plausible(f) for f in fields}
    if mode == "create":
        values["id"] = st.one_of(st.from_regex(r"^[a-z0-9][a-z0-9-]{0,8}$", fullmatch=True), st.just("a/b"), JUNK)
    values["unknownField"] = JUNK
    keys = st.lists(st.sampled_from(sorted(values)), unique=True)
    return keys.flatmap(lambda ks: st.fixed_dictionaries({k: values[k] for k in ks}))


def accepted(call) -> bool:
    try:
        call()
        return True
    except ValidationError:
        return False


@pytest.mark.parametrize("kind,mode", BODIES)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_schema_and_the_validation_accept_the_same_bodies(kind, mode, data):
    body = data.draw(bodies(kind, mode))
    schema = request_schema(kind, mode)
    assert schema_accepts(schema, body) == accepted(lambda: validate(kind, body, mode)), body


@pytest.mark.parametrize("which,key,field", [("profile", "displayName", "displayName"),
                                             ("focus", "courseId", "focusCourseId")])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_the_user_bodies_agree_with_their_schemas(which, key, field, data):
    value = data.draw(plausible(KINDS["user"].by_name[field]))
    extra = data.draw(st.dictionaries(st.sampled_from(["x", "email"]), JUNK, max_size=1))
    body = data.draw(st.sampled_from([{key: value, **extra}, extra]))
    schema = user_request_schema(which)
    assert schema_accepts(schema, body) == accepted(lambda: validate_user_body(body, which)), body


def test_every_route_of_the_app_is_in_the_document_and_nothing_else(app):
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(\w+)_id>", lambda m: "{" + m.group(1) + "Id}", rule.rule.removeprefix("/api/v1"))
        served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == served


def test_the_document_is_served_and_declares_every_status_a_route_answers(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and doc["servers"] == [{"url": "/api/v1"}]
    patch = doc["paths"]["/courses/{courseId}"]["patch"]
    assert {"200", "400", "404", "412", "413", "415", "503"} <= set(patch["responses"])
    create = doc["paths"]["/courses"]["post"]
    body_schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/CourseCreate"}
    assert doc["components"]["schemas"]["CourseCreate"]["additionalProperties"] is False


def test_with_a_token_the_document_declares_bearer_auth():
    doc = build_document([*routes.OPERATIONS, *sync_routes.OPERATIONS], token_required=True)
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "security" not in doc["paths"]["/health"]["get"]
    assert "401" in doc["paths"]["/courses"]["get"]["responses"]
