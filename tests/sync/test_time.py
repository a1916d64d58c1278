"""Clocks that disagree: what the hub took, every device of the user applies (the hub's door is
the one that judges a stamp of another device), and a change stamped past the limit is refused
at every door."""

from __future__ import annotations

import datetime as dt

from freezegun import freeze_time

from server.core.clock import encode, wall_ms
from server.sync.engine import due_again
from tests.synckit import assert_converged, course, lecture

T0 = dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
DAY_S = 86_400


def test_a_stamp_inside_the_limit_does_not_set_two_devices_apart(world):
    with freeze_time(T0) as frozen:
        laptop, phone, buggy = world.device("laptop"), world.device("phone"), world.device("buggy")
        course(laptop, id="c1", title="first")
        world.settle(["laptop", "phone"])
        frozen.move_to(T0 + dt.timedelta(seconds=86_370))  # the buggy device's clock, a day ahead
        buggy.update_user_profile("From the future")
        frozen.move_to(T0)
        assert world.sync("buggy").quarantined == 0, "inside the one-day limit: the hub takes it"
        assert world.sync("laptop").pulled == 1  # its clock follows the stamp, inside the limit
        laptop.update("course", None, "c1", {"notes": "an ordinary edit"})
        assert world.sync("laptop").quarantined == 0
        frozen.move_to(T0 - dt.timedelta(seconds=60))  # the phone's clock, a minute behind
        report = world.sync("phone")
        assert report.quarantined == 0 and phone.count_quarantine() == 0
        assert phone.get_course("c1")["notes"] == "an ordinary edit"
        assert phone.get_user()["displayName"] == "From the future"
        frozen.move_to(T0)
        world.settle(["laptop", "phone", "buggy"])
        assert_converged(world)


def test_a_change_far_ahead_is_refused_at_a_door_that_is_not_the_hubs_pull(world):
    with freeze_time(T0):
        a = world.device("a")
        course(a, id="c1", title="first")
        world.settle(["a"])
        change = {**a.changes_since({}, 1)[0], "origin": "x", "seq": 1, "bases": {"title": ""},
                  "hlc": encode(wall_ms() + 2 * DAY_S * 1000, 0, "x"), "fields": {"title": "ahead"}}
        for store in (world.hub, a):  # the hub's door, and a device's for what is not from the hub
            [refused] = store.apply_changes([change])["quarantined"]
            assert "ahead of this clock" in refused["reason"]
        pulled = {**change, "origin": "y", "hlc": encode(wall_ms() + 2 * DAY_S * 1000, 0, "y")}
        assert a.apply_changes([pulled], from_hub=True)["applied"] == 1, "a pull takes up to two limits ahead"
        past = {**change, "origin": "z", "hlc": encode(wall_ms() + 2 * DAY_S * 1000 + 1, 0, "z")}
        [refused] = a.apply_changes([past], from_hub=True)["quarantined"]
        assert refused["reason"] == "hlc is 172800 s ahead of this clock (the limit is 172800 s)"


def test_edits_the_hub_refused_for_a_clock_ahead_reach_it_once_its_clock_catches_up(world):
    with freeze_time(T0) as frozen:
        laptop, phone = world.device("laptop"), world.device("phone")
        course(laptop, id="c1", title="first", notes="n0")
        lecture(laptop, "c1", id="l1", title="a lecture")
        world.settle(["laptop", "phone"])
        frozen.move_to(T0 + dt.timedelta(days=2))  # the laptop's clock, two days ahead
        laptop.update("course", None, "c1", {"title": "ahead", "notes": "n1"})
        laptop.delete("lecture", "c1", "l1")
        frozen.move_to(T0)  # set right; its clock (an HLC) still stamps two days ahead
        laptop.update("course", None, "c1", {"notes": "n2"})  # replaces n1: only "ahead" goes again
        report = world.sync("laptop")
        assert report.refused_for_clock == 3 and laptop.count_quarantine() == 3
        looked = []
        read = laptop.list_quarantine
        laptop.list_quarantine = lambda *a: looked.append(a) or read(*a)
        assert world.sync("laptop").resent == 0, "not due: the hub's clock has not caught up"
        assert looked == [], "a round before the earliest due time does not read the quarantine"
        del laptop.list_quarantine
        world.sync("phone")
        assert phone.get_course("c1")["title"] == "first"

        frozen.move_to(T0 + dt.timedelta(days=1, seconds=1))  # the stamps are one limit ahead now
        report = world.sync("laptop")
        assert (report.resent, report.quarantined, report.error) == (3, 0, None)
        assert laptop.count_quarantine() == 0
        world.sync("phone")
        got = phone.get_course("c1")
        assert (got["title"], got["notes"], got["lectures"]) == ("ahead", "n2", [])
        assert world.sync("laptop").resent == 0, "written again once"
        world.settle(["laptop", "phone"])
        assert_converged(world)
        assert phone.list_conflicts() == [] and laptop.list_conflicts() == []


def test_a_refusal_for_time_is_due_again_when_the_hubs_clock_has_caught_up():
    entry = {"reason": "refused by the hub: hlc is 172800 s ahead of this clock (the limit is 86400 s)",
             "receivedAt": "2030-05-01T12:00:00.000Z"}
    at = T0.timestamp()
    assert not due_again(entry, at + 86_400)
    assert due_again(entry, at + 86_401)
    assert not due_again({**entry, "reason": "refused by the hub: fields.title: too long"}, at + 10**9)
    assert due_again({**entry, "reason": entry["reason"].replace("172800", "10")}, at + 1)
    assert not due_again({**entry, "reason": entry["reason"].replace("172800", "10")}, at + 0.5)
