"""The pool's freezing, stem cells and removal rules, with real runtimes."""

from __future__ import annotations

import asyncio

import pytest
from _polling import until
from poolsupport import ADD_ONE, NODE, PY, process_state, run_once

from squall.invoker import poolbooks
from squall.invoker.container import State
from squall.invoker.pool import ContainerPool
from squall.invoker.prewarm import StemCellSpec, parse_stem_cells
from squall.sandbox.process import ProcessContainer, ProcessContainerFactory

pytestmark = pytest.mark.anyio

A = ("ns", "/ns/a", "1")
B = ("ns", "/ns/b", "1")


def _frozen(container: ProcessContainer) -> bool:
    """Every process of the container is stopped by the freezer (or SIGSTOP without it)."""
    pids = container.cgroup.pids() if container.cgroup is not None else {container.pid}
    return bool(pids) and all(process_state(pid) in ("D", "T") for pid in pids)


async def _warm(pool: ContainerPool, key: tuple[str, str, str], kind: str = PY) -> None:
    """One successful cold start of ADD_ONE for ``key``, released warm."""
    pc, cold = await pool.acquire(key, kind, 256, 1)
    assert cold
    assert (await pc.container.initialize({"code": ADD_ONE[kind]}, 10)).status == 200
    await pc.container.logs(10_000, 5)
    pool.initialized(pc)
    assert await run_once(pc.container, 1) == {"n": 2}
    pool.release(pc)


async def past_timers_due_in(delay_s: float) -> None:
    """Return once every timer the pool set to fire within ``delay_s`` from now has run:
    the event loop runs timers in the order of their deadlines, so a timer of ours due a
    little later fires after them. An ordering, not a measure of time."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_later(delay_s * 2, done.set_result, None)
    await done


def pause_timers() -> list[asyncio.TimerHandle]:
    """The timers on this loop that would freeze an idle container (the pool's only use of
    ``call_later``). Reads asyncio's own heap of scheduled timers: there is no public view."""
    loop = asyncio.get_running_loop()
    assert hasattr(loop, "_scheduled"), "not asyncio's own event loop: no timers to read"
    scheduled: list[asyncio.TimerHandle] = loop._scheduled
    return [
        h
        for h in scheduled
        if getattr(getattr(h, "_callback", None), "__name__", "") == "_pause_if_idle"
    ]


async def test_an_idle_container_is_frozen_after_the_grace_and_thawed_on_reuse(
    factory: ProcessContainerFactory,
) -> None:
    # Given a pool that freezes containers idle for 20 ms, and one warm container
    pool = ContainerPool(factory, capacity_mb=512, pause_grace_s=0.02)
    await _warm(pool, A)
    [pc] = pool.containers()
    container = pc.container
    assert isinstance(container, ProcessContainer)
    # When the grace passes / Then it is paused and its processes are frozen
    assert await until(lambda: pc.state is State.PAUSED)
    assert await until(lambda: _frozen(container))
    # When A runs again / Then the same container is thawed and answers
    again, cold = await pool.acquire(A, PY, 256, 1)
    assert again is pc and not cold and pc.state is State.BUSY
    assert await run_once(container, 41) == {"n": 42}
    pool.release(again)
    await pool.close()


async def test_a_container_reused_within_the_grace_is_not_frozen(
    factory: ProcessContainerFactory,
) -> None:
    # Given a pool with a 50 ms grace and a container released, then taken again at once
    pool = ContainerPool(factory, capacity_mb=512, pause_grace_s=0.05)
    await _warm(pool, A)
    pc, _ = await pool.acquire(A, PY, 256, 1)
    # When the first release's timer fires while it is busy
    await past_timers_due_in(0.05)
    # Then it was left running
    assert pc.state is State.BUSY
    assert await run_once(pc.container, 1) == {"n": 2}
    pool.release(pc)
    await pool.close()


