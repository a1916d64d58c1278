"""Whatever a hub goes through, every device ends with its records (issue 35), over every kind of
hub store: a catch-up from the records interrupted by a restore takes no cursor from a hub it did
not read whole; many restores in one epoch wedge nothing; what a heal changes reaches every
device. The same cases over real hub server processes are in tests/hub/test_hub_converges.py."""

from __future__ import annotations

import pytest

from server.core.changes import is_heal_origin
from server.core.errors import StoreUnavailable
from server.sync.bookmark import load_bookmark
from server.sync.engine import run_round
from tests.hub.test_hub_history import pending
from tests.sync.test_compaction import compact_everything
from tests.synckit import World, assert_converged, course


class RestoredAfterPage:
    """A hub that, once it has answered `pages` snapshot pages, is put back from `backup` (and
    the round dies there, as a device's round does when the hub it talks to is restarted)."""

    def __init__(self, world, name: str, backup, pages: int = 1):
        self.world, self.inner, self.backup, self.pages = world, world.hub_for(name), backup, pages

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def snapshot_page(self, after, limit):
        page = self.inner.snapshot_page(after, limit)
        self.pages -= 1
        if self.pages == 0:
            self.world.restore_hub(self.backup)
            raise StoreUnavailable("the hub went away to be restored (test)")
        return page


def titles(store) -> set[str]:
    return {c["title"] for c in store.get_courses()}


def test_a_catch_up_interrupted_by_a_restore_takes_no_cursor_from_the_hub_it_did_not_read_whole(world):
    phone = world.device("phone")
    for n in range(12):
        course(phone, id=f"a{n:02d}", title=f"a{n:02d}")
    world.settle(["phone"])
    backup = world.backup_hub()
    for n in range(4):  # after the backup, and last in the records' order: on the pages read after it
        course(phone, id=f"z{n}", title=f"z{n}")
    world.settle(["phone"])
    compact_everything(world)  # the tablet, new, must catch up from the records
    world.devices["tablet"] = tablet = world.device("tablet")
    hub = RestoredAfterPage(world, "tablet", backup, pages=2)
    report = run_round(tablet, hub, 5)
    assert report.error is not None and len(tablet.dump_records()) == 5, "one page taken, then the hub went away"
    assert load_bookmark(tablet).catch_up, "the catch-up under way"
    world.hubs.pop("tablet", None)
    first = world.sync("tablet")  # the tablet first, on the restored hub; then the phone gives back
    assert first.error is None
    assert load_bookmark(tablet).cursor.get("phone", 0) <= 12, "no cursor from the hub before the restore"
    assert [r["origins"] for r in load_bookmark(tablet).catch_up_restarts] == [1]
    assert world.sync("phone").error is None
    world.settle(["tablet", "phone"])
    assert titles(tablet) == titles(phone) == titles(world.hub) == {*(f"a{n:02d}" for n in range(12)),
                                                                  *(f"z{n}" for n in range(4))}
    assert pending(tablet) == pending(phone) == 0
    assert_converged(world)


def test_what_a_heal_changes_reaches_every_device_and_the_ledger_shows_what_it_overwrote(world):
    laptop, phone, tablet = world.device("laptop"), world.device("phone"), world.device("tablet")
    course(laptop, id="c1", title="first")
    world.settle(["laptop", "phone", "tablet"])
    backup = world.backup_hub()
    phone.update("course", None, "c1", {"title": "the phone's"})  # offline, unseen by the laptop
    laptop.update("course", None, "c1", {"title": "the laptop's"})
    laptop.update("course", None, "c1", {"notes": "later"})
    world.settle(["laptop", "tablet"])
    compact_everything(world)
    world.settle(["tablet"])  # the tablet's log drops the laptop's edits; the laptop is away
    world.restore_hub(backup)  # the hub lacks both; only the tablet's records hold them
    assert world.sync("tablet").healed > 0
    healer = (load_bookmark(tablet).healer or {})["origin"]
    assert is_heal_origin(healer) and world.hub.floors() == {}, "logged, not held: nobody needs the records"
    report = world.sync("phone")
    assert report.from_snapshot == 0 and report.pulled == 2
    [lost] = [c for c in phone.list_conflicts() if c["field"] == "title"]
    assert (lost["localValue"], lost["remoteValue"], lost["remoteOrigin"]) == ("the phone's", "the laptop's", healer), \
        "the phone's ledger shows what the heal overwrote, and that a heal did"
    assert world.device_seqs("phone").get(healer) is None, "what a hub logged of a heal is merged, not logged"
    world.settle(["laptop", "phone", "tablet"])
    assert_converged(world)


def test_a_hub_that_loses_what_it_logged_of_a_heal_numbers_it_again_and_devices_take_it(world):
    laptop, phone = world.device("laptop"), world.device("phone")
    course(laptop, id="c1", title="first")
    course(laptop, id="c2", title="second")
    world.settle(["laptop", "phone"])
    first = world.backup_hub()
    for n in range(3):
        laptop.update("course", None, "c1", {"notes": f"note {n}"})
    world.settle(["laptop", "phone"])
    compact_everything(world)
    world.settle(["laptop", "phone"])
    world.restore_hub(first)
    world.settle(["laptop", "phone"])  # healed: the phone pulled what the hub logged of it
    healer = (load_bookmark(laptop).healer or {})["origin"]
    assert load_bookmark(phone).cursor[healer] >= 1
    world.restore_hub(first)  # back again, before that heal: its numbers are taken again by the next
    laptop.update("course", None, "c2", {"notes": "after"})
    world.settle(["laptop", "phone"], rounds=3)
    assert_converged(world)
    assert {o for o in set(world.hub_seqs()) | set(world.hub.floors()) if is_heal_origin(o)} == {healer}


@pytest.fixture(params=["mongomock", "sqlite"])
def stores_world(request, tmp_path):
    """As the `world` fixture, without the wire tier: twenty restores over the wire take minutes,
    and the wire hub's own restores are in tests/hub/test_hub_converges.py."""
    made = World(tmp_path, request.param)
    yield made
    made.close()


def test_twenty_restores_in_one_epoch_take_one_heal_origin(stores_world):
    world = stores_world
    laptop, phone = world.device("laptop"), world.device("phone")
    course(laptop, id="c1", title="first")
    world.settle(["laptop", "phone"])
    for n in range(20):
        backup = world.backup_hub()
        laptop.update("course", None, "c1", {"title": f"title {n}"})
        laptop.update("course", None, "c1", {"notes": f"note {n}"})
        world.settle(["laptop", "phone"])
        compact_everything(world)
        world.settle(["laptop", "phone"])
        world.restore_hub(backup)
        assert world.sync("laptop").healed > 0, f"restore {n}: healed"
    world.settle(["laptop", "phone"])
    assert_converged(world)
    assert phone.get_course("c1")["title"] == "title 19"
    origins = set(world.hub_seqs()) | set(world.hub.floors())
    assert len({o for o in origins if is_heal_origin(o)}) == 1, origins
    assert pending(laptop) == pending(phone) == 0
