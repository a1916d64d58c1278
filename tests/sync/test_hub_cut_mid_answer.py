"""A hub killed while it answers one of the round's calls (the round call, a pull's page, a push,
a live wait answered with the changes): the device has half an answer and a closed connection.
Its cursor stays where its last committed apply left it, nothing half-read is applied, and once
the hub is back the next round (or the next wait) brings everything, once.

Between the device's hub client and a real hub process stands a relay that forwards every call
whole until it is armed with one: that call's answer goes through only in part, the hub process
is killed with SIGKILL, and the device's connection is closed, as a hub dying mid-answer does."""

from __future__ import annotations

import socket
import threading
from collections import Counter

import pytest

from server.connectors.factory import get_db_connector
from server.core.config import Settings
from server.sync.bookmark import load_bookmark
from server.sync.engine import run_round
from server.sync.http_hub import HubClient
from server.sync.live import LiveWait
from server.sync.service import SyncService
from tests.e2e.test_e2e_devices import wait_for
from tests.hub.test_hub_process import USER, Hubs
from tests.synckit import course


def read_message(sock: socket.socket, pending: bytearray) -> bytes | None:
    """One whole HTTP/1.1 message (head and a Content-Length body) from `sock`; None at its end."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65_536)
        if not chunk:
            return None
        pending += chunk
    end = pending.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(pending[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        assert name.strip().lower() != b"transfer-encoding", "the relay reads Content-Length framing only"
    while len(pending) < end + length:
        chunk = sock.recv(65_536)
        if not chunk:
            return None
        pending += chunk
    message = bytes(pending[:end + length])
    del pending[:end + length]
    return message


class Cutter:
    """A relay to the hub process that, armed with a call's path, cuts that call's answer halfway
    and kills the hub."""

    def __init__(self, hub) -> None:
        self.hub, self.armed, self.cuts = hub, None, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, path: str) -> None:
        with self._lock:
            self.armed = path

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = None
        mine, theirs = bytearray(), bytearray()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.hub.port), timeout=120)
            while (asked := read_message(client, mine)) is not None:
                path = asked.split(b" ", 2)[1].decode()
                upstream.sendall(asked)
                answer = read_message(upstream, theirs)
                if answer is None:
                    return
                with self._lock:
                    cut = self.armed is not None and path.endswith(self.armed)
                    if cut:
                        self.armed = None
                if cut:
                    head = answer.index(b"\r\n\r\n") + 4
                    client.sendall(answer[:head + (len(answer) - head) // 2])
                    self.hub.kill()
                    self.cuts += 1
                    return
                client.sendall(answer)
        except OSError:
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def world(tmp_path):
    hubs = Hubs(tmp_path, "sql", None)
    hub = hubs.hub()
    cutter = Cutter(hub)
    stores, clients = {}, {}
    for name in ("a", "b"):
        stores[name] = get_db_connector("sql", Settings(), path=str(tmp_path / f"{name}.sqlite3"), user_id=USER,
                                        origin=name)
        stores[name].connect()
        token = hubs.token()
        # b's live wait has a client of its own, as a device's live thread does
        for key in (name, f"{name} waiting"):
            clients[key] = HubClient(f"http://127.0.0.1:{cutter.port}", token, timeout_ms=20_000, user_id=USER)
            clients[key].connect()
    yield hub, cutter, stores, clients
    for client in clients.values():
        client.close()
    for store in stores.values():
        store.close()
    cutter.close()
    hubs.stop()


def synced(store, client, batch_size: int = 500):
    report = run_round(store, client, batch_size)
    assert report.error is None, report.error
    return report


def titles(store) -> list[str]:
    return sorted(c["title"] for c in store.get_courses())


def assert_once(store, hub_store_path) -> None:
    """Every change of the hub's log once on the device, and the hub's log without a copy."""
    import sqlite3

    with sqlite3.connect(hub_store_path) as db:
        slots = db.execute("SELECT origin, seq FROM changes").fetchall()
    assert not [s for s, n in Counter(slots).items() if n > 1], "the hub logged a change twice"
    assert len(titles(store)) == len(set(titles(store)))


@pytest.mark.parametrize("call", ["/round", "/pull"])
def test_a_pull_cut_halfway_leaves_the_cursor_at_the_last_page_applied(world, tmp_path, call):
    hub, cutter, stores, clients = world
    synced(stores["b"], clients["b"])
    for n in range(5):
        course(stores["a"], id=f"c{n}", title=f"t{n}")
    synced(stores["a"], clients["a"])
    before = load_bookmark(stores["b"]).cursor
    cutter.arm(call)
    report = run_round(stores["b"], clients["b"], 2)  # the round call's page holds 2; /pull asks the rest
    assert report.error and cutter.cuts == 1, report
    cursor = load_bookmark(stores["b"]).cursor
    if call == "/round":  # nothing was applied: the first page was in the half that never came
        assert cursor == before and titles(stores["b"]) == []
    else:  # the round call's page was applied, with its cursor; the next page was not
        assert cursor.get("a") == before.get("a", 0) + 2 and titles(stores["b"]) == ["t0", "t1"]
    hub.start()
    synced(stores["b"], clients["b"], 2)
    assert titles(stores["b"]) == [f"t{n}" for n in range(5)]
    assert load_bookmark(stores["b"]).cursor.get("a") == before.get("a", 0) + 5
    assert_once(stores["b"], tmp_path / "hub.sqlite3")


def test_a_push_whose_answer_is_cut_is_not_logged_twice(world, tmp_path):
    hub, cutter, stores, clients = world
    synced(stores["a"], clients["a"])
    for n in range(3):
        course(stores["a"], id=f"c{n}", title=f"t{n}")
    cutter.arm("/push")
    report = run_round(stores["a"], clients["a"])
    assert report.error and cutter.cuts == 1, report
    assert load_bookmark(stores["a"]).cursor.get("a", 0) == 0, "the push was not acknowledged"
    hub.start()
    again = synced(stores["a"], clients["a"])
    assert again.pushed_sent == 0, "the hub had them: the round's opening saw them under a's origin"
    assert load_bookmark(stores["a"]).cursor["a"] == 3
    synced(stores["b"], clients["b"])
    assert titles(stores["b"]) == ["t0", "t1", "t2"]
    assert_once(stores["b"], tmp_path / "hub.sqlite3")


def test_a_wait_answer_cut_halfway_applies_nothing_and_the_next_wait_brings_it(world, tmp_path):
    hub, cutter, stores, clients = world
    synced(stores["a"], clients["a"])
    synced(stores["b"], clients["b"])
    service = SyncService(Settings(sync_interval_seconds=3600), stores["b"], lambda: clients["b"])
    live = LiveWait(service, lambda: clients["b waiting"], rng=lambda: 0.0)
    live.start()
    try:
        wait_for(lambda: live.state == "waiting", 120, "b to wait")
        before = load_bookmark(stores["b"]).cursor
        cutter.arm("/wait")
        course(stores["a"], id="c1", title="through a cut")
        synced(stores["a"], clients["a"])
        wait_for(lambda: cutter.cuts == 1, 120, "the wait's answer cut")
        assert load_bookmark(stores["b"]).cursor == before and titles(stores["b"]) == []
        hub.start()
        wait_for(lambda: titles(stores["b"]) == ["through a cut"], 120, "the change on b once the hub is back")
        assert load_bookmark(stores["b"]).cursor.get("a") == before.get("a", 0) + 1
        assert_once(stores["b"], tmp_path / "hub.sqlite3")
    finally:
        live.stop()
