"""How far the pool grows: runs share a Node.js container up to the action's concurrency,
and a run waits for its action's busy container when it frees a slot soon enough
(the pool's WARM WAIT rule). Real runtimes in the process sandbox."""

from __future__ import annotations

import asyncio
import time

import pytest
from _polling import until
from poolsupport import ADD_ONE, NODE, PY

from squall.invoker.pool import ContainerPool, PooledContainer
from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

KEY = ("guest", "/guest/a", "1-x")
#: Longer than any test here runs: a waiting run is served by its own container.
LONG_WINDOW_S = 600.0


async def _cold_run(pool: ContainerPool, kind: str, concurrency: int) -> PooledContainer:
    """One run of ADD_ONE on a container of its own, /init-ed; still in flight."""
    pc, cold = await pool.acquire(KEY, kind, 256, concurrency)
    assert cold
    init = await pc.container.initialize({"code": ADD_ONE[kind], "main": "main"}, 10)
    assert init.status == 200, init.body
    pool.initialized(pc)
    return pc


async def _busy_again(
    factory: ProcessContainerFactory,
) -> tuple[ContainerPool, PooledContainer, tuple[PooledContainer, bool]]:
    """A pool (a long WARM WAIT window) whose one warm Python container ran once and
    ended (its runs are known to be short), then what the next run acquired."""
    pool = ContainerPool(factory, capacity_mb=1024, warm_wait_s=LONG_WINDOW_S)
    pc = await _cold_run(pool, PY, 1)
    pool.release(pc)
    return pool, pc, await pool.acquire(KEY, PY, 256, 1)


async def test_concurrent_runs_of_a_concurrency_10_node_action_share_3_containers(
    factory: ProcessContainerFactory,
) -> None:
    # Given a pool (no run of the action has ended: no run time is known yet)
    pool = ContainerPool(factory, capacity_mb=4096, warm_wait_s=LONG_WINDOW_S)

    async def run() -> PooledContainer:
        pc, cold = await pool.acquire(KEY, NODE, 256, 10)
        if cold:
            init = await pc.container.initialize({"code": ADD_ONE[NODE], "main": "main"}, 10)
            assert init.status == 200, init.body
            pool.initialized(pc)
        answer = await pc.container.run({"value": {"n": 1}}, timeout=10)
        assert answer.status == 200, answer.body
        return pc

    # When 25 runs of a concurrency-10 action arrive at once, none ending before all run
    held = await asyncio.gather(*(run() for _ in range(25)))
    # Then 3 containers were started (10 + 10 + 5 runs), not 25
    assert len(factory.containers) == 3
    assert sorted(held.count(pc) for pc in set(held)) == [5, 10, 10]
    assert all(pc.active == held.count(pc) for pc in set(held))
    for pc in held:
        pool.release(pc)
    await pool.close()


async def test_python_runs_never_share_a_container(factory: ProcessContainerFactory) -> None:
    # Given a Python action's run in flight (Python containers take one run at a time)
    pool = ContainerPool(factory, capacity_mb=1024, warm_wait_s=0)
    first = await _cold_run(pool, PY, 1)
    # When a second run arrives (no waiting: the window is 0) / Then it gets its own
    second, cold = await pool.acquire(KEY, PY, 256, 1)
    assert cold and second is not first
    await pool.close()


async def test_a_run_waits_for_the_busy_warm_container_instead_of_starting_one(
    factory: ProcessContainerFactory,
) -> None:
    # Given one warm container whose runs are short (one ran and ended) and busy again
    pool, pc, (busy, cold) = await _busy_again(factory)
    assert busy is pc and not cold
    # When three more runs arrive
    waiting = [asyncio.create_task(pool.acquire(KEY, PY, 256, 1)) for _ in range(3)]
    # Then they wait for it, and no container is started
    assert await until(lambda: pool.waiting_for(KEY) == 3)
    assert len(factory.containers) == 1
    # When each run ends / Then the oldest waiting run gets the container, warm
    for task in waiting:
        pool.release(pc)
        got, cold = await task
        assert got is pc and not cold
    pool.release(pc)
    assert len(factory.containers) == 1 and pool.waiting_for(KEY) == 0
    await pool.close()


async def test_a_waiting_run_starts_a_container_after_the_window(
    factory: ProcessContainerFactory,
) -> None:
    # Given a warm container with a known short run time, busy with a run that lasts
    pool = ContainerPool(factory, capacity_mb=1024, warm_wait_s=0.1)
    pc = await _cold_run(pool, PY, 1)
    pool.release(pc)
    await pool.acquire(KEY, PY, 256, 1)
    # When another run arrives and the busy run does not end within the window
    other, cold = await pool.acquire(KEY, PY, 256, 1)
    # Then it stopped waiting and got a container of its own
    assert cold and other is not pc
    assert len(factory.containers) == 2
    await pool.close()


async def test_runs_longer_than_the_window_scale_out_at_once(
    factory: ProcessContainerFactory,
) -> None:
    # Given runs known to take longer than the window: the window is the larger of 0.05 s
    # and the key's cold start time, and the one run is held for longer than both
    pool = ContainerPool(factory, capacity_mb=2048, warm_wait_s=0.05)
    asked = time.monotonic()
    pc = await _cold_run(pool, PY, 1)
    await asyncio.sleep(2 * (time.monotonic() - asked) + 0.1)
    pool.release(pc)
    busy, _ = await pool.acquire(KEY, PY, 256, 1)
    assert busy is pc
    # When a burst of three arrives while it is busy
    burst = await asyncio.gather(*(pool.acquire(KEY, PY, 256, 1) for _ in range(3)))
    # Then each gets a new container without waiting (the queue would outlast the window)
    assert all(cold for _, cold in burst)
    assert len({got for got, _ in burst} | {pc}) == 4
    assert pool.waiting_for(KEY) == 0
    await pool.close()


async def test_a_waiting_run_looks_again_when_the_busy_container_is_destroyed(
    factory: ProcessContainerFactory,
) -> None:
    # Given a run waiting for the key's one busy container
    pool, pc, _ = await _busy_again(factory)
    waiting = asyncio.create_task(pool.acquire(KEY, PY, 256, 1))
    assert await until(lambda: pool.waiting_for(KEY) == 1)
    # When the busy run fails and its container is destroyed
    pool.release(pc, destroy=True)
    # Then the waiting run starts a container instead of waiting for a slot that will not come
    got, cold = await waiting
    assert cold and got is not pc
    await pool.close()


async def test_a_cancelled_waiting_run_leaves_no_slot_taken(
    factory: ProcessContainerFactory,
) -> None:
    # Given two runs waiting for the key's busy container
    pool, pc, _ = await _busy_again(factory)
    first = asyncio.create_task(pool.acquire(KEY, PY, 256, 1))
    assert await until(lambda: pool.waiting_for(KEY) == 1)
    second = asyncio.create_task(pool.acquire(KEY, PY, 256, 1))
    assert await until(lambda: pool.waiting_for(KEY) == 2)
    # When the first is cancelled (its invoker gave up) and the busy run ends
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    pool.release(pc)
    # Then the second gets the container, with one run in flight
    got, cold = await second
    assert got is pc and not cold and pc.active == 1
    await pool.close()
