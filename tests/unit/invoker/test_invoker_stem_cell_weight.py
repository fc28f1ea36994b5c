"""Stem cells are started idle: the least CPU weight until their first /init (as a Python
zygote's spares until taken), with real Node.js runtimes in bubblewrap sandboxes and
cgroups."""

from __future__ import annotations

import pytest
from _polling import until
from poolsupport import ADD_ONE, NODE, run_once

from squall.invoker.container import State
from squall.invoker.pool import ContainerPool
from squall.invoker.prewarm import StemCellSpec
from squall.sandbox.cgroups import Cgroup, Limits
from squall.sandbox.process import ProcessContainer, ProcessContainerFactory
from squall.sandbox.sandboxstart import IDLE_CPU_SHARES

pytestmark = pytest.mark.anyio


def weighs(cgroup: Cgroup, shares: int) -> bool:
    """Whether the cgroup's CPU weight is the one written for ``shares`` (v1 scale): v1
    ``cpu.shares`` itself, or the v2 ``cpu.weight`` it converts to. This host's cgroups
    have a cpu controller (the tests need it)."""
    for directory in cgroup.directories:
        if (directory / "cpu.shares").exists():
            return int((directory / "cpu.shares").read_text()) == shares
        if (directory / "cpu.weight").exists():
            return int((directory / "cpu.weight").read_text()) == Limits(0, 0, shares).cpu_weight
    raise AssertionError(f"no cpu controller in {cgroup.directories}")


def own_shares(factory: ProcessContainerFactory, memory_mb: int) -> int:
    isolation = factory.isolation
    assert isolation is not None
    return isolation.limits(memory_mb).cpu_shares


async def test_an_idle_container_waits_at_the_least_cpu_weight_until_its_init(
    factory: ProcessContainerFactory,
) -> None:
    # Given a Node.js container started idle, beside one started for a request
    idle = await factory.create(NODE, 256, idle=True)
    busy = await factory.create(NODE, 256)
    assert idle.cgroup is not None and busy.cgroup is not None
    # Then the idle one has the least CPU weight, the other its size's own
    assert own_shares(factory, 256) > IDLE_CPU_SHARES
    assert weighs(idle.cgroup, IDLE_CPU_SHARES)
    assert weighs(busy.cgroup, own_shares(factory, 256))
    # When it is initialized and runs
    answer = await idle.initialize({"code": ADD_ONE[NODE]}, timeout=10)
    # Then its /init succeeded with its own weight, which stays for its runs
    assert answer.status == 200, answer.body
    assert weighs(idle.cgroup, own_shares(factory, 256))
    assert await run_once(idle, 1) == {"n": 2}
    assert weighs(idle.cgroup, own_shares(factory, 256))
    await idle.destroy()
    await busy.destroy()


async def test_the_pools_stem_cells_wait_idle_and_get_their_weight_when_taken(
    factory: ProcessContainerFactory,
) -> None:
    # Given a pool keeping one 256 MB Node.js stem cell, started
    pool = ContainerPool(factory, capacity_mb=1024, stem_cells=[StemCellSpec(NODE, 256, 1)])
    pool.start()
    assert await until(lambda: [pc.state for pc in pool.stem_cells()] == [State.PREWARMED])
    [cell] = pool.stem_cells()
    container = cell.container
    assert isinstance(container, ProcessContainer) and container.cgroup is not None
    # Then it waits at the least CPU weight
    assert weighs(container.cgroup, IDLE_CPU_SHARES)
    # When an action of its shape takes it and is initialized
    taken, cold = await pool.acquire(("ns", "/ns/a", "1"), NODE, 256, 1)
    assert cold and taken.container is container
    assert (await container.initialize({"code": ADD_ONE[NODE]}, 10)).status == 200
    pool.initialized(taken)
    # Then it runs with its size's own weight
    assert weighs(container.cgroup, own_shares(factory, 256))
    assert await run_once(container, 41) == {"n": 42}
    pool.release(taken)
    await pool.close()
    assert factory.containers == []
