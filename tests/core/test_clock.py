"""The hybrid logical clock: its encoding, and its properties as properties."""

from __future__ import annotations

import datetime as dt

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from server.core.clock import (
    COUNTER_MAX,
    MS_MAX,
    ZERO,
    HybridClock,
    decode,
    encode,
    is_stamp,
    stamp_ms,
    wall_ms,
)

NOON_MS = 1_893_499_200_000  # 2030-01-01T12:00:00Z
devices = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8)
triples = st.tuples(st.integers(0, MS_MAX), st.integers(0, COUNTER_MAX), devices)


def test_a_stamp_has_a_fixed_width_and_round_trips():
    assert encode(5, 7, "dev-1") == "000000000000005-000007-dev-1"
    assert decode("000000000000005-000007-dev-1") == (5, 7, "dev-1")
    assert stamp_ms(encode(NOON_MS, 3, "a")) == NOON_MS
    assert encode(MS_MAX, COUNTER_MAX, "z") == "999999999999999-999999-z"
    assert encode(0, 0, "a") == "000000000000000-000000-a"


@pytest.mark.parametrize("ms, counter", [(MS_MAX + 1, 0), (-1, 0), (0, COUNTER_MAX + 1), (0, -1)])
def test_a_value_that_does_not_fit_its_width_is_refused_not_widened(ms, counter):
    with pytest.raises(ValueError, match="out of range"):
        encode(ms, counter, "a")


@pytest.mark.parametrize("device", ["", "a b", "é", "a\n"])
def test_a_device_id_that_cannot_end_a_stamp_is_refused(device):
    with pytest.raises(ValueError, match="not an origin"):
        encode(1, 1, device)
    with pytest.raises(ValueError):
        HybridClock(device)


@pytest.mark.parametrize("value", [
    "000000000000005-000007-a", "999999999999999-999999-z", "000000000000005-000007-a-b-c",
])
def test_well_formed_stamps_are_stamps(value):
    assert is_stamp(value)


@pytest.mark.parametrize("value", [
    None, 5, b"000000000000005-000007-a", "", "00000000000005-000007-a", "0000000000000005-000007-a",
    "000000000000005-00007-a", "000000000000005-0000007-a", "000000000000005-000007-", "000000000000005-000007",
    "00000000000000x-000007-a", "000000000000005-00000x-a", "00000000000000²-000007-a",
    "000000000000005_000007-a", "000000000000005-000007_a", " 000000000000005-000007-a",
    "000000000000005-000007-a ", "000000000000005-000007-a\n",
])
def test_malformed_stamps_are_not_stamps_and_do_not_decode(value):
    assert not is_stamp(value)
    if isinstance(value, str):
        with pytest.raises(ValueError, match="not a clock stamp"):
            decode(value)


@given(triples, triples)
def test_stamps_sort_like_the_triples_they_encode(x, y):
    assert (encode(*x) < encode(*y)) == (x < y)
    assert (encode(*x) == encode(*y)) == (x == y)
    assert decode(encode(*x)) == x


def test_equal_times_are_ordered_by_device_id():
    assert encode(1, 1, "b") > encode(1, 1, "a")
    assert encode(1, 1, "a-b") > encode(1, 1, "a")


def test_the_wall_clock_is_read_in_milliseconds():
    with freeze_time("2030-01-01T12:00:00.123Z"):
        assert wall_ms() == NOON_MS + 123
        assert decode(HybridClock("a").now()) == (NOON_MS + 123, 0, "a")


def test_many_stamps_in_one_millisecond_count_up_from_the_wall_clock():
    clock = HybridClock("a")
    with freeze_time("2030-01-01T12:00:00Z"):
        stamps = [clock.now() for _ in range(1000)]
    assert [decode(s) for s in stamps] == [(NOON_MS, n, "a") for n in range(1000)]


