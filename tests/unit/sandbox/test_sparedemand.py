"""The spare count of a Python zygote follows bursts of creates (pure bookkeeping)."""

from __future__ import annotations

import asyncio

import pytest
from _polling import DEADLINE_S

from squall.sandbox import sparedemand
from squall.sandbox.sparedemand import SpareDemand, SpareSchedule


def test_a_sequence_of_creates_keeps_the_base_count() -> None:
    # Given a demand of 2 spares
    demand = SpareDemand(2, ceiling=100, burst=8, ttl=30.0)
    # When 50 creates come one after the other
    for i in range(50):
        demand.started(float(i))
        demand.ended()
    # Then 2 spares are still wanted, and nothing waits
    assert demand.wanted == 2 and not demand.grown and demand.in_flight == 0


def test_a_burst_grows_the_count_to_its_creates_in_flight_up_to_the_ceiling() -> None:
    # Given a demand of 2 spares, at most 40
    demand = SpareDemand(2, ceiling=40, burst=8, ttl=30.0)
    # When 7 creates wait at once, Then that is no burst
    for _ in range(7):
        demand.started(0.0)
    assert demand.wanted == 2 and not demand.bursting
    # When the eighth comes, Then it is: as many spares as creates in flight are wanted
    demand.started(0.0)
    assert demand.bursting and demand.wanted == 8
    # And they grow with the burst, up to the ceiling
    for _ in range(50):
        demand.started(0.1)
    assert demand.wanted == 40
    # And the burst lasts until its last create has its runtime, the count with it
    for _ in range(57):
        demand.ended()
    assert demand.bursting and demand.in_flight == 1
    demand.ended()
    assert demand.wanted == 40 and not demand.bursting and demand.in_flight == 0


def test_grown_spares_fall_back_to_the_base_count_ttl_after_the_last_burst() -> None:
    # Given a burst of 10 at time 0, another of 12 at time 20
    demand = SpareDemand(2, ceiling=100, burst=8, ttl=30.0)
    for at in (0.0, 20.0):
        for _ in range(10 if at == 0.0 else 12):
            demand.started(at)
        for _ in range(10 if at == 0.0 else 12):
            demand.ended()
    # When the clock reaches 40, Then the count holds, due 10 s later
    assert demand.expire(40.0) == 10.0 and demand.wanted == 12
    # When it reaches 50, Then the base count is back, and nothing is due any more
    assert demand.expire(50.0) is None
    assert demand.wanted == 2 and not demand.grown
    assert demand.expire(60.0) is None


def test_no_spares_means_no_growth_either() -> None:
    # Given a zygote that keeps no spares (each create forks its own)
    demand = SpareDemand(0, ceiling=100, burst=8, ttl=30.0)
    # When a burst comes, Then none are wanted after it
    for _ in range(20):
        demand.started(0.0)
    assert demand.wanted == 0 and demand.expire(1.0) is None


@pytest.mark.anyio
async def test_spares_are_forked_again_only_once_a_bursts_last_create_has_its_runtime(
    monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    # Given a schedule whose refill is due at the next turn of the loop after a create,
    # however many creates still wait (unless they are a burst's)
    monkeypatch.setattr(sparedemand, "REFILL_DELAY_S", 0.0)
    monkeypatch.setattr(sparedemand, "REFILL_MAX_DELAY_S", 0.0)
    refilled = asyncio.Event()
    schedule = SpareSchedule(SpareDemand(2, burst=8), refilled.set, lambda: None)
    # When a burst of 10 creates waits, and 9 of them got their runtime
    for _ in range(10):
        schedule.started()
    for _ in range(9):
        schedule.ended()
    for _ in range(3):
        await asyncio.sleep(0)
    # Then no spare is forked yet (it would serve none of the burst's creates)
    assert not refilled.is_set()
    # When the last one has its runtime, Then the spares are forked again
    schedule.ended()
    async with asyncio.timeout(DEADLINE_S):
        await refilled.wait()
    schedule.close()


@pytest.mark.anyio
async def test_grown_spares_are_dropped_once_the_ttl_ran_out(anyio_backend: str) -> None:
    # Given a schedule whose grown count lasts 0.05 s after a burst
    shrunk = asyncio.Event()
    demand = SpareDemand(2, burst=8, ttl=0.05)
    schedule = SpareSchedule(demand, lambda: None, shrunk.set)
    # When a burst of 8 comes and goes
    for _ in range(8):
        schedule.started()
    for _ in range(8):
        schedule.ended()
    assert demand.wanted == 8
    # Then the zygote is told to drop the grown spares, the count back at 2
    async with asyncio.timeout(DEADLINE_S):
        await shrunk.wait()
    assert demand.wanted == 2
    schedule.close()


def test_grown_spares_are_kept_ttl_after_the_last_one_became_ready() -> None:
    # Given a burst of 10 at time 0, ttl 30 (the pool's stem cells: their refill may take
    # longer than the ttl on a saturated machine)
    demand = SpareDemand(0, ceiling=100, burst=8, ttl=30.0, from_none=True)
    for _ in range(10):
        demand.started(0.0)
    for _ in range(10):
        demand.ended()
    # When the last grown spare became ready at 25
    demand.ready(25.0)
    # Then at 40 (the burst's ttl passed) the count still holds, due ttl after that spare
    assert demand.expire(40.0) == 15.0 and demand.wanted == 10
    # And at 55 the base count is back
    assert demand.expire(55.0) is None and demand.wanted == 0


def test_a_spare_ready_without_a_burst_keeps_nothing_longer() -> None:
    # Given the base count only (no burst seen)
    demand = SpareDemand(2, ceiling=100, burst=8, ttl=30.0)
    # When a spare becomes ready, Then nothing is grown nor due
    demand.ready(5.0)
    assert not demand.grown and demand.expire(40.0) is None and demand.wanted == 2


def test_spares_ready_long_after_the_burst_do_not_hold_its_count() -> None:
    # Given a burst of 10 at time 0, ttl 30, its refill ready by 20
    demand = SpareDemand(0, ceiling=100, burst=8, ttl=30.0, from_none=True)
    for _ in range(10):
        demand.started(0.0)
    for _ in range(10):
        demand.ended()
    demand.ready(20.0)
    # When lone cold starts (below the burst's size) take a spare every 15 s and each
    # replacement becomes ready at once: none of them is the burst's refill
    for at in (35.0, 45.0, 60.0, 75.0):
        demand.started(at)
        demand.ended()
        demand.ready(at)
    # Then the grown count falls back ttl after the burst's refill (20 + 30), not later
    assert demand.expire(49.0) == pytest.approx(1.0) and demand.wanted == 10
    assert demand.expire(50.0) is None and demand.wanted == 0
