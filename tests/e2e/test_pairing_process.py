"""Pairing with real processes: a hub server on SQLite, `hub invite` run as the command a person
runs, and two fresh `make run` devices (each store seeded as demo-learner by seed.py, then
`python -m server`) pairing by POST /api/v1/sync/hub with no restart. A course made on the
first is served by the second, and the sample courses are on both."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.test_e2e_devices import wait_for
from tests.hub.test_hub_process import Hubs
from tests.procs import ROOT, ServerProcess

USER = "learner"
SAMPLES = {"18.06 Linear Algebra", "6.042J Mathematics for Computer Science",
           "CS50x: Introduction to Computer Science", "ECON 159 Game Theory"}


def invite(hubs: Hubs, hub: ServerProcess, name: str) -> str:
    """`hub invite` where the hub's settings are (its store, its HOST and PORT): the last line."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "server.api", "hub", "invite", USER, "--name", name],
        cwd=ROOT, env={**hubs_env(hubs), "PORT": str(hub.port)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def hubs_env(hubs: Hubs) -> dict[str, str]:
    import os

    return {**{k: v for k, v in os.environ.items() if k not in ("MONGO_URI", "DB_CONNECTOR")}, **hubs.store_env}


def make_run_device(hubs: Hubs, name: str) -> ServerProcess:
    """What `make run` does on a fresh clone: seed.py --if-empty, then python -m server (no hub set)."""
    srv = ServerProcess(hubs.tmp_path, name, SYNC_PUSH_ON_WRITE="1", SYNC_LIVE="1", HUB_TIMEOUT_MS="5000")
    for key in ("HUB_URL", "HUB_TOKEN", "USER_ID", "MONGO_URI"):
        srv.env.pop(key, None)
    seeded = subprocess.run([sys.executable, "seed.py", "--if-empty"], cwd=ROOT, env=srv.env, capture_output=True,
                            text=True, timeout=120)
    assert seeded.returncode == 0 and "demo-learner" in seeded.stdout, seeded.stderr
    hubs.devices[name] = srv
    return srv.start()


def titles(srv: ServerProcess) -> set[str]:
    status, body, _ = srv.request("GET", "/api/v1/courses")
    assert status == 200, body
    return {c["title"] for c in body["data"]}


def test_two_fresh_devices_pair_by_invitation_and_a_course_travels_between_them(tmp_path):
    hubs = Hubs(tmp_path, "sql", None)
    try:
        hub = hubs.hub()
        first, second = make_run_device(hubs, "first"), make_run_device(hubs, "second")
        for srv, name in ((first, "laptop"), (second, "phone")):
            invitation = invite(hubs, hub, name)
            assert invitation.startswith(f"coursesync+http://127.0.0.1:{hub.port}#csi_")
            status, body, _ = srv.request("POST", "/api/v1/sync/hub", {"invitation": invitation})
            assert status == 200 and body["data"]["userId"] == USER, body
        for srv in (first, second):  # sync started in the running server: no restart
            wait_for(lambda srv=srv: srv.request("GET", "/api/v1/sync/status")[1]["data"]["state"] == "live",
                     120, "live sync after pairing")
            assert srv.request("GET", "/api/v1/sync/status")[1]["data"]["hubFrom"] == "store"
        status, _, _ = first.request("POST", "/api/v1/courses", {"title": "Made on the first",
                                                                 "source": "https://ocw.mit.edu"})
        assert status == 201
        wait_for(lambda: "Made on the first" in titles(second), 120, "the first device's course on the second")
        assert SAMPLES <= titles(first) and SAMPLES <= titles(second)
        assert second.request("GET", "/api/v1/users/me")[1]["data"]["id"] == USER
        done = hubs.cli("list-devices", USER)
        assert done.returncode == 0 and done.stdout.count('"state": "paired"') == 2, done.stdout
    finally:
        hubs.stop()
