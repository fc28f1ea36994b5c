"""The pool's MEMORY GUARD (invoker/memguard.py) with real runtimes in real cgroups: a
container near its memory limit is retired before a run of it fails; one under it is kept.

The guard's task reads memory once a second; most tests here call ``retire_full`` (what
that task calls) at a chosen point of a run instead, so that the order of runs and reads
is fixed rather than left to a clock.
"""

from __future__ import annotations

import json

import pytest
from _polling import until
from metricsupport import parse, value
from poolsupport import ADD_ONE, PY
from prometheus_client import generate_latest

from squall.invoker import memguard
from squall.invoker.container import PooledContainer, State
from squall.invoker.pool import ContainerPool
from squall.metrics import InvokerMetrics
from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

A = ("ns", "/ns/grow", "1")
MEMORY_MB = 128
#: What the growing action keeps per run: under the 10 % of the limit left above the
#: threshold (12.8 MB), as the guard assumes of growth between two reads.
GROWTH_MB = 8
#: A global list that keeps GROWTH_MB of written (so charged) bytes per run.
GROWING = (
    "kept = []\n"
    "def main(p):\n"
    f"    kept.append(b'x' * ({GROWTH_MB} << 20))\n"
    "    return {'runs': len(kept)}\n"
)
#: Runs a container can serve before its limit: the test never needs more than this
#: many to see the guard act, and a container that served them all would have failed.
MAX_RUNS = MEMORY_MB // GROWTH_MB + 2


def _used_mb(pc: PooledContainer) -> float:
    used = pc.container.memory_used()
    assert used is not None, "the process sandbox puts every container in a cgroup"
    return used / memguard.MIB


async def _acquire(pool: ContainerPool, code: str) -> PooledContainer:
    pc, cold = await pool.acquire(A, PY, MEMORY_MB, 1)
    if cold:
        assert (await pc.container.initialize({"code": code}, 10)).status == 200
        await pc.container.logs(10_000, 5)
        pool.initialized(pc)
    return pc


async def _run(pc: PooledContainer) -> int:
    answer = await pc.container.run({"value": {}}, timeout=10)
    await pc.container.logs(10_000, 5)
    assert answer.status == 200, (answer.status, answer.body, answer.exited, answer.oom)
    return int(json.loads(answer.body)["runs"])


@pytest.mark.parametrize("read_while", ["busy", "idle"])
async def test_a_growing_container_is_replaced_before_a_run_fails(
    factory: ProcessContainerFactory, read_while: str
) -> None:
    # Given an action that keeps 8 MB more per run in a 128 MB container
    pool = ContainerPool(factory, capacity_mb=1024)
    metrics = InvokerMetrics(pool)
    retired_total = "squall_invoker_containers_retired_total"
    first: PooledContainer | None = None
    retired_at_mb = 0.0
    # When it runs again and again, the guard reading its memory after each run (with the
    # run still in flight, or once released)
    for _ in range(MAX_RUNS):
        pc = await _acquire(pool, GROWING)
        first = first or pc
        if pc is not first:
            break
        await _run(pc)
        if read_while == "busy":
            used = _used_mb(pc)
            retired = pool.retire_full()
            # Then a busy container over the threshold takes no new run but is not
            # interrupted: it goes when its run ends
            assert pc.state is State.BUSY
            pool.release(pc)
        else:
            pool.release(pc)
            used = _used_mb(pc)
            retired = pool.retire_full()
        counted = value(parse(generate_latest(metrics.registry).decode()), retired_total, kind=PY)
        if retired:
            retired_at_mb = used
            assert pc.state is State.REMOVED
            # And the operator sees it: the retirement is counted by kind
            assert counted == 1
        else:
            assert pc.state is State.READY
            assert counted is None
    # Then every run succeeded (_run asserts it), the first container was retired once it
    # reached 90 % of its limit, and the next run was served by a fresh container
    assert first is not None and first.state is State.REMOVED
    assert retired_at_mb >= memguard.RETIRE_SHARE * MEMORY_MB
    assert pc is not first
    assert await _run(pc) == 1  # a fresh process: its global list starts empty
    assert first.container.oom_killed is False  # type: ignore[attr-defined]
    pool.release(pc)
    await pool.close()