async def test_freezing_is_off_by_default(factory: ProcessContainerFactory) -> None:
    pool = ContainerPool(factory, capacity_mb=512)
    assert pool.pause_grace_s == 0
    await _warm(pool, A)
    [pc] = pool.containers()
    # Then releasing it set no timer that could freeze it
    assert not [h for h in pause_timers() if not h.cancelled()]
    assert pc.state is State.READY
    await pool.close()


async def test_a_node_container_with_concurrency_is_frozen_only_when_all_runs_ended(
    factory: ProcessContainerFactory,
) -> None:
    # Given a Node container taking two runs at once, in a pool that freezes at once
    pool = ContainerPool(factory, capacity_mb=512, pause_grace_s=0.001)
    first, _ = await pool.acquire(A, NODE, 256, 2)
    assert (await first.container.initialize({"code": ADD_ONE[NODE]}, 10)).status == 200
    pool.initialized(first)
    second, cold = await pool.acquire(A, NODE, 256, 2)
    assert second is first and not cold
    results = await asyncio.gather(*(first.container.run({"value": {"n": n}}, 10) for n in (1, 2)))
    assert sorted(r.body for r in results) == [b'{"n":2}', b'{"n":3}']
    # When one run ends / Then it stays busy, unfrozen (once any timer it set has fired)
    pool.release(first)
    await past_timers_due_in(0.001)
    assert first.state is State.BUSY and first.active == 1
    # When the other ends / Then it is frozen; and thawed it takes runs again
    pool.release(second)
    assert await until(lambda: first.state is State.PAUSED)
    again, _ = await pool.acquire(A, NODE, 256, 2)
    assert again is first
    answer = await first.container.run({"value": {"n": 9}}, 10)
    assert answer.body == b'{"n":10}'
    pool.release(again)
    await pool.close()


async def test_a_paused_container_past_keep_warm_is_removed_and_its_memory_freed(
    factory: ProcessContainerFactory,
) -> None:
    pool = ContainerPool(factory, capacity_mb=512, keep_warm_s=0.0, pause_grace_s=0.001)
    await _warm(pool, A)
    [pc] = pool.containers()
    container = pc.container
    assert isinstance(container, ProcessContainer)
    assert await until(lambda: pc.state is State.PAUSED)
    assert pool.reap_idle() == 1
    assert pc.state is State.REMOVED and pool.used_mb == 0
    assert await until(lambda: container.exited and factory.containers == [])
    await pool.close()


async def test_a_failed_init_never_returns_the_container_to_the_pool(
    factory: ProcessContainerFactory,
) -> None:
    # Given a cold start whose /init fails (a syntax error)
    pool = ContainerPool(factory, capacity_mb=512)
    pc, _ = await pool.acquire(A, PY, 256, 1)
    answer = await pc.container.initialize({"code": "def main(:"}, 10)
    assert answer.status != 200
    # When the run is released without asking for destruction
    pool.release(pc)
    # Then it is removed all the same, and the next run starts afresh
    assert pc.state is State.REMOVED and pool.used_mb == 0
    again, cold = await pool.acquire(A, PY, 256, 1)
    assert cold and again is not pc
    assert await until(lambda: pc.container not in factory.containers)
    await pool.close()


async def test_destroy_after_a_developer_error_kills_it_and_never_reuses_it(
    factory: ProcessContainerFactory,
) -> None:
    # Given a warm container whose next run crashes the runtime
    pool = ContainerPool(factory, capacity_mb=512)
    pc, _ = await pool.acquire(A, PY, 256, 1)
    crash = "import os\ndef main(p):\n    os._exit(3)"
    assert (await pc.container.initialize({"code": crash}, 10)).status == 200
    pool.initialized(pc)
    answer = await pc.container.run({"value": {}}, 10)
    assert answer.exited
    # When the invoker releases it with destroy (a developer error)
    pool.release(pc, destroy=True)
    # Then it is gone, its processes reaped, and A's next run gets another container
    assert pc.state is State.REMOVED and pool.containers() == []
    assert await until(lambda: factory.containers == [])
    again, cold = await pool.acquire(A, PY, 256, 1)
    assert cold and again is not pc and again.container is not pc.container
    await pool.close()


