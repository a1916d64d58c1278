"""Whatever a hub goes through, every device ends with its records (issue 35), over every kind of
hub store: a catch-up from the records interrupted by a restore takes no cursor from a hub it did
not read whole; many restores in one epoch wedge nothing; what a heal changes reaches every
device. The same cases over real hub server processes are in tests/test_hub_converges.py."""

from __future__ import annotations

from server.errors import StoreUnavailable
from server.sync.engine import run_round, stored_bookmark, stored_cursor
from tests.synckit import assert_converged, course
from tests.test_compaction import compact_everything
from tests.test_hub_history import pending


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
    assert stored_bookmark(tablet).get("snapshot"), "the catch-up under way"
    world.hubs.pop("tablet", None)
    first = world.sync("tablet")  # the tablet first, on the restored hub; then the phone gives back
    assert first.error is None
    assert stored_cursor(tablet)[1].get("phone", 0) <= 12, "no cursor from the hub before the restore"
    assert [r["origins"] for r in stored_bookmark(tablet)["catchUpRestarts"]] == [1]
    assert world.sync("phone").error is None
    world.settle(["tablet", "phone"])
    assert titles(tablet) == titles(phone) == titles(world.hub) == {*(f"a{n:02d}" for n in range(12)),
                                                                  *(f"z{n}" for n in range(4))}
    assert pending(tablet) == pending(phone) == 0
    assert_converged(world)
