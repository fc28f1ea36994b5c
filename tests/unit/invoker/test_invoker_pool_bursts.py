"""Stem cells that follow bursts (invoker/prewarm.py, BURSTS), with real Node.js runtimes:
after a burst of cold starts of one shape the pool keeps that many stem cells of it, up to
the kind's ``maxCount``, for ``ttl``; then it falls back to the count kept at all times."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest
from _polling import until
from poolsupport import ADD_ONE, NODE, run_once

from squall.errors import ContainerError
from squall.invoker import poolbooks
from squall.invoker.container import PooledContainer, State
from squall.invoker.pool import ContainerPool
from squall.invoker.prewarm import StemCellSpec
from squall.sandbox import sparedemand
from squall.sandbox.process import ProcessContainer, ProcessContainerFactory

pytestmark = pytest.mark.anyio


def cells(pool: ContainerPool, memory_mb: int) -> list[State]:
    return [pc.state for pc in pool.stem_cells() if pc.memory_mb == memory_mb]


async def burst(pool: ContainerPool, name: str, count: int) -> list[PooledContainer]:
    """``count`` cold starts of new 128 MB Node.js actions at once, each /init, one run and
    its release (a cold start is in flight until its /init ended)."""
    keys = [("ns", f"/ns/{name}-{i}", "1") for i in range(count)]
    taken = await asyncio.gather(*(pool.acquire(key, NODE, 128, 1) for key in keys))
    assert all(cold for _, cold in taken)

    async def serve(pc: PooledContainer) -> None:
        assert (await pc.container.initialize({"code": ADD_ONE[NODE]}, 10)).status == 200
        pool.initialized(pc)
        assert await run_once(pc.container, 1) == {"n": 2}
        pool.release(pc)

    await asyncio.gather(*(serve(pc) for pc, _ in taken))
    return [pc for pc, _ in taken]


async def test_stem_cells_follow_a_burst_of_their_shape_up_to_max_count(
    factory: ProcessContainerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pool keeping one 256 MB Node.js stem cell, reactive up to 3, where 3 cold
    # starts in flight at once make a burst
    monkeypatch.setattr(sparedemand, "BURST_CREATES", 3)
    spec = StemCellSpec(NODE, 256, 1, max_count=3, ttl_s=3600.0)
    pool = ContainerPool(factory, capacity_mb=4096, stem_cells=[spec])
    pool.start()
    assert await until(lambda: cells(pool, 256) == [State.PREWARMED])
    # When a burst of 4 new 128 MB actions starts cold (no stem cell of that shape)
    first = await burst(pool, "a", 4)
    assert not any(pc.stem_cell for pc in first)
    # Then once its /inits ended, 3 stem cells of 128 MB are started (the ceiling, not
    # the burst's 4), and the 256 MB one is still the only one of its shape
    assert await until(lambda: cells(pool, 128) == [State.PREWARMED] * 3)
    assert cells(pool, 256) == [State.PREWARMED]
    # When the next burst of that shape comes
    second = await burst(pool, "b", 3)
    # Then each of its cold starts took a stem cell (only /init), and they are replaced
    assert all(pc.stem_cell for pc in second)
    assert await until(lambda: cells(pool, 128) == [State.PREWARMED] * 3)
    assert pool.used_mb == 256 + 128 * (3 + 4 + 3)
    await pool.close()
    assert factory.containers == []


async def test_grown_stem_cells_are_removed_ttl_after_the_last_burst(
    factory: ProcessContainerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pool whose Node.js stem cells follow bursts for a short ttl (long enough
    # for the grown cells to be started), none kept at all times of the 128 MB shape
    monkeypatch.setattr(sparedemand, "BURST_CREATES", 2)
    spec = StemCellSpec(NODE, 256, 1, max_count=10, ttl_s=3.0)
    pool = ContainerPool(factory, capacity_mb=4096, stem_cells=[spec])
    pool.start()
    # When a burst of 2 new 128 MB actions started cold
    await burst(pool, "a", 2)
    # Then 2 stem cells of 128 MB are kept (started, or still starting)
    assert await until(lambda: len(cells(pool, 128)) == 2)
    assert pool.used_mb == 256 + 2 * 128 + 2 * 128
    # And once the ttl passed they are removed and their memory is free; the 256 MB one
    # stays
    assert await until(lambda: cells(pool, 128) == [] and cells(pool, 256) == [State.PREWARMED])
    assert pool.used_mb == 256 + 2 * 128
    await pool.close()


class HeldFactory(ProcessContainerFactory):
    """A process sandbox whose starts of ``held_mb`` containers after the first
    ``passed`` wait for ``go``: a stem cell is still starting for as long as the test
    wants."""

    def __init__(self, root: Path, held_mb: int, passed: int) -> None:
        super().__init__(root, "https://api.example.test")
        self.held_mb = held_mb
        self.passed = passed
        self.held = 0  # starts that waited for ``go``
        self.ended = 0  # ... and then returned their runtime
        self.go = asyncio.Event()

    async def create(
        self,
        kind: str,
        memory_mb: int,
        env: Mapping[str, str] | None = None,
        *,
        network: bool = True,
        tenant: str | None = None,
        idle: bool = False,
    ) -> ProcessContainer:
        if memory_mb != self.held_mb or self.passed > 0:
            self.passed -= memory_mb == self.held_mb
            return await super().create(
                kind, memory_mb, env, network=network, tenant=tenant, idle=idle
            )
        self.held += 1
        await self.go.wait()
        container = await super().create(
            kind, memory_mb, env, network=network, tenant=tenant, idle=idle
        )
        self.ended += 1
        return container


async def test_a_grown_stem_cell_still_starting_at_the_ttl_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pool whose Node.js stem cells follow bursts for a short ttl, none kept at
    # all times of the 128 MB shape, where the starts of 128 MB containers after the
    # burst's 2 are held
    monkeypatch.setattr(sparedemand, "BURST_CREATES", 2)
    factory = HeldFactory(tmp_path / "containers", held_mb=128, passed=2)
    spec = StemCellSpec(NODE, 256, 1, max_count=10, ttl_s=3.0)
    pool = ContainerPool(factory, capacity_mb=4096, stem_cells=[spec])
    pool.start()
    try:
        # When a burst of 2 new 128 MB actions started cold, and the stem cells grown
        # after it are still starting when the ttl passes
        await burst(pool, "a", 2)
        assert await until(lambda: factory.held == 2)
        # (held until ``go``, they are still starting when the ttl passes; on a loaded
        # machine the ttl may have passed already, then they are gone: checked below)
        if starting := cells(pool, 128):
            assert starting == [State.STARTING] * 2
            assert pool.used_mb == 256 + 2 * 128 + 2 * 128
        # Then they are removed at the ttl, their memory free
        assert await until(lambda: cells(pool, 128) == [])
        assert pool.used_mb == 256 + 2 * 128
        # And once their starts end, their runtimes are destroyed, not kept
        factory.go.set()
        assert await until(lambda: factory.ended == 2 and len(factory.containers) == 1 + 2)
        assert cells(pool, 128) == [] and pool.used_mb == 256 + 2 * 128
    finally:
        factory.go.set()  # the pool's close waits for the stem cells' starts
        await pool.close()
        await factory.close()
    assert factory.containers == []


async def test_a_kind_whose_stem_cells_are_not_reactive_keeps_its_count(
    factory: ProcessContainerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pool keeping one Node.js stem cell that is not reactive (maxCount 0)
    monkeypatch.setattr(sparedemand, "BURST_CREATES", 2)
    pool = ContainerPool(factory, capacity_mb=4096, stem_cells=[StemCellSpec(NODE, 128, 1)])
    pool.start()
    assert await until(lambda: cells(pool, 128) == [State.PREWARMED])
    # When a burst of 2 cold starts of its shape comes (the first takes the cell)
    await burst(pool, "a", 2)
    # Then only the one stem cell is started again, and no more are missing
    assert await until(lambda: cells(pool, 128) == [State.PREWARMED])
    assert pool.refill() == 0
    await pool.close()


class ReadyLaterFactory(ProcessContainerFactory):
    """A process sandbox whose idle ``memory_mb`` starts (stem cells) return their
    listening runtime only once ``go`` is set: a stem cell becomes ready when the test
    wants (a refill slowed down by a saturated machine)."""

    def __init__(self, root: Path, memory_mb: int) -> None:
        super().__init__(root, "https://api.example.test")
        self.memory_mb = memory_mb
        self.waiting = 0
        self.go = asyncio.Event()

    async def create(
        self,
        kind: str,
        memory_mb: int,
        env: Mapping[str, str] | None = None,
        *,
        network: bool = True,
        tenant: str | None = None,
        idle: bool = False,
    ) -> ProcessContainer:
        container = await super().create(
            kind, memory_mb, env, network=network, tenant=tenant, idle=idle
        )
        if idle and memory_mb == self.memory_mb:
            self.waiting += 1
            await self.go.wait()
        return container


async def test_grown_stem_cells_are_kept_ttl_after_they_became_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pool whose Node.js stem cells follow bursts for a ttl of 6 s, none kept at
    # all times of the 128 MB shape, whose 128 MB cells become ready only when let
    monkeypatch.setattr(sparedemand, "BURST_CREATES", 2)
    factory = ReadyLaterFactory(tmp_path / "containers", memory_mb=128)
    spec = StemCellSpec(NODE, 256, 1, max_count=10, ttl_s=6.0)
    pool = ContainerPool(factory, capacity_mb=4096, stem_cells=[spec])
    pool.start()
    loop = asyncio.get_running_loop()
    try:
        # When a burst of 2 new 128 MB actions started cold, and its 2 grown stem cells
        # become ready 3 s later (within the ttl)
        await burst(pool, "a", 2)
        burst_at = loop.time()  # its last cold start began before this
        assert await until(lambda: factory.waiting == 2)
        assert await until(lambda: loop.time() >= burst_at + 3.0)
        factory.go.set()
        assert await until(lambda: cells(pool, 128) == [State.PREWARMED] * 2)
        # Then they are still kept 1.5 s after the burst's ttl passed (ttl after ready)
        assert await until(lambda: loop.time() >= burst_at + 7.5)
        assert cells(pool, 128) == [State.PREWARMED] * 2
        # And removed once the ttl passed after they became ready
        assert await until(lambda: cells(pool, 128) == [])
        assert pool.used_mb == 256 + 2 * 128
    finally:
        factory.go.set()
        await pool.close()
        await factory.close()
    assert factory.containers == []


class FailingOnceFactory(ProcessContainerFactory):
    """A process sandbox whose first idle start (a stem cell) fails, as one timing out
    on a saturated machine does."""

    def __init__(self, root: Path, *, always: bool = False) -> None:
        super().__init__(root, "https://api.example.test")
        self.failed = 0
        self.always = always  # every idle start fails: a runtime that cannot start at all

    async def create(
        self,
        kind: str,
        memory_mb: int,
        env: Mapping[str, str] | None = None,
        *,
        network: bool = True,
        tenant: str | None = None,
        idle: bool = False,
    ) -> ProcessContainer:
        if idle and (self.always or not self.failed):
            self.failed += 1
            raise ContainerError("the runtime did not start")
        return await super().create(kind, memory_mb, env, network=network, tenant=tenant, idle=idle)


async def test_a_stem_cell_that_failed_to_start_is_tried_again_without_other_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pool keeping one 128 MB Node.js stem cell, whose first start fails, with a
    # short pause before its shape is tried again
    monkeypatch.setattr(poolbooks, "STEM_CELL_RETRY_S", 0.5)
    factory = FailingOnceFactory(tmp_path / "containers")
    pool = ContainerPool(factory, capacity_mb=4096, stem_cells=[StemCellSpec(NODE, 128, 1)])
    # When the pool starts and nothing else happens (no run, no release)
    pool.start()
    try:
        assert await until(lambda: factory.failed == 1)
        # Then the stem cell is started again once the pause is over
        assert await until(lambda: cells(pool, 128) == [State.PREWARMED])
    finally:
        await pool.close()
        await factory.close()
    assert factory.containers == []


def test_a_shape_failing_again_and_again_is_tried_less_and_less_often() -> None:
    # Given the pause after one failed start
    first = poolbooks.STEM_CELL_RETRY_S
    # Then each further failure in a row doubles it, up to the ceiling
    assert [poolbooks.stem_retry_pause(n) for n in (1, 2, 3)] == [first, 2 * first, 4 * first]
    assert poolbooks.stem_retry_pause(50) == poolbooks.STEM_CELL_RETRY_MAX_S


async def test_closing_the_pool_cancels_a_pending_stem_cell_retry(tmp_path: Path) -> None:
    # Given a pool whose stem cell failed to start, its retry pending on a timer
    factory = FailingOnceFactory(tmp_path / "containers", always=True)
    pool = ContainerPool(factory, capacity_mb=4096, stem_cells=[StemCellSpec(NODE, 128, 1)])
    pool.start()
    assert await until(lambda: factory.failed == 1)
    assert await until(lambda: len(pool._stem_retry_timers) == 1)
    timer = next(iter(pool._stem_retry_timers.values()))
    # When the pool closes
    await pool.close()
    # Then the retry is cancelled (nothing holds the pool nor starts a cell after close)
    assert timer.cancelled() and pool._stem_retry_timers == {}
    await factory.close()
