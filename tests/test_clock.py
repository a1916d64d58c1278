"""The hybrid logical clock."""

from __future__ import annotations

from freezegun import freeze_time

from server.clock import HybridClock, decode, encode, is_stamp


def test_stamps_sort_like_the_time_they_encode():
    assert encode(2, 0, "a") > encode(1, 999, "z")
    assert encode(1, 2, "a") > encode(1, 1, "z")
    assert encode(1, 1, "b") > encode(1, 1, "a")
    assert decode(encode(5, 7, "dev-1")) == (5, 7, "dev-1") and is_stamp(encode(5, 7, "dev-1"))


def test_the_clock_never_goes_backwards_when_the_wall_clock_does():
    clock = HybridClock("a")
    with freeze_time("2030-01-01"):
        first = clock.now()
    with freeze_time("2020-01-01"):
        second = clock.now()
    assert second > first and decode(second)[0] == decode(first)[0]


def test_many_stamps_in_one_millisecond_stay_ordered():
    clock = HybridClock("a")
    with freeze_time("2030-01-01"):
        stamps = [clock.now() for _ in range(1000)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 1000


def test_observing_a_remote_stamp_moves_past_it():
    behind, ahead = HybridClock("behind"), HybridClock("ahead")
    with freeze_time("2030-01-01 12:00"):
        remote = ahead.now()
    with freeze_time("2030-01-01 11:00"):  # an hour behind
        behind.observe(remote)
        local = behind.now()
    assert local > remote


def test_a_restarted_clock_continues_from_its_last_stamp():
    with freeze_time("2030-01-01"):
        last = HybridClock("a").now()
    with freeze_time("2029-01-01"):
        assert HybridClock("a", last).now() > last
