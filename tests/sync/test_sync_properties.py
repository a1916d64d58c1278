"""Property: whatever three devices do, in whatever order, with clocks that disagree and jump,
and rounds failing at random points, every replica holds exactly what an independent model of
the merge rule (tests/merge_model.py) says, its conflict ledger lists exactly the losses the
model says were lost unseen, quiescent rounds leave every replica identical, and every
acknowledged write is either present or explainably superseded, even when the hub was restored
from one of its older backups in between."""

from __future__ import annotations

import copy
import datetime as dt
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from freezegun import freeze_time
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from server.connectors.mongo.store import MongoConnector
from server.connectors.sqlite.store import SqlConnector
from server.core import clock as clock_module
from server.core.changes import is_heal_origin, record_key, writes_of
from server.core.clock import encode
from server.core.errors import AppError, StoreUnavailable
from server.core.records import validate
from server.core.sequences import retention_floor
from server.sync.bookmark import load_bookmark
from server.sync.report import RoundReport
from server.sync.wake import apply_page
from tests.merge_model import Replica, actual_ledger, actual_records
from tests.synckit import USER, FlakyHub, World, assert_converged

DEVICES = ["a", "b", "c"]
HUB = "hub"
COURSES = ["c1", "c2"]
LECTURES = [("c1", "l1"), ("c1", "l2"), ("c2", "l3")]  # made before the steps, on every device
NEW_LECTURES = ["n1", "n2"]
WORDS = st.sampled_from(["alpha", "beta", "gamma", "delta"])
EXAMPLES = int(os.environ.get("SYNC_PROPERTY_EXAMPLES", "200"))
HOUR_MS = 3_600_000

dev = st.sampled_from(DEVICES)
step = st.one_of(
    st.tuples(st.just("create_course"), dev, st.sampled_from(COURSES), WORDS),
    st.tuples(st.just("update_course"), dev, st.sampled_from(COURSES), st.sampled_from(["title", "notes"]), WORDS),
    st.tuples(st.just("delete_course"), dev, st.sampled_from(COURSES)),
    st.tuples(st.just("create_lecture"), dev, st.sampled_from(COURSES), st.sampled_from(NEW_LECTURES), WORDS),
    st.builds(lambda d, cl, f, w: ("update_lecture", d, cl[0], cl[1], f, w), dev, st.sampled_from(LECTURES),
              st.sampled_from(["title", "note", "status"]), WORDS),
    st.builds(lambda d, cl, f, w: ("update_lecture", d, cl[0], cl[1], f, w), dev, st.sampled_from(LECTURES),
              st.sampled_from(["title", "note"]), WORDS),
    st.builds(lambda d, cl: ("delete_lecture", d, cl[0], cl[1]), dev, st.sampled_from(LECTURES)),
    st.tuples(st.just("sync"), dev),
    st.tuples(st.just("sync"), dev),
    st.tuples(st.just("failing_sync"), dev, st.sampled_from(
        ["hub_before_apply", "hub_after_apply", "cursor_move", "local_apply", "hub_down"])),
    st.tuples(st.just("tick"), st.integers(min_value=0, max_value=5000)),
    # A device's wall clock set to disagree with the others, forwards or back (a jump back too).
    st.tuples(st.just("skew"), dev, st.sampled_from([0, 0, 1, -1, 250, -250, HOUR_MS, -HOUR_MS])),
    # The hub backed up, and later restored from one of its backups: it loses what came after.
    st.tuples(st.just("backup")),
    st.tuples(st.just("restore"), st.integers(min_value=0, max_value=3)),
    # The hub compacts what every device holds, or (a device left out: not seen for longer than
    # the retention) more, or all of its log (every device left out), so that a device behind it
    # catches up from the records at its next round.
    st.tuples(st.just("compact"), st.sampled_from([None, *DEVICES, "all"])),
    # A device's round that catches up from the records, and the hub put back from a backup after
    # its first page (the round dies there; the next one resumes on the restored hub).
    st.tuples(st.just("catch_up_restore"), dev, st.integers(min_value=0, max_value=3)),
    # Restores one after another in one epoch, each after the devices trimmed their logs: they
    # heal the hub each time, under one heal origin each however many times.
    st.tuples(st.just("restores"), st.integers(min_value=2, max_value=4)),
    # A sibling relays a change under another device's origin at its next number: never taken.
    st.tuples(st.just("sibling_relay"), dev, dev),
    # A device's live wait answered with the changes past its cursor (feature "waitChanges"), and
    # the page applied later, as the live thread does: maybe after rounds, restores or
    # compactions that made it stale.
    st.tuples(st.just("wait"), dev),
    st.tuples(st.just("woken"), dev),
    st.tuples(st.just("wake"), dev),
    st.tuples(st.just("wake"), dev),
)


