"""This device's changes the hub refused, kept with the hub's code and fields
(server/sync/refusals.py); a hub that sends only its sentence (an older one) still understood,
and a quarantine entry kept before codes still read."""

from __future__ import annotations

import datetime as dt

from freezegun import freeze_time

from server.core.changes import Refusal
from server.sync.engine import due_at, run_round
from server.sync.refusals import from_an_old_hub, held_refusal, refused_by_hub
from tests.synckit import course

T0 = dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
AHEAD = "hlc is 172800 s ahead of this clock (the limit is 86400 s)"


def test_a_refusal_with_a_code_is_kept_by_its_code_whatever_its_sentence():
    said = {"origin": "a", "seq": 3, "reason": "reworded by a newer hub", "code": "clock_ahead",
            "aheadSeconds": 412, "limitSeconds": 300}
    assert refused_by_hub(said) == Refusal("clock_ahead", "refused by the hub: reworded by a newer hub",
                                           {"aheadSeconds": 412, "limitSeconds": 300})


def test_an_older_hubs_sentence_is_read_for_the_clock_and_nothing_else():
    assert refused_by_hub({"seq": 3, "reason": AHEAD}) == Refusal(
        "clock_ahead", f"refused by the hub: {AHEAD}", {"aheadSeconds": 172800, "limitSeconds": 86400})
    field = "fields.title: must be a string"
    assert from_an_old_hub(field) == Refusal("unclassified", field)
    assert from_an_old_hub(f"{AHEAD}.") == Refusal("unclassified", f"{AHEAD}.")


def test_a_quarantine_entry_kept_before_codes_is_read_as_an_older_hubs_sentence():
    kept = {"reason": f"refused by the hub: {AHEAD}", "receivedAt": "2030-05-01T12:00:00.000Z"}
    assert held_refusal(kept) == Refusal("clock_ahead", f"refused by the hub: {AHEAD}",
                                         {"aheadSeconds": 172800, "limitSeconds": 86400})
    assert due_at(kept) == T0.timestamp() + 86_401
    assert held_refusal({"reason": AHEAD}) is None, "refused at this device's own door: not the hub's"
    assert held_refusal({"reason": None}) is None


def test_a_coded_entry_is_due_by_its_fields_and_one_of_another_shape_never():
    entry = {"reason": "refused by the hub: anything", "receivedAt": "2030-05-01T12:00:00.000Z",
             "code": "clock_ahead", "aheadSeconds": 400, "limitSeconds": 300}
    assert due_at(entry) == T0.timestamp() + 101
    assert due_at({**entry, "limitSeconds": "300"}) is None
    assert due_at({**entry, "code": "invalid_field"}) is None


class OldHub:
    """A hub from before refusal codes: its push answer names each refusal by its sentence only."""

    def __init__(self, inner, reword: bool = False):
        self.inner, self.reword = inner, reword

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def apply_changes(self, changes):
        result = self.inner.apply_changes(changes)
        return {**result, "quarantined": [{k: q[k] for k in ("origin", "seq", "reason")}
                                          for q in result["quarantined"]]}


class RewordingHub(OldHub):
    """A newer hub whose sentence no device could parse: the code says it all."""

    def apply_changes(self, changes):
        result = self.inner.apply_changes(changes)
        return {**result, "quarantined": [{**q, "reason": "your clock runs fast"} for q in result["quarantined"]]}


def push_from_a_clock_two_days_ahead(world, hub_of) -> tuple:
    with freeze_time(T0) as frozen:
        laptop = world.device("laptop")
        course(laptop, id="c1", title="first")
        world.settle(["laptop"])
        frozen.move_to(T0 + dt.timedelta(days=2))
        laptop.update("course", None, "c1", {"title": "ahead"})
        frozen.move_to(T0)
        report = run_round(laptop, hub_of(world.hub_for("laptop")))
        return report, laptop.list_quarantine()


def test_the_hubs_refusal_is_kept_with_its_code_and_fields(world):
    report, [entry] = push_from_a_clock_two_days_ahead(world, lambda hub: hub)
    assert (report.refused_for_clock, report.quarantined) == (1, 1)
    assert (entry["code"], entry["aheadSeconds"], entry["limitSeconds"]) == ("clock_ahead", 172800, 86400)
    assert entry["reason"] == f"refused by the hub: {AHEAD}"


def test_an_older_hubs_refusal_is_kept_as_if_it_had_said_the_code(world):
    report, [entry] = push_from_a_clock_two_days_ahead(world, OldHub)
    assert report.refused_for_clock == 1
    assert (entry["code"], entry["aheadSeconds"], entry["limitSeconds"]) == ("clock_ahead", 172800, 86400)
    assert due_at(entry) == T0.timestamp() + 86_401


def test_a_hubs_refusal_is_read_by_its_code_not_its_sentence(world):
    report, [entry] = push_from_a_clock_two_days_ahead(world, RewordingHub)
    assert report.refused_for_clock == 1
    assert (entry["reason"], entry["code"], entry["aheadSeconds"]) == (
        "refused by the hub: your clock runs fast", "clock_ahead", 172800)
    assert due_at(entry) == T0.timestamp() + 86_401
