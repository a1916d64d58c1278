"""Shared fixtures. Every test builds its own data: a temporary SQLite file per store, a fresh
mongomock-ng client per hub, and, when MONGO_URI is set, a throwaway database on that server."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import mongomock_ng
import pytest

from server.api import create_app
from server.connectors.factory import get_db_connector
from server.core.config import Settings
from tests.wire.hub import WireHub, unavailable_reason

REAL_MONGO_URI = os.environ.get("MONGO_URI")
# "wire": a real MongoDB-wire-protocol server in its own process (MONGO_URI, or mongoeco's).
WIRE = pytest.param("wire", marks=pytest.mark.wire)
MONGO_KINDS = ["mongomock", WIRE]
STORE_KINDS = ["sql", *MONGO_KINDS]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "wire_when_real: the test's wire-tier variants run against a real MongoDB (MONGO_URI) only: "
                   "on the mongoeco stand-in they would show nothing mongomock-ng does not, at seconds each")


def pytest_collection_modifyitems(config, items):
    """Without MONGO_URI the wire tier runs on mongoeco, a MongoDB written in Python and many times
    slower than a real one; there it keeps to what only a server in its own process can show (the
    contract suite over the real driver, hub and device processes, concurrency, restores). A test
    or module marked `wire_when_real` runs its wire variants against a real server only."""
    if REAL_MONGO_URI:
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_wire = callspec is not None and "wire" in callspec.params.values()
        (drop if on_wire and item.get_closest_marker("wire_when_real") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def wire_uri(tmp_path_factory):
    """The hub URI of the wire tier, shared by the session (each test uses its own database)."""
    if REAL_MONGO_URI:
        yield REAL_MONGO_URI
        return
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"wire tier unavailable under CI: {reason}")
        pytest.skip(reason)
    hub = WireHub(tmp_path_factory.mktemp("wirehub")).start()
    yield hub.uri
    hub.stop()


class MongoFactory:
    """Builds MongoConnectors on one hub (one mongomock client, or one database of a real
    server). Several connectors built from it share the hub like devices share a real one."""

    def __init__(self, kind: str, uri: str | None = None):
        self.kind, self.uri = kind, uri
        self.db_name = f"test_{uuid.uuid4().hex[:10]}"
        self.client = mongomock_ng.MongoClient() if kind == "mongomock" else None
        self.built = []

    def __call__(self, name: str = "hub", **kw):
        """A connector on database `name`: the same name is the same store."""
        if self.kind == "mongomock":
            kw.setdefault("client", self.client)
        else:
            kw.setdefault("uri", self.uri)
        conn = get_db_connector("mongo", Settings(), db_name=f"{self.db_name}_{name}", **kw)
        self.built.append(conn)
        return conn

    def drop(self):
        for conn in self.built:
            try:
                if self.kind == "wire" and conn.db is not None:
                    conn.client.drop_database(conn.db_name)
                conn.close()
            except Exception:
                pass


def mongo_factory_for(request, kind: str) -> MongoFactory:
    return MongoFactory(kind, request.getfixturevalue("wire_uri") if kind == "wire" else None)


@pytest.fixture(params=MONGO_KINDS + ["sqlite"])
def world(request, tmp_path):
    """Devices and one hub (tests/synckit.py), over every kind of hub."""
    from tests.synckit import World  # synckit builds on this module

    uri = request.getfixturevalue("wire_uri") if request.param == "wire" else None
    made = World(tmp_path, request.param, wire_uri=uri)
    yield made
    made.close()


@pytest.fixture(params=MONGO_KINDS)
def mongo_factory(request):
    factory = mongo_factory_for(request, request.param)
    yield factory
    factory.drop()


@pytest.fixture
def sql_factory(tmp_path):
    built = []

    def make(name: str = "device", **kw):
        conn = get_db_connector("sql", Settings(), path=str(tmp_path / f"{name}.sqlite3"), **kw)
        built.append(conn)
        return conn

    yield make
    for conn in built:
        conn.close()


@pytest.fixture(params=STORE_KINDS)
def store_factory(request, tmp_path):
    """Builds connectors of one kind (parametrized over every kind): the contract suite."""
    if request.param == "sql":
        mf = None
        made = []

        def make(name: str = "device", **kw):
            conn = get_db_connector("sql", Settings(), path=str(tmp_path / f"{name}.sqlite3"), **kw)
            made.append(conn)
            return conn
    else:
        mf = mongo_factory_for(request, request.param)
        make = mf
    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    if mf:
        mf.drop()
    else:
        for conn in made:
            conn.close()


@pytest.fixture
def connector(store_factory):
    conn = store_factory(user_id="learner")
    conn.connect()
    return conn


@pytest.fixture
def app(connector, tmp_path):
    settings = Settings(db_connector="sql" if connector.__class__.__name__ == "SqlConnector" else "mongo",
                        sqlite_path=str(tmp_path / "unused.sqlite3"))
    return create_app(settings, store=connector, start_sync=False, testing=True)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


COURSE = {"title": "18.06 Linear Algebra", "source": "https://ocw.mit.edu/courses/18-06/"}
LECTURE = {"title": "Elimination", "order": 1, "videoUrl": "https://ocw.mit.edu/v/2"}
ASSIGNMENT = {"title": "Problem set 1", "dueDate": "2026-12-01"}


def break_driver(conn, how: str = "gone") -> None:
    """Make the store's driver fail underneath the connector. SQLite: `gone`, the file became a
    directory SQLite cannot open; `malformed`, the open connection answers every statement with
    the error of a damaged file. Mongo: the client and database raise the driver's own timeout
    on every use, as a lost server does."""
    from server.connectors.sqlite.store import SqlConnector

    if isinstance(conn, SqlConnector) and how == "malformed":
        import sqlite3

        class Malformed:
            in_transaction = False

            def __getattr__(self, name):
                def fail(*args, **kwargs):
                    raise sqlite3.DatabaseError("database disk image is malformed")
                return fail

        conn.pool.replace_mine(Malformed())
        return
    if isinstance(conn, SqlConnector):
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            path = Path(conn.path + suffix)
            if path.exists():
                path.unlink()
        Path(conn.path).mkdir()
        return
    from pymongo.errors import ServerSelectionTimeoutError

    class Down:
        def __getattr__(self, name):
            raise ServerSelectionTimeoutError("the server went away (test)")

        def __getitem__(self, name):
            raise ServerSelectionTimeoutError("the server went away (test)")

    conn.client, conn.db = Down(), Down()