class Oracle:
    """The model replicas, fed what each real replica committed, in the order it committed it."""

    def __init__(self) -> None:
        self.replicas = {name: Replica(name) for name in [*DEVICES, HUB]}
        self.own_seq = dict.fromkeys(DEVICES, 0)
        self.backups: list[tuple[object, Replica]] = []  # the hub's, with the model's hub as it was

    @staticmethod
    def name_of(store) -> str:
        return HUB if isinstance(store, MongoConnector) else store.origin

    @contextmanager
    def watching(self):
        """Every apply_changes of every connector reports what it committed, even when it raised."""
        originals = {cls: cls.apply_changes for cls in (SqlConnector, MongoConnector)}
        oracle = self

        def spy_for(original):
            def spy(store, changes, **kwargs):
                before = store.backend.known(changes) if changes else {}
                committed = False
                try:
                    result = original(store, changes, **kwargs)
                    committed = True
                    return result
                finally:
                    after = store.backend.known(changes) if changes else {}
                    replica = oracle.replicas[oracle.name_of(store)]
                    for ch in changes:
                        if kwargs.get("from_hub") and is_heal_origin(ch["origin"]):
                            if committed:  # what a hub logged of a heal: merged, not logged
                                replica.apply(ch)
                            continue
                        ident = (ch["origin"], ch["seq"])
                        if ident in after and ident not in before:
                            before[ident] = ch["hlc"]  # a change twice in one batch is applied once
                            replica.apply(ch)
            return spy

        def records_spy(original, what: str):
            """A page of records merged without a log (a device's catch-up, a hub's heal): the
            model takes the writes that rebuild each one."""
            def spy(store, records, **kwargs):
                result = original(store, records, **kwargs)  # one transaction: all of it, or none
                assert result["quarantined"] == []
                event(what)
                for record in records:
                    for write in writes_of(record)[0]:
                        oracle.replicas[oracle.name_of(store)].apply(write)
                return result
            return spy

        with mock.patch.multiple(SqlConnector, apply_changes=spy_for(originals[SqlConnector]),
                                 apply_snapshot=records_spy(SqlConnector.apply_snapshot,
                                                            "a device caught up from the hub's records")), \
                mock.patch.multiple(MongoConnector, apply_changes=spy_for(originals[MongoConnector]),
                                    heal=records_spy(MongoConnector.heal, "a hub was given a device's records")):
            yield

    def own_write(self, name: str, store, written: dict, kind: str, course_id, record_id, op: str) -> dict | None:
        """Check the change the write logged against the model, then apply it there."""
        others = {o: 10**9 for o in DEVICES if o != name}
        new = store.changes_since({**others, name: self.own_seq[name]}, 10)
        if not new:
            return None  # an idempotent create: nothing written
        assert len(new) == 1 and new[0]["origin"] == name and new[0]["seq"] == self.own_seq[name] + 1, new
        change = new[0]
        self.own_seq[name] += 1
        replica = self.replicas[name]
        assert change["hlc"] > replica.seen, "a local stamp must sort after everything the device has seen"
        assert (change["kind"], change["courseId"], change["id"], change["op"]) == (kind, course_id, record_id, op)
        assert {k: change["fields"][k] for k in written} == written
        assert set(change["fields"]) - set(written) <= {"createdAt", "updatedAt"}
        assert change["bases"] == replica.expected_bases(kind, course_id, record_id, op, change["fields"])
        ledger = dict(replica.ledger)
        replica.apply(change)
        assert replica.ledger == ledger, "a local write never loses anything"
        return change

    def check(self, world: World) -> None:
        stores = {name: world.device(name) for name in DEVICES} | {HUB: world.hub}
        for name, store in stores.items():
            model = self.replicas[name]
            assert actual_records(store.dump_records()) == model.expected_records(), f"{name}: records"
            assert actual_ledger(store.list_conflicts(10**6)) == model.ledger, f"{name}: conflict ledger"


