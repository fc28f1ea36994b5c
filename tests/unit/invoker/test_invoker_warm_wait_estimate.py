"""What WARM WAIT divides its window by (:meth:`KeyGroup.service_s`): the run time when
the event loop is idle, the fastest recent run when the loop is saturated; and the loop's
busy share it reads (:mod:`squall.invoker.loopload`, the real thread's figures)."""

from __future__ import annotations

import os
import time

import pytest

from squall.invoker import loopload
from squall.invoker.groups import RUN_SAMPLES, KeyGroup
from squall.invoker.loopload import LoopLoad


def test_fastest_is_the_minimum_of_the_last_runs_only() -> None:
    # Given a key whose first run was the fastest
    group = KeyGroup()
    group.learn(0.001)
    for _ in range(RUN_SAMPLES - 1):
        group.learn(0.010)
    assert group.fastest_s == pytest.approx(0.001)
    # When one more run ends: the fast one left the window
    group.learn(0.020)
    # Then the fastest is that of the runs still in it
    assert group.fastest_s == pytest.approx(0.010)


def test_an_idle_loop_counts_the_whole_run_time() -> None:
    # Given a key whose runs take 1 to 100 ms (an action of varying length)
    group = KeyGroup()
    for ms in (1, 100, 50, 100, 80):
        group.learn(ms / 1000)
    # Then with the loop idle the estimate is the average run time, not the fastest run
    assert group.service_s(0.0) == pytest.approx(group.run_s)
    assert (group.service_s(0.0) or 0.0) > 0.04


def test_a_saturated_loop_counts_the_fastest_recent_run() -> None:
    # Given a noop whose holds grew with the loop's queue (0.5 ms alone, 20 ms in a burst)
    group = KeyGroup()
    group.learn(0.0005)
    for _ in range(5):
        group.learn(0.020)
    # Then with the loop saturated the estimate is the fastest run; half busy, half the run
    assert group.service_s(1.0) == pytest.approx(0.0005)
    assert group.service_s(0.5) == pytest.approx(group.run_s / 2)  # type: ignore[operator]
    # And with nothing learnt there is no estimate
    assert KeyGroup().service_s(1.0) is None


def test_a_saturated_loop_lets_more_runs_wait_for_one_container() -> None:
    # Given one container whose runs held it 20 ms in a burst, 0.5 ms alone
    group = KeyGroup(slots=1)
    group.learn(0.0005)
    for _ in range(5):
        group.learn(0.020)
    # Then with a 20 ms window: an idle loop lets one run wait, a saturated one about 40
    assert group.may_wait(0.02, 0.0)
    group.waiters.extend([object()] * 2)  # type: ignore[list-item]
    assert not group.may_wait(0.02, 0.0)
    assert group.may_wait(0.02, 1.0)


def test_the_loop_load_rises_while_the_thread_works_and_falls_while_it_sleeps() -> None:
    # Given a fresh figure
    load = LoopLoad()
    # When the thread spins for a few samples (running or waiting for a CPU: both busy)
    end = time.monotonic() + 6 * loopload.SAMPLE_S
    while time.monotonic() < end:
        load.busy()
    busy = load.busy()
    # When it then sleeps through a few samples
    for _ in range(6):
        time.sleep(loopload.SAMPLE_S)
        load.busy()
    # Then the first figure is high and the second low. Spinning counts as busy whether
    # the thread ran or waited for a CPU when the kernel's schedstat says both; without
    # it only the CPU time counts, which a loaded machine may keep well under one core.
    idle = load.busy()
    assert idle < 0.2 and busy > idle
    if os.path.exists(loopload.SCHEDSTAT):
        assert busy > 0.8


def test_growth_waits_for_the_containers_starting_once_as_many_start_as_run() -> None:
    # Given a key with one container (its runs fast) and one starting
    group = KeyGroup(slots=2, starting=1)
    group.members[object()] = None  # type: ignore[index]
    group.learn(0.001)
    # Then a run that the queue rule would not let wait waits for them (one runs, one starts)
    assert group.starting_enough(0.02)
    # But not when its runs are longer than the window (they scale out at once), nor with
    # nothing starting, nor with WARM WAIT off
    assert not group.starting_enough(0.0005)
    assert not group.starting_enough(0.0)
    group.starting = 0
    assert not group.starting_enough(0.02)
