"""A push that stops after any one of the hub's writes is completed by the retry: the hub ends
with every record, change, origin top and conflict it would have had, and another device pulls
the change. The failure is injected after each write of apply_changes in turn."""

from __future__ import annotations

import pytest
from freezegun import freeze_time
from pymongo.errors import AutoReconnect

from tests.synckit import World, assert_converged, course, lecture

WRITES = {"bulk_write", "update_one", "update_many", "insert_one", "insert_many", "replace_one",
          "delete_one", "delete_many"}


class Writes:
    """Counts the hub's writes; the `fail_at`-th raises the driver's own error after it ran."""

    def __init__(self, db):
        self.db, self.count, self.fail_at = db, 0, None

    def __getattr__(self, name):
        return Collection(self, getattr(self.db, name))

    def __getitem__(self, name):
        return Collection(self, self.db[name])


class Collection:
    def __init__(self, writes: Writes, inner):
        self.writes, self.inner = writes, inner

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name not in WRITES:
            return attr

        def write(*args, **kwargs):
            result = attr(*args, **kwargs)
            self.writes.count += 1
            if self.writes.count == self.writes.fail_at:
                raise AutoReconnect("the hub dropped the connection after a write (test)")
            return result
        return write


def scenario(world: World) -> None:
    """Device a has a course, a lecture and an edit that loses to b's later one: a push that
    writes records, the change log, origin tops and a conflict on the hub."""
    with freeze_time("2030-01-01T00:00:00Z"):
        c = course(world.device("a"), id="c")
        world.settle(["a", "b"])
    with freeze_time("2030-01-01T00:00:02Z"):
        world.device("b").update("course", None, "c", {"title": "b's title"})
        world.settle(["b"])
    with freeze_time("2030-01-01T00:00:01Z"):
        world.device("a").update("course", None, "c", {"title": "a's title"})  # had not seen b's
        lecture(world.device("a"), c["id"], id="l")


def writes_of_one_push(tmp_path) -> int:
    world = World(tmp_path / "count", "mongomock")
    try:
        scenario(world)
        hub = world.hub_for("a")
        counter = Writes(hub.db)
        hub.db = counter
        with freeze_time("2030-01-01T00:00:03Z"):
            assert world.sync("a").error is None
        return counter.count
    finally:
        world.close()


HUB_WRITES = 4  # conflicts, records, change log, origin top


def test_the_push_of_the_scenario_makes_exactly_these_hub_writes(tmp_path):
    assert writes_of_one_push(tmp_path) == HUB_WRITES  # if this changes, the cuts below must follow


@pytest.mark.parametrize("fail_at", range(1, HUB_WRITES + 1))
def test_a_push_cut_after_any_one_hub_write_is_completed_by_the_retry(tmp_path, fail_at):
    world = World(tmp_path / "cut", "mongomock")
    try:
        scenario(world)
        hub = world.hub_for("a")
        counter = Writes(hub.db)
        counter.fail_at, hub.db = fail_at, counter
        with freeze_time("2030-01-01T00:00:03Z"):
            cut = world.sync("a")
            assert cut.error == "The MongoDB hub failed (AutoReconnect)."
            counter.fail_at = None
            world.settle(["a", "b"])
        b = world.device("b")
        assert [lec["id"] for lec in b.get_course("c")["lectures"]] == ["l"]
        assert b.get_course("c")["title"] == "b's title"
        ledger = {(x["field"], x["localValue"], x["remoteValue"], x["winner"]) for x in world.hub.list_conflicts()}
        assert ledger == {("title", "b's title", "a's title", "local")}
        assert_converged(world)
    finally:
        world.close()