# -- stem cells -------------------------------------------------------------------------


def test_stem_cell_settings_parse() -> None:
    assert parse_stem_cells("nodejs:20@256x2, python:3.13@128x1,x@1x0") == (
        StemCellSpec(NODE, 256, 2),
        StemCellSpec(PY, 128, 1),
    )
    assert parse_stem_cells("") == ()
    for bad in ("nodejs:20@256", "nodejs:20@0x1", "a@1x1,a@1x2"):
        with pytest.raises(ValueError):
            parse_stem_cells(bad)


async def test_a_cold_start_takes_a_stem_cell_and_a_new_one_is_started(
    factory: ProcessContainerFactory,
) -> None:
    # Given a pool keeping one Python and one Node stem cell
    pool = ContainerPool(
        factory, capacity_mb=1024, stem_cells=parse_stem_cells(f"{PY}@256x1,{NODE}@256x1")
    )
    pool.start()
    assert await until(
        lambda: sorted(c.state.value for c in pool.stem_cells()) == ["prewarmed"] * 2
    )
    assert pool.used_mb == 512
    [cell] = [c for c in pool.stem_cells() if c.kind == PY]
    # When a Python action of 256 MB starts cold / Then it gets that stem cell, to /init
    pc, cold = await pool.acquire(A, PY, 256, 1)
    assert cold and pc is cell and pc.stem_cell and pc.state is State.INITIALIZING
    assert pc.key == A
    assert (await pc.container.initialize({"code": ADD_ONE[PY]}, 10)).status == 200
    await pc.container.logs(10_000, 5)
    pool.initialized(pc)
    assert await run_once(pc.container, 1) == {"n": 2}
    pool.release(pc)
    # And a replacement is started in the background; memory counts all three
    assert await until(
        lambda: [c.state for c in pool.stem_cells() if c.kind == PY] == [State.PREWARMED]
    )
    assert pool.used_mb == 768
    # And the taken one is A's warm container now, not a stem cell any more
    again, cold = await pool.acquire(A, PY, 256, 1)
    assert again is pc and not cold
    pool.release(again)
    await pool.close()
    assert factory.containers == []


