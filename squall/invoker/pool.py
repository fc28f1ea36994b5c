"""The container pool: which container runs an activation, and when containers go away.

POLICY: (the rules, in order)
1. Reuse a warm container only for the same namespace + action + revision, never across
   actions or users; with ``concurrency > 1`` a container takes that many runs at once.
2. Otherwise start a new container if the invoker's user memory (the sum of the memory
   limits of live containers, including ones still starting) leaves room for it.
3. Otherwise evict idle containers, least recently used first, until it fits.
4. Otherwise wait: the request is queued (first come, first served) until a release or
   a removal frees memory.
5. A container idle for ``keep_warm_s`` is removed by the reaper.
A container whose activation ended in a developer or internal error is destroyed, never
reused.

Concurrency: everything runs on one event loop. Memory is reserved synchronously (no
await between the check and the reservation), so concurrent acquires cannot overshoot
the capacity; destroying is awaited outside the bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from squall.errors import ContainerError
from squall.sandbox.contracts import Container, ContainerFactory

log = logging.getLogger("squall.invoker.pool")

# (namespace, action fully qualified name, revision)
PoolKey = tuple[str, str, str]


@dataclass(eq=False)
class PooledContainer:
    container: Container
    key: PoolKey
    memory_mb: int
    max_concurrent: int
    active: int = 0
    initialized: bool = False
    last_used: float = field(default_factory=time.monotonic)
    seq: int = 0

    @property
    def idle(self) -> bool:
        return self.active == 0


class ContainerPool:
    def __init__(
        self, factory: ContainerFactory, capacity_mb: int, keep_warm_s: float = 300.0
    ) -> None:
        self._factory = factory
        self.capacity_mb = capacity_mb
        self.keep_warm_s = keep_warm_s
        self._containers: dict[PoolKey, list[PooledContainer]] = {}
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
        return [pc for group in self._containers.values() for pc in group]

    # -- acquire / release ------------------------------------------------------------

    async def acquire(
        self, key: PoolKey, kind: str, memory_mb: int, max_concurrent: int
    ) -> tuple[PooledContainer, bool]:
        """A container for ``key`` and whether it is new (needs /init)."""
        if memory_mb > self.capacity_mb:
            raise ContainerError(
                f"the action needs {memory_mb} MB but the invoker has {self.capacity_mb} MB"
            )
        while True:
            if self._closed:
                raise ContainerError("the invoker is shutting down")
            warm = self._warm(key)
            if warm is not None:
                warm.active += 1
                warm.last_used = time.monotonic()
                return warm, False
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
        try:
            # The runtime must know it may overlap runs (it then writes no sentinels).
            env = {"__OW_CONCURRENCY": str(max_concurrent)} if max_concurrent > 1 else None
            container = await self._factory.create(kind, memory_mb, env)
        except BaseException:
            self._used_mb -= memory_mb
            self._wake()
            raise
        pc = PooledContainer(container, key, memory_mb, max_concurrent, active=1)
        pc.seq = next(self._seq)
        self._containers.setdefault(key, []).append(pc)
        return pc, True

    def _warm(self, key: PoolKey) -> PooledContainer | None:
        best: PooledContainer | None = None
        for pc in self._containers.get(key, ()):
            # Prefer the busiest one that still has a slot, so others can go idle.
            usable = pc.initialized and pc.active < pc.max_concurrent
            if usable and (best is None or pc.active > best.active):
                best = pc
        return best

    def _evict_for(self, memory_mb: int) -> bool:
        """Remove idle containers, least recently used first, until ``memory_mb`` fits."""
        idle = sorted((pc for pc in self.containers() if pc.idle), key=lambda p: p.last_used)
        free = self.capacity_mb - self._used_mb
        victims: list[PooledContainer] = []
        for pc in idle:
            if free >= memory_mb:
                break
            victims.append(pc)
            free += pc.memory_mb
        if free < memory_mb:
            return False
        for pc in victims:
            self._forget(pc)
            self._spawn_destroy(pc.container)
        return True

    def release(self, pc: PooledContainer, *, destroy: bool = False) -> None:
        """End one run on ``pc``; ``destroy`` removes it (after a developer error)."""
        pc.active = max(0, pc.active - 1)
        pc.last_used = time.monotonic()
        if (destroy or self._closed) and self._forget(pc):
            self._spawn_destroy(pc.container)
        self._wake()

    def _forget(self, pc: PooledContainer) -> bool:
        group = self._containers.get(pc.key)
        if group is None or pc not in group:
            return False
        group.remove(pc)
        if not group:
            del self._containers[pc.key]
        self._used_mb -= pc.memory_mb
        return True

    def _wake(self) -> None:
        # Wake every waiter: each re-checks warm containers and capacity in FIFO order.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _spawn_destroy(self, container: Container) -> None:
        # Keep a reference: the loop holds tasks only weakly.
        task = asyncio.get_running_loop().create_task(self._destroy(container))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _destroy(self, container: Container) -> None:
        try:
            await container.destroy()
        except Exception:
            log.exception("destroying container %s failed", container.id)
        finally:
            self._wake()

    # -- keep-warm reaper -------------------------------------------------------------

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap(), name="pool-reaper")

    async def _reap(self) -> None:
        interval = max(0.05, min(10.0, self.keep_warm_s / 4))
        while True:
            await asyncio.sleep(interval)
            self.reap_idle()

    def reap_idle(self) -> int:
        """Remove containers idle longer than the keep-warm period; returns how many."""
        deadline = time.monotonic() - self.keep_warm_s
        expired = [pc for pc in self.containers() if pc.idle and pc.last_used <= deadline]
        for pc in expired:
            self._forget(pc)
            self._spawn_destroy(pc.container)
        return len(expired)

    async def close(self) -> None:
        """Destroy every container (also busy ones: the invoker already gave up on them)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        victims = self.containers()
        for pc in victims:
            self._forget(pc)
        await asyncio.gather(
            *(self._destroy(pc.container) for pc in victims), *list(self._background)
        )
        self._wake()
