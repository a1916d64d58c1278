"""Every record kind in the table works end to end by being in the table: its routes, its place in
its course's tree, the OpenAPI document, seed files and sync. Written over the table, so a kind
added to records.KINDS is covered here with no new test code."""

from __future__ import annotations

import pytest

from server.core.records import COURSE, KINDS, children_of
from server.core.seeding import seed_changes, validate_seed
from tests.synckit import World

SAMPLES = {"string": "x", "text": "t", "url": "https://a.b/x", "int": 2, "date": "2030-01-02",
           "tags": ["a"], "email": "a@b.c", "timestamp": "2030-01-01T00:00:00Z"}
CHILDREN = [k.name for k in children_of(COURSE)]


def sample(kind: str, every: bool = False) -> dict:
    """A valid create body: the required fields (or every field the API takes), one value each."""
    fields = [f for f in KINDS[kind].fields if f.on_create and (every or f.required)]
    return {f.name: f.choices[-1] if f.type == "enum" else SAMPLES[f.type] for f in fields if f.type != "ref"}


def answer(resp, status=200):
    assert resp.status_code == status, resp.get_data(as_text=True)
    return resp.get_json()["data"]


@pytest.mark.parametrize("kind", CHILDREN)
def test_a_child_kind_is_created_listed_edited_and_deleted_through_its_routes(client, kind):
    plural = KINDS[kind].plural
    course = answer(client.post("/api/v1/courses", json=sample(COURSE)), 201)
    base = f"/api/v1/courses/{course['id']}/{plural}"
    made = answer(client.post(base, json={"id": "k1", **sample(kind, every=True)}), 201)
    assert made["courseId"] == course["id"] and made["id"] == "k1"
    assert answer(client.post(base, json={"id": "k1", **sample(kind, every=True)})) == made  # a retry
    tree = answer(client.get(f"/api/v1/courses/{course['id']}"))
    assert tree[plural] == [made] and all(tree[k.plural] == [] for k in children_of(COURSE) if k.name != kind)
    title = next(f.name for f in KINDS[kind].fields if f.type == "string")
    edited = answer(client.patch(f"{base}/k1", json={title: "edited"}))
    assert edited[title] == "edited"
    assert answer(client.delete(f"{base}/k1")) == {"id": "k1", "deleted": True}
    assert answer(client.get(f"/api/v1/courses/{course['id']}"))[plural] == []
    assert client.patch(f"{base}/k1", json={title: "x"}).get_json()["error"]["code"] == f"{kind}_not_found"


def test_the_document_describes_every_kinds_routes_and_schemas(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    for kind in CHILDREN:
        spec = KINDS[kind]
        assert {"post"} <= set(doc["paths"][f"/courses/{{courseId}}/{spec.plural}"])
        assert set(doc["paths"][f"/courses/{{courseId}}/{spec.plural}/{{{kind}Id}}"]) == {"patch", "delete"}
        assert f"{spec.title}Create" in doc["components"]["schemas"]
        assert spec.plural in doc["components"]["schemas"]["Course"]["properties"]


def test_seed_files_nest_every_child_kind_and_sync_carries_it(tmp_path):
    course = {"id": "c", **sample(COURSE), **{KINDS[k].plural: [{"id": f"{k}-1", **sample(k)}] for k in CHILDREN}}
    seed = validate_seed({"user": {"id": "me", "displayName": "Me"}, "courses": [course]})
    _, changes = seed_changes(seed)
    world = World(tmp_path, "sqlite")
    try:
        world.device("a").apply_changes(changes)
        world.settle(["a", "b"])
        tree = world.device("b").get_course("c")
        assert {k: [r["id"] for r in tree[KINDS[k].plural]] for k in CHILDREN} == {k: [f"{k}-1"] for k in CHILDREN}
    finally:
        world.close()