def write(world: World, oracle: Oracle, s: tuple) -> dict | None:
    kind, name = s[0], s[1]
    store = world.device(name)
    if kind == "create_course":
        body = validate("course", {"id": s[2], "title": s[3], "source": "https://a.b"}, "create")
        store.create("course", None, body)
        target = ("course", None, s[2], "upsert", {k: v for k, v in body.items() if k != "id"})
    elif kind == "update_course":
        store.update("course", None, s[2], {s[3]: s[4]})
        target = ("course", None, s[2], "upsert", {s[3]: s[4]})
    elif kind == "delete_course":
        store.delete("course", None, s[2])
        target = ("course", None, s[2], "delete", {})
    elif kind == "create_lecture":
        body = validate("lecture", {"id": s[3], "title": s[4], "order": 1, "videoUrl": "https://a.b/v"}, "create")
        store.create("lecture", s[2], body)
        target = ("lecture", s[2], s[3], "upsert", {k: v for k, v in body.items() if k != "id"})
    elif kind == "update_lecture":
        value = s[5] if s[4] != "status" else {"alpha": "completed", "beta": "in_progress"}.get(s[5], "not_started")
        store.update("lecture", s[2], s[3], {s[4]: value})
        target = ("lecture", s[2], s[3], "upsert", {s[4]: value})
    else:
        store.delete("lecture", s[2], s[3])
        target = ("lecture", s[2], s[3], "delete", {})
    k, course_id, record_id, op, written = target
    return oracle.own_write(name, store, written, k, course_id, record_id, op)


def run_step(world: World, oracle: Oracle, s: tuple, acked: list, frozen, skews: dict) -> None:
    kind = s[0]
    if kind == "tick":
        frozen.tick(dt.timedelta(milliseconds=s[1]))
        return
    if kind == "skew":
        skews[s[1]] = s[2]
        return
    if kind == "backup":
        oracle.backups.append((world.backup_hub(), copy.deepcopy(oracle.replicas[HUB])))
        return
    if kind == "restore":
        if oracle.backups:
            backup, model = oracle.backups[-1 - s[1] % len(oracle.backups)]
            world.restore_hub(backup)
            oracle.replicas[HUB] = copy.deepcopy(model)
            event("hub restored from a backup")
        return
    if kind == "compact":
        compact(world, left_out=s[1])
        return
    if kind in ("catch_up_restore", "restores", "sibling_relay"):
        HARDER[kind](world, oracle, *s[1:])
        return
    name = s[1]
    with device_clock(skews[name]):
        if kind in ("sync", "failing_sync"):
            sync(world, name, s[2] if kind == "failing_sync" else None)
            return
        if kind in WAKES:
            WAKES[kind](world, name)
            return
        try:
            change = write(world, oracle, s)
        except AppError:
            event(f"{kind} refused")
            return  # refused (not found, id conflict): not acknowledged, nothing promised
    event(f"{kind} acknowledged")
    if change is not None:
        acked.append(change)