async def test_a_container_under_the_threshold_is_kept(factory: ProcessContainerFactory) -> None:
    # Given a warm container of an action that keeps nothing
    pool = ContainerPool(factory, capacity_mb=1024)
    pc = await _acquire(pool, ADD_ONE[PY])
    pool.release(pc)
    for n in range(20):
        # When it serves runs and the guard reads its memory after each
        again = await _acquire(pool, ADD_ONE[PY])
        answer = await again.container.run({"value": {"n": n}}, timeout=10)
        await again.container.logs(10_000, 5)
        assert json.loads(answer.body) == {"n": n + 1}
        pool.release(again)
        # Then it is under the threshold, kept and reused
        assert 0 < _used_mb(pc) < memguard.RETIRE_SHARE * MEMORY_MB
        assert pool.retire_full() == 0
        assert again is pc and pc.state is State.READY
    assert pool.retired() == {}
    # And a container that served no run since its last read is not read again
    assert pc.memory_read_at_use == pc.uses
    await pool.close()


async def test_the_guard_task_retires_a_full_idle_container(
    factory: ProcessContainerFactory,
) -> None:
    # Given a started pool (its guard reads memory every CHECK_INTERVAL_S)
    pool = ContainerPool(factory, capacity_mb=1024)
    pool.start()
    # When a container grows past the threshold and goes idle (the guard retires one that
    # grew since its first read: that read, after its first run, is awaited)
    first = await _acquire(pool, GROWING)
    assert await _run(first) == 1
    pool.release(first)
    assert await until(lambda: first.memory_first_read is not None)
    while True:
        pc = await _acquire(pool, GROWING)
        assert pc is first
        assert await _run(pc) < MAX_RUNS
        pool.release(pc)
        # (no await from the release to this read: the guard reads it after, not before)
        if _used_mb(pc) >= memguard.RETIRE_SHARE * MEMORY_MB:
            break
        assert pc.state is State.READY
    # Then the guard's task removes it, and the next run gets a fresh container
    assert await until(lambda: pc.state is State.REMOVED)
    fresh = await _acquire(pool, GROWING)
    assert fresh is not pc and await _run(fresh) == 1
    pool.release(fresh)
    await pool.close()


#: The limit of the container that loads a large "model" at /init.
MODEL_LIMIT_MB = 256
#: Where its /init leaves it: above the threshold, under the limit.
MODEL_SHARE = 0.93


async def test_a_container_full_from_its_init_on_is_kept(
    factory: ProcessContainerFactory,
) -> None:
    # Given a container whose action loads a "model" at /init that fills 93 % of its limit
    pool = ContainerPool(factory, capacity_mb=1024)
    pc, cold = await pool.acquire(A, PY, MODEL_LIMIT_MB, 1)
    assert cold
    base_mb = _used_mb(pc)  # the started runtime, before /init
    fill_mb = int(MODEL_SHARE * MODEL_LIMIT_MB - base_mb)
    code = (
        f"model = b'm' * ({fill_mb} << 20)\n"  # written: charged to the cgroup
        "runs = 0\n"
        "def main(p):\n"
        "    global runs\n"
        "    runs += 1\n"
        "    return {'runs': runs}\n"
    )
    assert (await pc.container.initialize({"code": code}, 10)).status == 200
    await pc.container.logs(10_000, 5)
    pool.initialized(pc)
    for n in range(1, 11):
        # When it serves runs, the guard reading its memory after each
        if n > 1:
            again, cold = await pool.acquire(A, PY, MODEL_LIMIT_MB, 1)
            assert again is pc and not cold
        assert await _run(pc) == n
        pool.release(pc)
        used = _used_mb(pc)
        assert memguard.RETIRE_SHARE * MODEL_LIMIT_MB <= used < MODEL_LIMIT_MB, used
        # Then it is above the threshold but did not grow: kept, and reused by the next run
        assert pool.retire_full() == 0
        assert pc.state is State.READY
    assert pc.memory_first_read is not None
    await pool.close()
