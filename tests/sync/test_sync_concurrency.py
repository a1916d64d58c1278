"""Many writers at once: API threads during rounds, and several origins pushing to one hub."""

from __future__ import annotations

import threading

import pytest

from server.api import create_app
from server.core.config import Settings
from tests.conftest import MONGO_KINDS
from tests.synckit import World, assert_converged, course, lecture


@pytest.fixture(params=MONGO_KINDS)
def world(request, tmp_path):
    uri = request.getfixturevalue("wire_uri") if request.param == "wire" else None
    w = World(tmp_path, request.param, wire_uri=uri, batch_size=25)
    yield w
    w.close()


def test_eight_api_threads_writing_while_rounds_run_lose_nothing(world, tmp_path):
    device = world.device("a")
    app = create_app(Settings(sqlite_path=str(tmp_path / "x")), store=device, start_sync=False)
    cid = course(device, id="c")["id"]
    acknowledged: list[str] = []
    failures: list[str] = []
    stop = threading.Event()
    ack_lock = threading.Lock()

    def writer(n: int) -> None:
        client = app.test_client()
        for i in range(15):
            resp = client.post(f"/api/v1/courses/{cid}/lectures",
                               json={"title": f"t{n}-{i}", "order": i + 1, "videoUrl": "https://a.b/v"})
            if resp.status_code != 201:
                failures.append(resp.get_data(as_text=True))
                continue
            lid = resp.get_json()["data"]["id"]
            resp = client.patch(f"/api/v1/courses/{cid}/lectures/{lid}", json={"status": "completed"})
            if resp.status_code != 200:
                failures.append(resp.get_data(as_text=True))
            with ack_lock:
                acknowledged.append(lid)

    def rounds() -> None:
        while not stop.is_set():
            report = world.sync("a")
            if report.error:
                failures.append(report.error)

    syncer = threading.Thread(target=rounds)
    syncer.start()
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    syncer.join()
    assert failures == [], failures[:3]
    world.settle(["a", "b"])
    for store in (device, world.device("b"), world.hub):
        lectures = store.get_course(cid)["lectures"]
        assert sorted(lec["id"] for lec in lectures) == sorted(acknowledged)
        assert all(lec["status"] == "completed" for lec in lectures)
    assert len(acknowledged) == 120
    assert_converged(world)


def run_all(jobs: list, errors: list[BaseException]) -> None:
    """Each job in its own thread, all at once; what any of them raised ends up in `errors`."""
    def guarded(job) -> None:
        try:
            job()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_three_devices_and_the_mongo_api_writing_at_once_all_get_every_change(world):
    if world.mongo is None:
        pytest.skip("needs a Mongo hub")
    names = ["a", "b", "c"]
    for name in names:
        world.device(name)
    api_on_hub = world.new_hub_connector()  # the API running directly on the hub
    cid = course(api_on_hub, id="shared")["id"]
    world.settle(names)
    errors: list[BaseException] = []

    def device_work(name: str) -> None:
        dev = world.device(name)
        for i in range(12):
            lecture(dev, cid, id=f"{name}-{i}", order=i + 1)
            if i % 3 == 2:
                report = world.sync(name)
                assert report.error is None, report.error

    def hub_work() -> None:
        for i in range(12):
            lecture(api_on_hub, cid, id=f"hub-{i}", order=i + 1)

    run_all([lambda n=n: device_work(n) for n in names] + [hub_work], errors)
    assert errors == []
    world.settle(names)
    expected = sorted(f"{who}-{i}" for who in names + ["hub"] for i in range(12))
    for store in [world.device(n) for n in names] + [world.hub, api_on_hub]:
        assert sorted(lec["id"] for lec in store.get_course(cid)["lectures"]) == expected
    assert_converged(world)
