"""A small world for sync tests: devices (SQLite files), one hub (Mongo or SQLite), rounds."""

from __future__ import annotations

import copy
import shutil
import sqlite3
from pathlib import Path

from server.connectors.base import DatabaseConnector
from server.connectors.factory import get_db_connector
from server.core.config import Settings
from server.core.errors import StoreUnavailable
from server.core.records import validate
from server.sync.engine import run_round
from server.sync.report import RoundReport
from tests.conftest import MongoFactory

USER = "learner"


class World:
    def __init__(self, tmp_path: Path, hub_kind: str, batch_size: int = 500, wire_uri: str | None = None):
        self.tmp_path, self.hub_kind, self.batch_size = tmp_path, hub_kind, batch_size
        self.mongo = MongoFactory(hub_kind, wire_uri) if hub_kind != "sqlite" else None
        self.devices: dict[str, DatabaseConnector] = {}
        self.hubs: dict[str, DatabaseConnector] = {}
        self.built: list[DatabaseConnector] = []

    def new_hub_connector(self, **kw) -> DatabaseConnector:
        if self.mongo:
            conn = self.mongo("hub", user_id=kw.pop("user_id", USER), **kw)
        else:
            conn = get_db_connector("sql", Settings(), path=str(self.tmp_path / "hub.sqlite3"),
                                    user_id=kw.pop("user_id", USER), **kw)
            self.built.append(conn)
        conn.connect()
        return conn

    @property
    def hub(self) -> DatabaseConnector:
        if "_view" not in self.hubs:
            self.hubs["_view"] = self.new_hub_connector()
        return self.hubs["_view"]

    def device(self, name: str) -> DatabaseConnector:
        if name not in self.devices:
            conn = get_db_connector("sql", Settings(), path=str(self.tmp_path / f"{name}.sqlite3"),
                                    user_id=USER, origin=name)
            conn.connect()
            self.devices[name] = conn
            self.built.append(conn)
        return self.devices[name]

    def hub_for(self, name: str) -> DatabaseConnector:
        if name not in self.hubs:
            self.hubs[name] = self.new_hub_connector()
        return self.hubs[name]

    def sync(self, name: str) -> RoundReport:
        report = run_round(self.device(name), self.hub_for(name), self.batch_size)
        return report

    def settle(self, names: list[str] | None = None, rounds: int = 2) -> None:
        for _ in range(rounds):
            for name in names or list(self.devices):
                report = self.sync(name)
                assert report.error is None, report.error

    def backup_hub(self) -> object:
        """A copy of the whole hub as it is now, as an operator's backup would take it."""
        if self.mongo:
            db = self.hub.db
            return {name: list(db[name].find()) for name in db.list_collection_names()}
        path = self.tmp_path / f"hub-backup-{len(list(self.tmp_path.glob('hub-backup-*')))}.sqlite3"
        src, dst = sqlite3.connect(self.tmp_path / "hub.sqlite3"), sqlite3.connect(path)
        src.backup(dst)
        src.close()
        dst.close()
        return path

    def restore_hub(self, backup: object) -> None:
        """Put a backup back in place of the hub (a SQLite file copied over a stopped hub, or a
        MongoDB restored with --drop); hub connectors are built anew, as a restarted hub's are."""
        if self.mongo:
            db = self.hub.db
            for name in db.list_collection_names():
                db[name].delete_many({})
            for name, docs in backup.items():
                if docs:
                    db[name].insert_many(copy.deepcopy(docs))
            return
        for conn in self.hubs.values():
            conn.close()
        self.hubs.clear()
        for suffix in ("", "-wal", "-shm"):
            (self.tmp_path / f"hub.sqlite3{suffix}").unlink(missing_ok=True)
        shutil.copyfile(backup, self.tmp_path / "hub.sqlite3")

    def hub_seqs(self) -> dict[str, list[int]]:
        """origin -> the seqs the hub's log holds of it, sorted, read from the store itself (not
        through a reader that stops at a hole)."""
        if self.mongo:
            return by_origin((d["origin"], d["seq"]) for d in self.hub.db.changes.find({"userId": USER}))
        return sqlite_seqs(self.tmp_path / "hub.sqlite3")

    def device_seqs(self, name: str) -> dict[str, list[int]]:
        """origin -> the seqs a device's log holds of it, read from its file."""
        return sqlite_seqs(self.tmp_path / f"{name}.sqlite3")

    def close(self) -> None:
        for conn in self.built:
            conn.close()
        if self.mongo:
            self.mongo.drop()