def test_a_full_counter_borrows_the_next_millisecond():
    clock = HybridClock("a", encode(NOON_MS, COUNTER_MAX - 1, "a"))
    with freeze_time("2030-01-01T12:00:00Z"):
        assert decode(clock.now()) == (NOON_MS, COUNTER_MAX, "a")
        assert decode(clock.now()) == (NOON_MS + 1, 0, "a")
        assert decode(clock.now()) == (NOON_MS + 1, 1, "a")


def test_a_new_wall_millisecond_restarts_the_counter():
    clock = HybridClock("a", encode(NOON_MS, 41, "a"))
    with freeze_time("2030-01-01T12:00:00.001Z"):
        assert decode(clock.now()) == (NOON_MS + 1, 0, "a")


def test_a_clock_starts_from_its_last_stamp_or_from_nothing():
    assert HybridClock("a").last == encode(0, 0, "a")
    assert HybridClock("b", encode(7, 3, "a")).last == encode(7, 3, "b")
    assert HybridClock("b", ZERO).last == encode(0, 0, "b")


def test_observing_a_stamp_moves_the_clock_to_it_never_back():
    clock = HybridClock("a", encode(NOON_MS, 5, "a"))
    clock.observe(encode(NOON_MS, 9, "z"))
    assert clock.last == encode(NOON_MS, 9, "a")
    clock.observe(encode(NOON_MS, 2, "z"))
    clock.observe(encode(NOON_MS - 1, 99, "z"))
    clock.observe(ZERO)
    assert clock.last == encode(NOON_MS, 9, "a")
    with pytest.raises(ValueError):
        clock.observe("not a stamp")
    assert clock.last == encode(NOON_MS, 9, "a")


def test_observing_a_remote_stamp_from_a_clock_an_hour_ahead_moves_past_it():
    behind, ahead = HybridClock("behind"), HybridClock("ahead")
    with freeze_time("2030-01-01 12:00"):
        remote = ahead.now()
    with freeze_time("2030-01-01 11:00"):
        behind.observe(remote)
        local = behind.now()
    assert local > remote and decode(local)[:2] == (decode(remote)[0], decode(remote)[1] + 1)


operation = st.one_of(
    st.tuples(st.just("now")),
    st.tuples(st.just("wall"), st.integers(-86_400_000, 86_400_000)),  # the wall clock jumps, either way
    st.tuples(st.just("observe"), st.integers(-3_600_000, 3_600_000), st.integers(0, COUNTER_MAX), devices),
    st.tuples(st.just("restart")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=40))
def test_every_stamp_sorts_after_every_stamp_issued_or_observed_before_it(ops):
    """Monotone across restarts and wall-clock jumps back; strictly after every observed stamp."""
    with freeze_time("2030-01-01T12:00:00Z") as frozen:
        clock, newest, issued = HybridClock("dev"), ZERO, []
        for op in ops:
            if op[0] == "now":
                stamp = clock.now()
                assert stamp > newest and decode(stamp)[2] == "dev"
                assert decode(stamp)[0] >= wall_ms()  # never behind the wall clock
                newest = stamp
                issued.append(stamp)
            elif op[0] == "wall":
                frozen.tick(dt.timedelta(milliseconds=op[1]))
            elif op[0] == "observe":
                remote = encode(max(0, wall_ms() + op[1]), op[2], op[3])
                clock.observe(remote)
                newest = max(newest, remote)
            else:
                clock = HybridClock("dev", clock.last)
        assert issued == sorted(set(issued))


def test_the_last_millisecond_a_stamp_can_hold_is_used_and_then_refused_not_wrapped():
    with freeze_time("2030-01-01T12:00:00Z"):
        clock = HybridClock("a", encode(MS_MAX, 5, "a"))
        assert clock.now() == encode(MS_MAX, 6, "a")
        full = HybridClock("a", encode(MS_MAX, COUNTER_MAX, "a"))
        with pytest.raises(ValueError, match=r"^clock value out of range: 1000000000000000 ms$"):
            full.now()