class RestoredOnPage:
    """A device's hub that, once the device took its first snapshot page, is put back from a
    backup; the round dies there, as it does when the hub it talks to is stopped to be restored."""

    def __init__(self, world: World, oracle: Oracle, inner, backup: tuple) -> None:
        self.world, self.oracle, self.inner, self.backup = world, oracle, inner, backup
        self.pages = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def snapshot_page(self, after, limit):
        self.pages += 1
        if self.pages == 2:
            restore(self.world, self.oracle, self.backup)
            event("hub restored during a catch-up")
            raise StoreUnavailable("the hub went away to be restored (test)")
        return self.inner.snapshot_page(after, limit)


def restore(world: World, oracle: Oracle, backup: tuple) -> None:
    world.restore_hub(backup[0])
    oracle.replicas[HUB] = copy.deepcopy(backup[1])


def catch_up_restore(world: World, oracle: Oracle, name: str, which: int) -> None:
    if not oracle.backups:
        return
    hub = world.hub_for(name)
    world.hubs[name] = RestoredOnPage(world, oracle, hub, oracle.backups[-1 - which % len(oracle.backups)])
    try:
        world.sync(name)
    finally:
        world.hubs[name] = hub


def restores(world: World, oracle: Oracle, times: int) -> None:
    for n in range(times):
        backup = (world.backup_hub(), copy.deepcopy(oracle.replicas[HUB]))
        for name in DEVICES:  # two edits on each after the backup, which the restore then loses
            for cid in COURSES:
                try:
                    write(world, oracle, ("update_course", name, cid, "notes", f"{name} {n}"))
                except AppError:
                    pass  # that course is deleted
        for name in [*DEVICES, *DEVICES]:
            world.sync(name)
        compact(world, left_out=None)
        for name in DEVICES:
            world.sync(name)  # each drops what the hub compacted from its log (but its newest own change)
        restore(world, oracle, backup)
        for name in DEVICES:
            world.sync(name)  # and gives the hub back what its log no longer holds, as its records
    event("restores one after another")


def sibling_relay(world: World, oracle: Oracle, relayer: str, victim: str) -> None:
    origin = world.device(victim).origin
    if relayer == victim:
        return
    top = world.hub.tops({origin}).get(origin, 0)
    forged = {"origin": origin, "seq": top + 1, "hlc": encode(clock_module.wall_ms(), 0, origin), "kind": "user",
              "id": USER, "courseId": None, "op": "upsert", "fields": {"displayName": "not the victim's"},
              "bases": {"displayName": ""}}
    answer = world.hub_for(relayer).relay_changes([forged])
    assert answer["owned"] == {origin: top} and answer["applied"] == 0, answer
    event("a sibling's relay refused")


def wait(world: World, name: str) -> None:
    """What the hub's wait answers this device now: the page past its cursor, not yet applied."""
    device, hub = world.device(name), world.hub_for(name)
    page = hub.changes_since(load_bookmark(device).cursor, world.batch_size, exclude_origin=device.origin)
    world.__dict__.setdefault("pages", {})[name] = {"changed": True, "epoch": hub.hub_epoch(), "changes": page}


def woken(world: World, name: str) -> None:
    """The device's live thread applies the page the wait answered (sync/wake.py), or leaves it
    to a round."""
    news = world.__dict__.setdefault("pages", {}).pop(name, None)
    if news is None:
        return
    applied = apply_page(world.device(name), news, world.batch_size, RoundReport())
    event("a wake's page applied" if applied else "a wake's page left to a round")


WAKES = {"wait": wait, "woken": woken, "wake": lambda world, name: (wait(world, name), woken(world, name))}
HARDER = {"catch_up_restore": catch_up_restore, "restores": restores, "sibling_relay": sibling_relay}