def by_origin(rows) -> dict[str, list[int]]:
    """origin -> its seqs, sorted, from (origin, seq) rows."""
    out: dict[str, list[int]] = {}
    for origin, seq in rows:
        out.setdefault(origin, []).append(seq)
    return {o: sorted(s) for o, s in out.items()}


def sqlite_seqs(path: Path) -> dict[str, list[int]]:
    conn = sqlite3.connect(path)
    try:
        return by_origin(conn.execute("SELECT origin, seq FROM changes WHERE user_id = ?", (USER,)).fetchall())
    finally:
        conn.close()


def six_steps(a: DatabaseConnector, b: DatabaseConnector) -> list:
    """Two devices' edits, one a step, whose end state is FINAL_COURSES: creates, a note on the
    other's course, a delete, a rename."""
    return [
        lambda: course(a, id="c1", title="c1"),
        lambda: course(b, id="b1", title="b1"),
        lambda: a.update("course", None, "b1", {"notes": "a's note"}),
        lambda: b.delete("course", None, "c1"),
        lambda: course(a, id="c2", title="c2"),
        lambda: b.update("course", None, "c2", {"title": "c2 renamed"}),
    ]


FINAL_COURSES = {"b1": ("b1", "a's note"), "c2": ("c2 renamed", "")}  # id -> (title, notes) after six_steps


def visible(store: DatabaseConnector) -> dict:
    """What a user can see, plus which ids are tombstones: what convergence compares."""
    records = store.dump_records()
    return {
        "user": store.get_user(),
        "courses": store.get_courses(),
        "tombstones": sorted(k for k, s in records.items() if s["deleted"]),
        "fields": {k: (s["fields"], s["clocks"]) for k, s in records.items() if not s["deleted"]},
    }


def assert_converged(world: World) -> None:
    hub_view = visible(world.hub)
    for name, dev in world.devices.items():
        assert visible(dev) == hub_view, f"device {name} differs from the hub"


def course(store, **extra):
    body = validate("course", {"title": "Course", "source": "https://a.b", **extra}, "create")
    return store.create("course", None, body)[0]


def lecture(store, course_id, **extra):
    body = {"title": "Lecture", "order": 1, "videoUrl": "https://a.b/v", **extra}
    return store.create("lecture", course_id, validate("lecture", body, "create"))[0]


class FlakyHub:
    """Wraps a hub connector; while `down` is true every call raises StoreUnavailable, and
    `fail_after(n, method)` raises once after the n-th successful call of `method`."""

    def __init__(self, inner: DatabaseConnector):
        self.inner, self.down = inner, False
        self._trap: tuple[str, int, bool] | None = None

    def fail_after(self, method: str, calls: int, after_call: bool = True) -> None:
        self._trap = (method, calls, after_call)

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self.down:
                raise StoreUnavailable("The MongoDB hub failed: ServerSelectionTimeoutError (test)")
            trap = self._trap
            if trap and trap[0] == name and trap[1] <= 1 and not trap[2]:
                self._trap = None
                raise StoreUnavailable("hub dropped the connection before the call (test)")
            result = attr(*args, **kwargs)
            if trap and trap[0] == name:
                if trap[1] <= 1:
                    self._trap = None
                    raise StoreUnavailable("hub dropped the connection after the call (test)")
                self._trap = (trap[0], trap[1] - 1, trap[2])
            return result

        return call