async def test_a_taken_stem_cells_replacement_waits_until_the_cold_start_answered(
    factory: ProcessContainerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pool keeping one Python stem cell, whose replacement waits a long moment
    # after a take (poolbooks.STEM_CELL_REFILL_DELAY_S, 50 ms by default)
    monkeypatch.setattr(poolbooks, "STEM_CELL_REFILL_DELAY_S", 3600.0)
    pool = ContainerPool(factory, capacity_mb=1024, stem_cells=parse_stem_cells(f"{PY}@256x1"))
    pool.start()
    assert await until(lambda: [c.state for c in pool.stem_cells()] == [State.PREWARMED])
    # When a cold start takes it, its /init ends and its first run ends
    pc, cold = await pool.acquire(A, PY, 256, 1)
    assert cold and pc.stem_cell
    assert (await pc.container.initialize({"code": ADD_ONE[PY]}, 10)).status == 200
    pool.initialized(pc)
    assert await run_once(pc.container, 1) == {"n": 2}
    pool.release(pc)
    for _ in range(5):
        await asyncio.sleep(0)
    # Then no replacement has started meanwhile (started when /init ended, it competed
    # with the first run and the answer for the CPU)
    assert pool.stem_cells() == [] and pool.used_mb == 256
    # And one is started by the refill that comes then
    assert pool.refill() == 1
    assert await until(lambda: [c.state for c in pool.stem_cells()] == [State.PREWARMED])
    await pool.close()


async def test_a_refill_timer_set_before_a_later_take_waits_for_that_take_too(
    factory: ProcessContainerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pool whose stem cell was taken, its refill's timer set (the delay long)
    monkeypatch.setattr(poolbooks, "STEM_CELL_REFILL_DELAY_S", 3600.0)
    pool = ContainerPool(factory, capacity_mb=1024, stem_cells=parse_stem_cells(f"{PY}@256x1"))
    pool.start()
    assert await until(lambda: [c.state for c in pool.stem_cells()] == [State.PREWARMED])
    pc, cold = await pool.acquire(A, PY, 256, 1)
    assert cold and pc.stem_cell
    pool.release(pc)
    # When a timer set before that take fires (a later take moved the delay on)
    pool._refill_now()
    # Then it starts nothing yet: the refill waits for the delay after the last take
    assert pool.stem_cells() == []
    await pool.close()


async def test_stem_cells_do_not_serve_another_memory_or_concurrency(
    factory: ProcessContainerFactory,
) -> None:
    pool = ContainerPool(factory, capacity_mb=2048, stem_cells=parse_stem_cells(f"{NODE}@256x1"))
    pool.start()
    assert await until(lambda: [c.state for c in pool.stem_cells()] == [State.PREWARMED])
    [cell] = pool.stem_cells()
    other_memory, cold1 = await pool.acquire(A, NODE, 128, 1)
    concurrent, cold2 = await pool.acquire(B, NODE, 256, 4)
    assert cold1 and cold2
    assert not other_memory.stem_cell and not concurrent.stem_cell
    assert pool.stem_cells() == [cell] and cell.state is State.PREWARMED
    await pool.close()


async def test_stem_cells_are_evicted_before_idle_warm_containers(
    factory: ProcessContainerFactory,
) -> None:
    # Given a full pool: one idle warm Node container of A and one Python stem cell
    pool = ContainerPool(factory, capacity_mb=512, stem_cells=parse_stem_cells(f"{PY}@256x1"))
    await _warm(pool, A, NODE)
    pool.start()
    assert await until(lambda: [c.state for c in pool.stem_cells()] == [State.PREWARMED])
    [cell] = pool.stem_cells()
    assert pool.used_mb == 512
    # When a Node action B needs 256 MB / Then the stem cell goes, A stays warm
    pb, cold = await pool.acquire(B, NODE, 256, 1)
    assert cold and not pb.stem_cell
    assert cell.state is State.REMOVED
    assert {p.key for p in pool.containers()} == {A, B} and pool.used_mb == 512
    # And no stem cell comes back while there is no free memory
    assert pool.refill() == 0 and pool.stem_cells() == []
    await pool.close()


async def test_freed_memory_goes_to_a_waiting_request_before_a_stem_cell(
    factory: ProcessContainerFactory,
) -> None:
    # Given a 256 MB pool whose stem cell was evicted for A, which is busy
    pool = ContainerPool(factory, capacity_mb=256, stem_cells=parse_stem_cells(f"{PY}@256x1"))
    pool.start()
    assert await until(lambda: [c.state for c in pool.stem_cells()] == [State.PREWARMED])
    pa, _ = await pool.acquire(A, NODE, 256, 1)
    assert pool.stem_cells() == []
    # And B waits for memory
    waiting = asyncio.create_task(pool.acquire(B, NODE, 256, 1))
    assert await until(lambda: len(pool._waiters) == 1)
    # When A fails and is destroyed / Then B gets the memory, not a new stem cell
    pool.release(pa, destroy=True)
    pb, cold = await asyncio.wait_for(waiting, 10)
    assert cold and pb.key == B
    assert pool.stem_cells() == [] and pool.used_mb == 256
    await pool.close()


async def test_close_stops_stem_cells_that_are_still_starting(
    factory: ProcessContainerFactory,
) -> None:
    pool = ContainerPool(factory, capacity_mb=1024, stem_cells=parse_stem_cells(f"{NODE}@256x2"))
    pool.start()
    assert [c.state for c in pool.stem_cells()] == [State.STARTING] * 2
    await pool.close()
    assert pool.stem_cells() == [] and pool.used_mb == 0
    assert factory.containers == []