class OwnersHub:
    """A device's hub as a hub server lets it use it: a relay takes nothing of an origin another
    device owns (its current origin, or one it moved on from)."""

    def __init__(self, world: "Registered", name: str, inner) -> None:
        self.world, self.name, self.inner = world, name, inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def relay_changes(self, changes, *, owned=frozenset()):
        return self.inner.relay_changes(changes, owned=self.world.owned_by_others(self.name))


class Registered(World):
    def hub_for(self, name: str):
        if name not in self.hubs:
            self.hubs[name] = OwnersHub(self, name, self.new_hub_connector())
        return self.hubs[name]

    def owned_by_others(self, name: str) -> set[str]:
        return {o for d in DEVICES if d != name for o in [self.device(d).origin,
                                                         *(r["from"] for r in load_bookmark(self.device(d)).restarts)]}


def compact(world: World, left_out: str | None) -> None:
    """What a hub drops when every device but `left_out` (or none: "all") holds it (each device's
    own origin is its own, whatever its cursor says), in small steps as its job takes them."""
    pulled = {d: load_bookmark(world.device(d)).cursor for d in DEVICES if left_out not in (d, "all")}
    tops = world.hub.tops(set(DEVICES))
    floor = retention_floor(tops, pulled, {d: d for d in DEVICES})
    dropped = 0
    while step := world.hub.compact(floor, 2):
        dropped += step
    event(f"compacted{' past a device' if left_out else ''}: {'some' if dropped else 'none'}")


@contextmanager
def device_clock(skew_ms: int):
    """This device's wall clock: the frozen time plus its own error."""
    true_ms = clock_module.wall_ms
    with mock.patch.object(clock_module, "wall_ms", lambda: true_ms() + skew_ms):
        yield


def sync(world: World, name: str, failure: str | None) -> None:
    store = world.device(name)
    if failure:
        inject(world, name, failure)
    try:
        world.sync(name)
    except RuntimeError:
        pass  # the injected crash; the next round must repair everything
    finally:
        if isinstance(world.hubs[name], FlakyHub):
            world.hubs[name] = world.hubs[name].inner
        store.backend.__dict__.pop("persist", None)
        store.__dict__.pop("set_bookmark", None)


def inject(world: World, name: str, where: str) -> None:
    store = world.device(name)
    event(f"injected {where}")
    if where in ("hub_before_apply", "hub_after_apply", "hub_down"):
        flaky = FlakyHub(world.hub_for(name))
        if where == "hub_down":
            flaky.down = True
        else:
            flaky.fail_after("apply_changes", 1, after_call=where == "hub_after_apply")
        world.hubs[name] = flaky
    elif where == "cursor_move":
        def crash(key, value):
            raise RuntimeError("killed before the cursor moved")

        store.set_bookmark = crash  # type: ignore[method-assign]
    elif where == "local_apply":
        original = type(store.backend).persist

        def crash_after(*args, **kwargs):
            original(store.backend, *args, **kwargs)
            raise RuntimeError("killed while applying")

        store.backend.persist = crash_after  # type: ignore[method-assign]


def baseline(world: World, oracle: Oracle) -> None:
    for cid in COURSES:
        write(world, oracle, ("create_course", DEVICES[0], cid, cid))
    for cid, lid in LECTURES:
        write(world, oracle, ("create_lecture", DEVICES[0], cid, lid, lid))
    world.settle(DEVICES, rounds=1)


def check_acknowledged(world: World, acked: list) -> None:
    records = world.hub.dump_records()
    for change in acked:
        state = records.get((change["kind"], record_key(change["kind"], change["courseId"], change["id"])))
        assert state is not None, f"acknowledged write vanished: {change}"
        if state["deleted"]:
            continue  # superseded by a delete
        if change["op"] == "delete":
            raise AssertionError(f"acknowledged delete undone: {change}")
        for field, value in change["fields"].items():
            clock = state["clocks"].get(field, "")
            assert clock >= change["hlc"], f"{field} of {change['id']} lost: {change}"
            if clock == change["hlc"]:
                assert state["fields"][field] == value


