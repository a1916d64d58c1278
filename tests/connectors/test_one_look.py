"""A hub's round opening reads the user's origins once (Backend.one_look): what it answers is
what the same reads answer one by one, and MongoDB is asked for the origins one time."""

from __future__ import annotations

import threading

import pytest

from server.core.errors import StoreUnavailable
from tests.conftest import break_driver


class Counting:
    """A database whose `origins` collection counts its finds."""

    def __init__(self, db):
        self._db, self.finds = db, 0

    def __getattr__(self, name):
        coll = getattr(self._db, name)
        if name != "origins":
            return coll
        outer = self

        class Origins:
            def __getattr__(self, attr):
                return getattr(coll, attr)

            def find(self, *args, **kwargs):
                outer.finds += 1
                return coll.find(*args, **kwargs)

        return Origins()

    def __getitem__(self, name):
        return self.__getattr__(name)


def hub_of_three_devices(mongo_factory, sql_factory):
    hub = mongo_factory("hub", user_id="learner")
    hub.connect()
    for name in ("a", "b", "c"):
        dev = sql_factory(name, user_id="learner")
        dev.connect()
        for k in range(4):
            dev.create("course", None, {"title": f"{name}{k}", "source": "https://a.b"})
        hub.apply_changes(dev.changes_since({}, 100))
    return hub


def test_a_look_answers_what_the_reads_answer_one_by_one_and_reads_the_origins_once(mongo_factory, sql_factory):
    hub = hub_of_three_devices(mongo_factory, sql_factory)
    first, second, third = sorted(hub.backend.every_top())
    assert hub.compact({first: 2}, 100) == 2  # a floor for the look to find
    cursor = {first: 1, second: 3}

    def opening():
        return (hub.shortfall(cursor), hub.changes_since(cursor, 100, exclude_origin=third),
                hub.changes_since({third: 1}, 100, only_origin=third), hub.floors(), hub.tops({first, third, "x"}),
                hub.changes_since({}, 5))

    one_by_one = opening()
    counting = Counting(hub.backend.db)
    hub.backend.use_database(counting)
    with hub.one_look():
        looked = opening()
    assert looked == one_by_one
    assert looked[0]["compacted"] == {first: 2} and looked[1] and len(looked[2]) == 3 and looked[3] == {first: 2}
    assert counting.finds == 1
    opening()
    assert counting.finds > 2, "outside a look every read asks again"


def test_a_look_ends_with_its_section_and_sees_nothing_of_another_thread(mongo_factory, sql_factory):
    hub = hub_of_three_devices(mongo_factory, sql_factory)
    with hub.one_look():
        before = hub.backend.looked()
        seen = []
        worker = threading.Thread(target=lambda: seen.append(hub.backend.looked()))
        worker.start()
        worker.join(60)
    assert before is not None and len(before) == 3 and seen == [None]
    assert hub.backend.looked() is None


def test_a_read_in_a_look_on_a_failing_driver_is_a_store_failure(mongo_factory, sql_factory):
    hub = hub_of_three_devices(mongo_factory, sql_factory)
    break_driver(hub)
    with hub.one_look():
        with pytest.raises(StoreUnavailable):
            hub.changes_since({}, 10)
        with pytest.raises(StoreUnavailable):
            hub.shortfall({"x": 1})


def test_a_user_of_no_origins_yet_is_read_once_too(mongo_factory):
    hub = mongo_factory("hub", user_id="learner")
    hub.connect()
    counting = Counting(hub.backend.db)
    hub.backend.use_database(counting)
    with hub.one_look():
        assert hub.changes_since({}, 10) == [] and hub.floors() == {} and hub.shortfall({})["shortfall"] == {}
    assert counting.finds == 1
