"""Rule 3 and the zygote: a namespace whose Python zygote runs gets forked containers, and
the stem cell stays for a namespace that has none (a forked container is one process of
~3.4 MiB against a stem cell's three of ~6.7 MiB, and starts as fast)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _polling import until
from _required import unavailable
from poolsupport import PY

from squall.invoker.container import PooledContainer, State
from squall.invoker.pool import ContainerPool
from squall.invoker.prewarm import parse_stem_cells
from squall.sandbox.container import ProcessContainer
from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

A = ("guest", "guest/a", "1")
B = ("other", "other/b", "1")


def forked(pc: PooledContainer) -> bool:
    """Whether ``pc``'s runtime was forked by a zygote (its command line is the zygote's;
    one started through bubblewrap is bubblewrap's monitor)."""
    container = pc.container
    assert isinstance(container, ProcessContainer)
    return b"zygote.py" in Path(f"/proc/{container.pid}/cmdline").read_bytes()


async def test_a_namespace_whose_zygote_runs_forks_and_leaves_the_stem_cell(
    factory: ProcessContainerFactory,
) -> None:
    if factory.isolation is None:
        unavailable("the Python zygote needs isolation (bubblewrap, cgroups)")
    # Given a pool keeping one Python stem cell, and no warm wait (every busy key grows)
    pool = ContainerPool(
        factory, capacity_mb=2048, stem_cells=parse_stem_cells(f"{PY}@256x1"), warm_wait_s=0
    )
    pool.start()
    try:
        assert await until(lambda: [c.state for c in pool.stem_cells()] == [State.PREWARMED])
        [cell] = pool.stem_cells()
        # When A's first run starts cold, no zygote of A's running / Then it takes the cell
        assert not factory.forks(PY, A[0])
        first, cold = await pool.acquire(A, PY, 256, 1)
        assert cold and first is cell and not forked(first)
        # When a second run of A comes while the first is busy / Then a new container,
        # forked from A's zygote (started for it)
        second, cold = await pool.acquire(A, PY, 256, 1)
        assert cold and not second.stem_cell and forked(second)
        assert factory.forks(PY, A[0])
        pool.initialized(first)  # its stem cell's replacement starts now
        assert await until(lambda: [c.state for c in pool.stem_cells()] == [State.PREWARMED])
        [replacement] = pool.stem_cells()
        # When a third run of A comes with both busy
        third, cold = await pool.acquire(A, PY, 256, 1)
        # Then it is forked too, and the stem cell is left
        assert cold and forked(third) and third is not replacement
        assert replacement.state is State.PREWARMED
        # And a namespace without a running zygote still takes it
        other, cold = await pool.acquire(B, PY, 256, 1)
        assert cold and other is replacement
        for pc in (first, second, third, other):
            pool.release(pc, destroy=True)
    finally:
        await pool.close()
