"""A bounded chaos run: a hub process and two device processes (`python -m server`, each with its
sync child), syncing live (push on write, and a wait for the hub's news), random edits, creates
and deletes on both, and meanwhile kills of a device, of a sync child and of the hub, and the
hub put back to an older copy of its data file. Afterwards the devices must converge, and every
acknowledged write must be visible, overwritten by a later write, deleted, or in the conflicts
ledger.

The run prints its seed; `CHAOS_SEED=<n>` replays the same choices (the timing of the sync
rounds still varies). `CHAOS_SECONDS` sets how long the chaos lasts (default 25)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import time
from dataclasses import dataclass

import pytest

from server.connectors.factory import get_db_connector
from server.core.changes import is_heal_origin
from server.core.config import Settings
from server.core.errors import StoreUnavailable
from tests.e2e.test_e2e_devices import USER, Network, courses, create, wait_for
from tests.wire.hub import WireHub, unavailable_reason, wire_python

pytestmark = pytest.mark.wire
# Live: each write is pushed at once and each device waits on the hub for the other's changes;
# the timer (30 s) hardly ever fires in a run, so the live path carries the sync.
LIVE = {"SYNC_LIVE": "1", "SYNC_PUSH_ON_WRITE": "1", "SYNC_INTERVAL_SECONDS": "30",
        "HUB_TIMEOUT_MS": "3000", "SYNC_BATCH_SIZE": "7"}
FIELDS = {"course": ("title", "notes"), "lecture": ("title", "note")}


@dataclass
class Write:
    device: str
    kind: str
    record: str
    field: str
    value: str
    sent: float
    acked: float


class Chaos:
    def __init__(self, network: Network, hub: WireHub | None, rng: random.Random, seed: int):
        self.net, self.hub, self.rng, self.seed = network, hub, rng, seed
        self.writes: list[Write] = []
        self.created: set[str] = set()
        self.deleted: set[str] = set()
        self.lectures: list[str] = []
        self.kills = {"device": 0, "child": 0, "hub": 0, "hub restored from a backup": 0, "hub compacted": 0,
                      "hub restored during a catch-up": 0}
        self.backup = None
        self.n = 0

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.04:
            self.kill_device()
        elif roll < 0.08:
            self.kill_child()
        elif roll < 0.10 and self.hub is not None:
            self.kill_hub()
        elif roll < 0.115 and self.hub is not None:
            self.back_up_or_restore_hub()
        elif roll < 0.125 and self.hub is not None:
            self.restore_during_a_catch_up()
        elif roll < 0.14:
            self.compact_hub()
        elif roll < 0.25:
            self.create_lecture()
        elif roll < 0.28 and len(self.lectures) > 3:
            self.delete_lecture()
        else:
            self.edit()

    def device(self) -> str:
        return self.rng.choice(sorted(self.net.devices))

    def edit(self) -> None:
        name = self.device()
        kind = "lecture" if self.lectures and self.rng.random() < 0.6 else "course"
        record = self.rng.choice(self.lectures) if kind == "lecture" else "shared"
        field = self.rng.choice(FIELDS[kind])
        self.n += 1
        value = f"{name}-{self.n}"
        path = f"/api/v1/courses/shared/lectures/{record}" if kind == "lecture" else "/api/v1/courses/shared"
        sent = time.monotonic()
        status, body, _ = self.net.devices[name].request("PATCH", path, {field: value})
        if status == 200:
            self.writes.append(Write(name, kind, record, field, value, sent, time.monotonic()))
        else:  # a lecture deleted here, or made on the other device and not here yet: refused
            assert status == 404 and kind == "lecture", (self.seed, status, body)

    def create_lecture(self) -> None:
        name = self.device()
        self.n += 1
        rid = f"{name.lower()}-l{self.n}"
        create(self.net.devices[name], "/api/v1/courses/shared/lectures",
               {"id": rid, "title": f"{name}-{self.n}", "order": self.n, "videoUrl": "https://a.b/v"})
        self.created.add(rid)
        self.lectures.append(rid)

    def delete_lecture(self) -> None:
        name = self.device()
        rid = self.rng.choice(self.lectures)
        status, body, _ = self.net.devices[name].request("DELETE", f"/api/v1/courses/shared/lectures/{rid}")
        assert status in (200, 404), (self.seed, status, body)
        if status == 200:
            self.deleted.add(rid)
            self.lectures.remove(rid)

    def kill_device(self) -> None:
        srv = self.net.devices[self.device()]
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait()
        srv.start()
        self.kills["device"] += 1

    def kill_child(self) -> None:
        srv = self.net.devices[self.device()]
        pid = srv.request("GET", "/api/v1/sync/status")[1]["data"]["worker"]["pid"]
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
                self.kills["child"] += 1
            except ProcessLookupError:
                pass

    def kill_hub(self) -> None:
        self.hub.kill()
        for _ in range(self.rng.randint(1, 4)):  # edits go on while it is down
            self.edit()
        self.hub.start()
        self.kills["hub"] += 1


    def back_up_or_restore_hub(self) -> None:
        """Take a copy of the hub's data file (the first time, and now and then a newer one), or
        put the copy back: the hub then holds less than it acknowledged, and the devices must
        give it all back, restore after restore in one epoch."""
        if self.backup is None or self.rng.random() < 0.3:
            self.backup = self.hub.data_file.with_name("hub-backup.sqlite3")
            src, dst = sqlite3.connect(self.hub.data_file), sqlite3.connect(self.backup)
            src.backup(dst)
            src.close()
            dst.close()
            return
        self.restore()

    def restore_during_a_catch_up(self) -> None:
        """Compact all of the hub's log, so that the devices (woken by the news) catch up from its
        records, and put the backup back while one of them is part way through."""
        if self.backup is None:
            return
        self.compact_hub()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not any(map(self.catching_up, self.net.devices)):
            time.sleep(0.01)
        if any(map(self.catching_up, self.net.devices)):
            self.kills["hub restored during a catch-up"] += 1
        self.restore()

    def catching_up(self, name: str) -> bool:
        try:
            conn = sqlite3.connect(self.net.tmp_path / f"{name}.sqlite3", timeout=0.05)
            try:
                row = conn.execute("SELECT value FROM sync_state WHERE key = 'hub'").fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            return False
        return bool(row) and '"snapshot"' in row[0]

    def restore(self) -> None:
        self.hub.kill()
        for suffix in ("", "-wal", "-shm"):
            self.hub.data_file.with_name(self.hub.data_file.name + suffix).unlink(missing_ok=True)
        shutil.copyfile(self.backup, self.hub.data_file)
        self.hub.start()
        self.kills["hub restored from a backup"] += 1


    def compact_hub(self) -> None:
        """The hub drops all of its log, as if no device had been seen for longer than the
        retention: a device behind it catches up from the records, while edits go on."""
        store = get_db_connector("mongo", Settings(mongo_uri=self.net.uri, mongo_db=self.net.db, hub_timeout_ms=800),
                                 user_id=USER, origin=None)
        try:
            store.connect()
            tops = store.tops({o for o in store.floors()} | set(self.origins(store)))
            while store.compact(tops, 50):
                pass
            self.kills["hub compacted"] += 1
        except StoreUnavailable:
            pass  # the hub is down just now
        finally:
            store.close()

    @staticmethod
    def origins(store) -> set[str]:
        return {ch["origin"] for ch in store.changes_since({}, 10_000)}


def settle(net: Network, seed: int) -> None:
    """Rounds on every device until a whole pass moves nothing and the devices agree."""
    def quiet() -> bool:
        moved = 0
        for name in sorted(net.devices):
            status, body = net.devices[name].round()
            if status != 200:
                return False
            moved += body["data"]["pushed"] + body["data"]["pulled"]
        views = [courses(srv) for srv in net.devices.values()]
        return moved == 0 and all(v == views[0] for v in views)

    wait_for(quiet, 120, f"the devices to converge (seed {seed})")


def test_chaos_converges_and_loses_no_acknowledged_write(tmp_path):
    if wire_python() is None and not os.environ.get("MONGO_URI"):
        if os.environ.get("CI") == "true":
            pytest.fail(f"wire tier unavailable under CI: {unavailable_reason()}")
        pytest.skip(unavailable_reason())
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"chaos seed {seed} (CHAOS_SEED={seed} replays it)")
    hub = None if os.environ.get("MONGO_URI") else WireHub(tmp_path).start()  # a real server is not ours to kill
    net = Network(tmp_path, hub.uri if hub else os.environ["MONGO_URI"], f"chaos_{seed}_{os.getpid()}")
    try:
        a = net.device("A", **LIVE)
        b = net.device("B", **LIVE)
        wait_for(lambda: all(srv.request("GET", "/api/v1/sync/status")[1]["data"]["state"] == "live"
                             for srv in (a, b)), 120, "both devices past their first round, waiting at the hub")
        create(a, "/api/v1/courses", {"id": "shared", "title": "Shared", "source": "https://a.b"})
        wait_for(lambda: any(c["id"] == "shared" for c in courses(b)), 120, "the course on B, live")
        assert live_wakes(b) >= 1, "B pulled the course on a timer round, not because the hub had news"
        chaos = Chaos(net, hub, random.Random(seed), seed)
        deadline = time.monotonic() + float(os.environ.get("CHAOS_SECONDS", "25"))
        while time.monotonic() < deadline:
            chaos.step()
        print(f"chaos: {len(chaos.writes)} edits, {len(chaos.created)} lectures created, "
              f"{len(chaos.deleted)} deleted, kills {chaos.kills}")
        started = time.monotonic()
        settle(net, seed)
        print(f"chaos: converged in {time.monotonic() - started:.1f} s")
        check_every_acknowledged_write(net, chaos)
    finally:
        net.stop_all()
        if hub is not None:
            hub.stop()


def live_wakes(srv) -> int:
    live = srv.request("GET", "/api/v1/sync/status")[1]["data"]["live"]
    assert live["state"] in ("waiting", "starting", "retrying"), live
    return live["wakes"]


def check_every_acknowledged_write(net: Network, chaos: Chaos) -> None:
    seed = chaos.seed
    [final] = courses(net.devices["A"])
    lectures = {lec["id"]: lec for lec in final["lectures"]}
    assert chaos.created - chaos.deleted == set(lectures), f"seed {seed}: a created lecture is missing or back"
    lost = set()
    for name, srv in net.devices.items():
        status, body, _ = srv.request("GET", "/api/v1/sync/conflicts?limit=1000")
        assert status == 200
        lost |= {(c["recordId"], c["field"], v) for c in body["data"] for v in (c["localValue"], c["remoteValue"])}
    for w in chaos.writes:
        if w.record in chaos.deleted:
            continue
        now = (lectures[w.record] if w.kind == "lecture" else final)[w.field]
        overwritten = any(o is not w and (o.kind, o.record, o.field) == (w.kind, w.record, w.field)
                          and o.acked > w.sent for o in chaos.writes)
        assert now == w.value or overwritten or (w.record, w.field, w.value) in lost, \
            f"seed {seed}: {w} is neither visible ({now!r}), overwritten, deleted, nor in the conflicts"
    # The hub's log: every origin's sequence numbers once each, with no gap, from just past what
    # compaction dropped of it (its floor) on.
    seqs: dict[str, list[int]] = {}
    for doc in net.hub_collection("changes").find({}, {"origin": 1, "seq": 1}):
        seqs.setdefault(doc["origin"], []).append(doc["seq"])
    floors = {d["origin"]: d.get("floor", 0) for d in net.hub_collection("origins").find({})}
    for origin, got in seqs.items():
        start = floors.get(origin, 0) + 1
        assert sorted(got) == list(range(start, start + len(got))), f"seed {seed}: origin {origin} has gaps or twins"
    # However many times the hub was put back, each device heals it under one heal origin.
    healers = {o for o in floors if is_heal_origin(o)}
    assert len(healers) <= len(net.devices), f"seed {seed}: heal origins {sorted(healers)}"