def check_nothing_wedged(world: World) -> None:
    """No device moved to a new origin (nothing here restores a device's store: a sibling's relay
    must not make one), and the heal origins at the hub are one per device at most however
    many times it was restored."""
    for name in DEVICES:
        assert load_bookmark(world.device(name)).restarts == [], f"{name} restarted its origin"
    origins = set(world.hub_seqs()) | set(world.hub.floors())
    assert len({o for o in origins if is_heal_origin(o)}) <= len(DEVICES), origins


# Always tried: every device's log trimmed past a backup the hub is then put back to, so that the
# devices give the hub their records (sync/heal.py) and each other device takes them once.
HEALED = [("backup",), ("update_course", "a", "c1", "title", "beta"), ("update_course", "b", "c2", "notes", "gamma"),
          ("update_course", "a", "c2", "title", "delta"), ("delete_lecture", "b", "c1", "l2"),
          *[("sync", d) for d in [*DEVICES, "a"]], ("compact", None), *[("sync", d) for d in DEVICES],
          ("restore", 0), ("update_course", "c", "c1", "notes", "alpha"), ("sync", "c"), ("sync", "b")]


# Always tried: a device behind what the hub compacted has its catch-up cut by a restore, then
# resumes on the restored hub; then restores one after another, and a sibling's relay.
RESTORED_DURING_A_CATCH_UP = [
    ("backup",), ("update_course", "a", "c1", "title", "beta"), ("create_lecture", "b", "c2", "n1", "gamma"),
    ("sync", "a"), ("sync", "b"), ("compact", "c"), ("catch_up_restore", "c", 0), ("sync", "c"), ("sync", "a"),
    ("sync", "b"), ("restores", 3), ("sibling_relay", "b", "a"), ("update_course", "a", "c2", "notes", "alpha"),
    ("sync", "a")]


# Always tried: a wake's page applied after the hub was put back from a backup that lacks it,
# and one that no longer follows on from the cursor because the hub compacted past the device.
WOKEN_LATE = [
    ("backup",), ("update_course", "a", "c1", "title", "beta"), ("sync", "a"), ("wait", "b"), ("restore", 0),
    ("update_course", "a", "c2", "notes", "gamma"), ("sync", "a"), ("woken", "b"), ("sync", "b"),
    ("update_course", "a", "c1", "notes", "delta"), ("sync", "a"), ("update_course", "a", "c2", "title", "alpha"),
    ("sync", "a"), ("sync", "c"), ("compact", "b"), ("update_course", "c", "c1", "title", "gamma"), ("sync", "c"),
    ("update_course", "a", "c1", "title", "beta"), ("sync", "a"), ("wake", "b"), ("sync", "b")]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=30))
@example(steps=HEALED)
@example(steps=RESTORED_DURING_A_CATCH_UP)
@example(steps=WOKEN_LATE)
def test_every_replica_matches_the_model_of_the_merge_rule(steps):
    note(f"steps: {steps!r}")
    oracle = Oracle()
    with tempfile.TemporaryDirectory() as tmp, freeze_time("2030-01-01T00:00:00Z") as frozen, oracle.watching():
        world = Registered(Path(tmp), "mongomock", batch_size=3)
        try:
            acked: list = []
            skews = dict.fromkeys(DEVICES, 0)
            baseline(world, oracle)
            for s in steps:
                run_step(world, oracle, s, acked, frozen, skews)
            oracle.check(world)  # before settling: replicas that disagree still match the model
            world.settle(DEVICES, rounds=2)
            conflicts = sum(len(oracle.replicas[n].ledger) for n in DEVICES)
            event(f"conflicts on devices: {min(conflicts, 5)}{'+' if conflicts >= 5 else ''}")
            oracle.check(world)
            assert_converged(world)
            check_acknowledged(world, acked)
            check_nothing_wedged(world)
        finally:
            world.close()
