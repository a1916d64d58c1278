"""Push on write (server/sync/push.py): the leading edge, and the pause between the rounds of a
burst, which grows while writes keep coming and is gone after a quiet round. No clock and no
sleep: the rounds are a script, and the pauses are recorded instead of waited."""

from __future__ import annotations

import pytest

from server.sync.push import FIRST_PAUSE, MAX_PAUSE, PushOnWrite, next_pause


class Scheduler:
    """Keeps the jobs added, for the test to run."""

    def __init__(self):
        self.jobs = []

    def add_job(self, func, *args, **kwargs):
        self.jobs.append((func, kwargs))


class Service:
    """What the push job uses of a sync service. `writes[n]` is how many writes are answered
    while round n runs; `events` says what happened, in order."""

    def __init__(self, writes: list[int]):
        self.scheduler = Scheduler()
        self.writes = list(writes)
        self.events: list[str] = []
        self.off = False
        self.push = PushOnWrite(self, pause=self.pause)
        self.in_pause: list[int] = []  # writes answered during each pause, in turn

    def backing_off(self) -> bool:
        return self.off

    def run_once(self, wait_seconds: float) -> None:
        self.events.append("round")
        for _ in range(self.writes.pop(0) if self.writes else 0):
            self.push.nudge()

    def pause(self, seconds: float) -> None:
        self.events.append(f"pause {seconds:g}")
        for _ in range(self.in_pause.pop(0) if self.in_pause else 0):
            self.push.nudge()

    def fire(self) -> None:
        """Run the job the scheduler holds (there must be exactly one)."""
        assert len(self.scheduler.jobs) == 1
        func, _ = self.scheduler.jobs.pop()
        func()


def test_the_pause_doubles_from_the_first_up_to_the_cap():
    pauses, pause = [], 0.0
    for _ in range(7):
        pause = next_pause(pause, 0.01, 0.15)
        pauses.append(pause)
    assert pauses == [0.01, 0.02, 0.04, 0.08, 0.15, 0.15, 0.15]
    assert (FIRST_PAUSE, MAX_PAUSE) == (0.01, 0.15)


def test_a_write_after_a_quiet_spell_goes_at_once_and_alone():
    svc = Service(writes=[0])
    svc.push.nudge()
    assert svc.scheduler.jobs[0][1]["id"] == "push-soon"
    svc.fire()
    assert svc.events == ["round"], "no pause before the leading edge's round, none after a quiet one"
    assert not svc.push.pushing


def test_a_burst_goes_in_rounds_further_and_further_apart_until_one_is_quiet():
    svc = Service(writes=[5, 5, 5, 5, 5, 5, 0])
    svc.push.nudge()
    for _ in range(3):
        svc.push.nudge()  # writes before the job starts: one job, they go in its first round
    assert len(svc.scheduler.jobs) == 1
    svc.fire()
    assert svc.events == ["round", "pause 0.01", "round", "pause 0.02", "round", "pause 0.04", "round",
                          "pause 0.08", "round", "pause 0.15", "round", "pause 0.15", "round"]
    assert not svc.push.pushing and svc.scheduler.jobs == []


def test_after_a_quiet_round_the_next_write_is_a_leading_edge_again():
    svc = Service(writes=[3, 3, 3, 0, 3, 0])
    svc.push.nudge()
    svc.fire()
    assert svc.events[-1] == "round" and svc.events.count("round") == 4
    svc.events.clear()
    svc.push.nudge()
    svc.fire()
    assert svc.events == ["round", "pause 0.01", "round"], "the pause starts from the first again"


def test_a_write_answered_during_a_pause_goes_in_the_round_after_it():
    svc = Service(writes=[2, 0, 0])
    svc.in_pause = [1]
    svc.push.nudge()
    svc.fire()
    assert svc.events == ["round", "pause 0.01", "round"]
    assert not svc.push.pushing


def test_writes_during_a_round_after_a_pause_keep_the_job_going():
    svc = Service(writes=[1, 1, 0])
    svc.push.nudge()
    svc.fire()
    assert svc.events == ["round", "pause 0.01", "round", "pause 0.02", "round"]


def test_a_round_that_fails_into_back_off_ends_the_job_and_the_writes_wait_for_the_retry():
    svc = Service(writes=[4, 4])

    def failing_round(wait_seconds: float) -> None:
        svc.events.append("round")
        svc.push.nudge()
        svc.off = True

    svc.run_once = failing_round
    svc.push.nudge()
    svc.fire()
    assert svc.events == ["round", "pause 0.01"] and not svc.push.pushing
    svc.push.nudge()
    assert svc.scheduler.jobs == [], "no push while backing off"


def test_stopping_ends_a_pausing_job_without_another_round():
    svc = Service(writes=[2, 2, 2])

    def pause_then_stop(seconds: float) -> None:
        svc.events.append(f"pause {seconds:g}")
        svc.push.stop()

    svc.push._pause = pause_then_stop
    svc.push.nudge()
    svc.fire()
    assert svc.events == ["round", "pause 0.01"] and not svc.push.pushing


def test_the_default_pause_returns_at_once_when_stopped():
    push = PushOnWrite(Service(writes=[]))
    push.stop()
    push._pause(3600)  # would hang the test if it slept
    push.start()
    assert not push._stopping.is_set()


@pytest.mark.parametrize("first,cap", [(0.005, 0.1), (0.02, 0.2)])
def test_the_first_pause_and_the_cap_are_the_ones_given(first, cap):
    svc = Service(writes=[1] * 8)
    svc.push = PushOnWrite(svc, pause=svc.pause, first=first, cap=cap)
    svc.push.nudge()
    svc.fire()
    pauses = [float(e.split()[1]) for e in svc.events if e.startswith("pause")]
    assert pauses[0] == first and max(pauses) == cap and pauses == sorted(pauses)
