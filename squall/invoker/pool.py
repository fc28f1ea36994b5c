"""The container pool: which container runs an activation, and when containers go away.

POLICY: (the rules, in order)
1. Reuse a warm container only for the same namespace + action + revision, never across
   actions or users; with ``concurrency > 1`` a container takes that many runs at once.
   Among usable ones prefer the busiest (so others go idle), then a ready one over a
   paused one (no thaw), then the most recently used. A paused one is thawed first.
2. Otherwise take a stem cell of the action's kind and memory (concurrency 1 only: a
   runtime's concurrency is fixed when it starts); it only needs /init. A replacement is
   started in the background once that /init ended (started at once, it slowed the /init
   by ~5 ms on 2 vCPUs).
3. Otherwise start a new container if the invoker's user memory (the sum of the memory
   limits of live containers, stem cells and ones still starting included) leaves room.
4. Otherwise evict stem cells (they are of another shape, or rule 2 would have taken
   one), then idle containers least recently used first, until it fits.
5. Otherwise wait: the request is queued (first come, first served) until a release or
   a removal frees memory.
6. A container idle for ``keep_warm_s`` is removed by the reaper; stem cells are kept.
7. With ``pause_grace_s > 0`` a container idle that long is frozen (cgroup freezer) and
   thawed on reuse. Off by default, by measurement (2 vCPUs, cgroup v1, bubblewrap): an
   idle runtime used 0 (Python) to 3 (Node.js) clock ticks of CPU in 10 s, i.e. at most
   0.3 % of a CPU, while the thaw made the next warm acquire + /run cost 0.78 ms instead
   of 0.52 ms (Node.js) and 0.44 ms instead of 0.24 ms (Python), p50 of 50 — freezing
   would save nearly nothing and slow the warm path that B1 measures by 50-80 %. Turn it
   on (``SQUALL_PAUSE_GRACE_S``, e.g. 1 s) where many idle Node.js containers are kept.
8. Stem cells are refilled only from free memory and only when no request is waiting.
A container whose activation ended in a developer or internal error, or whose /init did
not succeed, is destroyed, never reused.

Concurrency: everything runs on one event loop. Memory is reserved and states change
synchronously (no await between a check and what it allows), so concurrent acquires cannot
overshoot the capacity or take the same container; destroying and starting runtimes is
awaited outside the bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from squall.errors import ContainerError
from squall.invoker.container import PooledContainer, PoolKey, State
from squall.invoker.prewarm import StemCellSpec
from squall.sandbox.contracts import Container, ContainerFactory

log = logging.getLogger("squall.invoker.pool")

__all__ = ["ContainerPool", "PoolKey", "PooledContainer"]

#: After a stem cell failed to start, its shape is not tried again for this long.
STEM_CELL_RETRY_S = 5.0

Shape = tuple[str, int]  # (kind, memory MB)
K = TypeVar("K")


def _discard(table: dict[K, list[PooledContainer]], key: K, pc: PooledContainer) -> None:
    group = table.get(key)
    if group is not None and pc in group:
        group.remove(pc)
        if not group:
            del table[key]


class ContainerPool:
    """Hands out containers by the POLICY above; see the module docstring."""

    def __init__(
        self,
        factory: ContainerFactory,
        capacity_mb: int,
        keep_warm_s: float = 300.0,
        *,
        pause_grace_s: float = 0.0,
        stem_cells: Iterable[StemCellSpec] = (),
        stem_network: bool = True,
    ) -> None:
        self._factory = factory
        #: Whether stem cells get a network (the invoker's default for namespaces).
        self.stem_network = stem_network
        self.capacity_mb = capacity_mb
        self.keep_warm_s = keep_warm_s
        self.pause_grace_s = pause_grace_s
        specs = tuple(stem_cells)
        self.stem_cell_specs = tuple(s for s in specs if factory.supports(s.kind))
        for spec in set(specs) - set(self.stem_cell_specs):
            log.warning("no stem cells of %s: the container factory cannot run it", spec.kind)
        self._containers: dict[PoolKey, list[PooledContainer]] = {}
        self._stem: dict[Shape, list[PooledContainer]] = {}  # STARTING or PREWARMED
        self._stem_tasks: set[asyncio.Task[None]] = set()
        self._stem_retry_at: dict[Shape, float] = {}
        self._used_mb = 0  # reserved by live and starting containers
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._seq = itertools.count()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()

    # -- figures ----------------------------------------------------------------------

    @property
    def used_mb(self) -> int:
        return self._used_mb

    def containers(self) -> list[PooledContainer]:
        """Every live container: those of actions, then stem cells (starting ones too)."""
        warm = [pc for group in self._containers.values() for pc in group]
        return warm + self.stem_cells()

    def stem_cells(self) -> list[PooledContainer]:
        return [pc for group in self._stem.values() for pc in group]

    # -- acquire / release ------------------------------------------------------------

    async def acquire(
        self, key: PoolKey, kind: str, memory_mb: int, max_concurrent: int, network: bool = True
    ) -> tuple[PooledContainer, bool]:
        """A container for ``key`` and whether it is new (needs /init, then
        :meth:`initialized`). ``network``: whether the container has a network (one of
        the other setting is never reused for it). Raises ContainerError when the action
        can never fit or the pool is closing."""
        if memory_mb > self.capacity_mb:
            raise ContainerError(
                f"the action needs {memory_mb} MB but the invoker has {self.capacity_mb} MB"
            )
        while True:
            if self._closed:
                raise ContainerError("the invoker is shutting down")
            warm = self._warm(key, network)
            if warm is not None:
                if self._hand_out(warm):
                    return warm, False
                continue  # it could not be thawed and is gone; look again
            if max_concurrent == 1 and network == self.stem_network:
                cell = self._take_stem_cell(kind, memory_mb)
                if cell is not None:
                    # Its replacement starts once this /init ended (initialized or
                    # release): started now, it would compete with the /init for CPU.
                    cell.assign(key, 1)
                    self._containers.setdefault(key, []).append(cell)
                    return cell, True
            if self._used_mb + memory_mb <= self.capacity_mb or self._evict_for(memory_mb):
                self._used_mb += memory_mb
                break
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        pc = PooledContainer(kind, memory_mb, seq=next(self._seq), network=network)
        try:
            # The runtime must know it may overlap runs (it then writes no sentinels).
            env = {"__OW_CONCURRENCY": str(max_concurrent)} if max_concurrent > 1 else None
            container = await self._factory.create(
                kind, memory_mb, env, network=network, tenant=key[0]
            )
        except BaseException:
            self._used_mb -= memory_mb
            self._wake()
            raise
        if self._closed:  # close() ran while it started: it never saw this one
            self._used_mb -= memory_mb
            await container.destroy()
            raise ContainerError("the invoker is shutting down")
        pc.assign(key, max_concurrent, container)
        self._containers.setdefault(key, []).append(pc)
        return pc, True

    def initialized(self, pc: PooledContainer) -> None:
        """/init on a new container succeeded: it may take runs of its key from now on
        (and a stem cell taken for it is replaced)."""
        pc.initialized_ok()
        if pc.stem_cell:
            self._refill_soon()

    def release(self, pc: PooledContainer, *, destroy: bool = False) -> None:
        """End one run on ``pc``; ``destroy`` removes it (after a developer or internal
        error). A container whose /init did not succeed is always removed."""
        if destroy or self._closed or pc.state is State.INITIALIZING:
            pc.active = max(0, pc.active - 1)
            self._remove(pc)
        else:
            pc.end_run()
            if pc.state is State.READY and self.pause_grace_s > 0:
                # A timer, not a task: pausing is a synchronous cgroup write. ``uses`` tells
                # the callback whether the container was handed out again meanwhile.
                asyncio.get_running_loop().call_later(
                    self.pause_grace_s, self._pause_if_idle, pc, pc.uses
                )
        self._wake()

    def _warm(self, key: PoolKey, network: bool) -> PooledContainer | None:
        group = self._containers.get(key, ())
        usable = [pc for pc in group if pc.has_slot() and pc.network == network]
        if not usable:
            return None
        return max(usable, key=lambda p: (p.active, p.state is State.READY, p.last_used))

    def _hand_out(self, pc: PooledContainer) -> bool:
        """Give ``pc`` one more run, thawing it first; False if it had to be removed."""
        if pc.state is State.PAUSED:
            try:
                pc.container.resume()
            except (OSError, ContainerError):
                log.exception("thawing container %s failed", pc.describe())
                self._remove(pc)
                return False
        pc.take_run()
        return True

    def _pause_if_idle(self, pc: PooledContainer, uses: int) -> None:
        if self._closed or pc.state is not State.READY or pc.uses != uses:
            return
        try:
            pc.container.pause()
        except (OSError, ContainerError):
            log.exception("freezing container %s failed; it stays ready", pc.describe())
            return
        pc.paused()

    def _evict_for(self, memory_mb: int) -> bool:
        """Remove stem cells, then idle containers least recently used first, until
        ``memory_mb`` fits; False (and nothing removed) if even that is not enough."""
        cells = [pc for pc in self.stem_cells() if pc.state is State.PREWARMED]
        idle = sorted(
            (pc for g in self._containers.values() for pc in g if pc.idle),
            key=lambda p: p.last_used,
        )
        free = self.capacity_mb - self._used_mb
        victims: list[PooledContainer] = []
        for pc in itertools.chain(cells, idle):
            if free >= memory_mb:
                break
            victims.append(pc)
            free += pc.memory_mb
        if free < memory_mb:
            return False
        for pc in victims:
            self._remove(pc)
        return True

    def _remove(self, pc: PooledContainer) -> None:
        """→ REMOVED: forget it, free its memory, destroy its runtime in the background."""
        if not pc.removed():
            return
        if pc.key is not None:
            _discard(self._containers, pc.key, pc)
        else:
            _discard(self._stem, (pc.kind, pc.memory_mb), pc)
        self._used_mb -= pc.memory_mb
        if pc.started:
            self._spawn(self._destroy(pc.container))

    def _wake(self) -> None:
        # Wake every waiter: each re-checks warm containers and capacity in FIFO order.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        self._refill_soon()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # Keep a reference: the loop holds tasks only weakly.
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _destroy(self, container: Container) -> None:
        try:
            await container.destroy()
        except Exception:
            log.exception("destroying container %s failed", container.id)
        finally:
            self._wake()

    # -- stem cells -------------------------------------------------------------------

    def _take_stem_cell(self, kind: str, memory_mb: int) -> PooledContainer | None:
        for pc in self._stem.get((kind, memory_mb), ()):
            if pc.state is State.PREWARMED:
                _discard(self._stem, (kind, memory_mb), pc)
                return pc
        return None

    def _refill_soon(self) -> None:
        # After the callbacks already scheduled: woken waiters re-check first, so a refill
        # never takes memory a queued request was about to get.
        if not self._closed and self.stem_cell_specs:
            asyncio.get_running_loop().call_soon(self.refill)

    def refill(self) -> int:
        """Start the missing stem cells that fit in free memory now; returns how many.
        Does nothing while requests wait for memory or the pool is closed."""
        if self._closed or self._waiters:
            return 0
        started = 0
        now = time.monotonic()
        for spec in self.stem_cell_specs:
            if self._stem_retry_at.get(spec.shape, 0.0) > now:
                continue
            group = self._stem.setdefault(spec.shape, [])
            while len(group) < spec.count and self._used_mb + spec.memory_mb <= self.capacity_mb:
                pc = PooledContainer(
                    spec.kind, spec.memory_mb, seq=next(self._seq), network=self.stem_network
                )
                group.append(pc)
                self._used_mb += spec.memory_mb
                task = asyncio.get_running_loop().create_task(self._start_stem_cell(pc))
                self._stem_tasks.add(task)
                task.add_done_callback(self._stem_tasks.discard)
                started += 1
            if not group:
                del self._stem[spec.shape]
        return started

    async def _start_stem_cell(self, pc: PooledContainer) -> None:
        try:
            container = await self._factory.create(pc.kind, pc.memory_mb, network=pc.network)
        except asyncio.CancelledError:
            self._remove(pc)  # the factory cleaned up the half-started runtime
            raise
        except Exception:
            log.exception("stem cell %s@%d MB did not start", pc.kind, pc.memory_mb)
            self._stem_retry_at[(pc.kind, pc.memory_mb)] = time.monotonic() + STEM_CELL_RETRY_S
            self._remove(pc)
            return
        if self._closed or pc.state is State.REMOVED:  # the pool closed while it started
            self._remove(pc)
            await container.destroy()
            return
        pc.started_as_stem_cell(container)
        self._wake()  # a queued request of this shape can take it

    # -- keep-warm reaper -------------------------------------------------------------

    def start(self) -> None:
        """Start the keep-warm reaper and the first stem cells."""
        self._reaper = asyncio.create_task(self._reap(), name="pool-reaper")
        self.refill()

    async def _reap(self) -> None:
        interval = max(0.05, min(10.0, self.keep_warm_s / 4))
        while True:
            await asyncio.sleep(interval)
            self.reap_idle()

    def reap_idle(self) -> int:
        """Remove containers idle longer than the keep-warm period; returns how many."""
        deadline = time.monotonic() - self.keep_warm_s
        expired = [
            pc
            for g in self._containers.values()
            for pc in g
            if pc.idle and pc.last_used <= deadline
        ]
        for pc in expired:
            self._remove(pc)
        return len(expired)

    async def close(self) -> None:
        """Destroy every container (also busy ones: the invoker already gave up on them)
        and stop starting stem cells."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        # Stem cells still starting are awaited, not cancelled: a start is bounded by the
        # factory's start timeout, and cancelling ``create`` while the runtime's process is
        # being spawned can hang in asyncio's subprocess set-up (seen with bubblewrap).
        # Each one sees ``_closed`` when it listens and destroys itself.
        await asyncio.gather(*list(self._stem_tasks), return_exceptions=True)
        for pc in self.containers():
            self._remove(pc)
        await asyncio.gather(*list(self._background))
        self._wake()
