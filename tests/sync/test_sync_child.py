"""The production default, rounds in a child process, without the wire tier: the child opens
the same SQLite store and a SQLite-file hub with the same hub opener the server uses."""

from __future__ import annotations

import functools
import os

from server.connectors.factory import get_db_connector
from server.core.config import Settings
from server.sync.child import ChildRounds
from server.sync.engine import run_round
from server.sync.hub import HubSpec, open_hub
from server.sync.service import SyncService
from tests.synckit import course

USER = "learner"


def test_a_round_in_the_child_moves_changes_both_ways_through_a_sqlite_hub(tmp_path):
    hub_path = str(tmp_path / "hub.sqlite3")
    settings = Settings(sqlite_path=str(tmp_path / "dev.sqlite3"), mongo_uri="mongodb://unused.invalid/",
                        user_id=USER, origin="dev-a")
    local = get_db_connector("sql", settings, user_id=USER, origin="dev-a")
    local.connect()
    peer = get_db_connector("sql", settings, path=str(tmp_path / "peer.sqlite3"), user_id=USER, origin="dev-b")
    peer.connect()
    spec = HubSpec("sql", hub_path)
    service = SyncService(settings, local, functools.partial(open_hub, settings, USER, spec),
                          child=ChildRounds(settings, USER, "dev-a", spec))
    try:
        mine = course(local, id="mine", title="made on a")
        report = service.run_once()
        assert (report.error, report.pushed, report.pulled) == (None, 1, 0)
        child_pid = service.child.pid
        assert child_pid is not None and child_pid != os.getpid()
        hub = open_hub(settings, USER, spec)
        assert [c["id"] for c in hub.store.get_courses()] == ["mine"]
        peer.apply_changes(hub.changes_since({}, 100, exclude_origin="dev-b"))
        course(peer, id="theirs", title="made on b")
        assert run_round(peer, hub, 100).error is None
        report = service.run_once()
        assert (report.error, report.pushed, report.pulled) == (None, 0, 1)
        assert service.child.pid == child_pid  # one long-lived child
        assert [c["id"] for c in local.get_courses()] == ["mine", "theirs"]
        assert local.get_course("mine") == mine
        status = service.status()
        assert status["worker"] == {"process": "child", "pid": child_pid} and status["pending"]["count"] == 0
        hub.close()
    finally:
        service.shutdown()
        local.close()
        peer.close()
