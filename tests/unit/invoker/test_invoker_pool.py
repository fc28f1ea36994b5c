"""The container pool's policy against real runtime processes (the process sandbox)."""

from __future__ import annotations

import asyncio

import pytest
from _polling import until

from squall.invoker.pool import ContainerPool, NeverFits
from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

PY = "python:3.11"


async def test_warm_container_is_reused_only_for_the_same_key(
    factory: ProcessContainerFactory,
) -> None:
    # Given a pool and one run of action A that ended well
    pool = ContainerPool(factory, capacity_mb=1024)
    a = ("guest", "/guest/a", "1-x")
    pc, cold = await pool.acquire(a, PY, 256, 1)
    assert cold
    pool.initialized(pc)
    pool.release(pc)
    # When A runs again / Then the same container is used, warm
    again, cold_again = await pool.acquire(a, PY, 256, 1)
    assert again is pc and not cold_again
    pool.release(again)
    # When another revision, action or namespace runs / Then each gets a new container
    for other in (
        ("guest", "/guest/a", "2-y"),
        ("guest", "/guest/b", "1-x"),
        ("u2", "/guest/a", "1-x"),
    ):
        pc2, cold2 = await pool.acquire(other, PY, 128, 1)
        assert cold2 and pc2 is not pc
        pool.release(pc2, destroy=True)
    await pool.close()


async def test_busy_container_is_not_shared_at_concurrency_one(
    factory: ProcessContainerFactory,
) -> None:
    pool = ContainerPool(factory, capacity_mb=1024)
    key = ("guest", "/guest/a", "1-x")
    first, _ = await pool.acquire(key, PY, 256, 1)
    pool.initialized(first)
    # When a second run arrives while the first is busy / Then it gets its own container
    second, cold = await pool.acquire(key, PY, 256, 1)
    assert cold and second is not first
    assert pool.used_mb == 512
    await pool.close()


async def test_full_pool_evicts_the_least_recently_used_idle_container(
    factory: ProcessContainerFactory,
) -> None:
    # Given a pool with room for two 256 MB containers, both idle, A used before B
    pool = ContainerPool(factory, capacity_mb=512)
    a, b, c = (("ns", f"/ns/{n}", "1") for n in "abc")
    pa, _ = await pool.acquire(a, PY, 256, 1)
    pool.initialized(pa)
    pb, _ = await pool.acquire(b, PY, 256, 1)
    pool.initialized(pb)
    pool.release(pa)
    pool.release(pb)
    # When C needs room / Then A (least recently used) goes, B stays warm
    _, cold = await pool.acquire(c, PY, 256, 1)
    assert cold
    keys = {p.key for p in pool.containers()}
    assert keys == {b, c}
    assert pool.used_mb == 512
    await pool.close()


async def test_work_waits_when_nothing_can_be_evicted(
    factory: ProcessContainerFactory,
) -> None:
    # Given a pool whose only container is busy
    pool = ContainerPool(factory, capacity_mb=256)
    a, b = ("ns", "/ns/a", "1"), ("ns", "/ns/b", "1")
    pa, _ = await pool.acquire(a, PY, 256, 1)
    pool.initialized(pa)
    # When B asks for a container / Then it waits for memory (parked, not answered)
    waiting = asyncio.create_task(pool.acquire(b, PY, 256, 1))
    assert await until(lambda: pool.waiting_for_memory == 1)
    assert not waiting.done()
    # When A's run ends / Then B gets a new container in A's place
    pool.release(pa)
    pb, cold = await asyncio.wait_for(waiting, 10)
    assert cold and pb.key == b
    assert [p.key for p in pool.containers()] == [b]
    await pool.close()


async def test_an_action_larger_than_the_invoker_is_refused(
    factory: ProcessContainerFactory,
) -> None:
    pool = ContainerPool(factory, capacity_mb=128)
    # (as NeverFits: no later try can succeed, so the invoker does not try again)
    with pytest.raises(NeverFits, match="needs 256 MB but the invoker has 128 MB"):
        await pool.acquire(("ns", "/ns/a", "1"), PY, 256, 1)
    assert pool.used_mb == 0


async def test_idle_containers_past_keep_warm_are_reaped(
    factory: ProcessContainerFactory,
) -> None:
    # Given a keep-warm period of zero and one idle container
    pool = ContainerPool(factory, capacity_mb=512, keep_warm_s=0.0)
    pc, _ = await pool.acquire(("ns", "/ns/a", "1"), PY, 256, 1)
    pool.initialized(pc)
    pool.release(pc)
    # When the reaper looks / Then the container is gone and its memory is free
    assert pool.reap_idle() == 1
    assert pool.containers() == [] and pool.used_mb == 0
    await pool.close()


async def test_destroyed_after_a_failure_is_never_reused(
    factory: ProcessContainerFactory,
) -> None:
    pool = ContainerPool(factory, capacity_mb=512)
    key = ("ns", "/ns/a", "1")
    pc, _ = await pool.acquire(key, PY, 256, 1)
    pool.initialized(pc)
    pool.release(pc, destroy=True)
    again, cold = await pool.acquire(key, PY, 256, 1)
    assert cold and again is not pc
    await pool.close()


async def test_concurrency_lets_one_node_container_take_several_runs(
    factory: ProcessContainerFactory,
) -> None:
    pool = ContainerPool(factory, capacity_mb=512)
    key = ("ns", "/ns/a", "1")
    first, _ = await pool.acquire(key, "nodejs:20", 256, 3)
    pool.initialized(first)
    second, cold = await pool.acquire(key, "nodejs:20", 256, 3)
    third, _ = await pool.acquire(key, "nodejs:20", 256, 3)
    assert not cold and second is first and third is first and first.active == 3
    fourth, cold4 = await pool.acquire(key, "nodejs:20", 256, 3)
    assert cold4 and fourth is not first
    await pool.close()
