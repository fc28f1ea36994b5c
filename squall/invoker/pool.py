"""The container pool: which container runs an activation, and when containers go away.

POLICY: (the rules, in order)
1. Reuse a warm container only for the same namespace + action + revision (and network
   setting), never across actions or users; with ``concurrency > 1`` a container takes
   that many runs at once. Prefer one already running some of the key's runs (so others
   go idle), then the idle one released last (a ready one before a paused one: a paused
   one was released before every ready one). A paused one is thawed first. Finding it
   is O(1): each key keeps its containers with a free slot in two ordered sets.
2. Otherwise wait a short moment for a slot of the key's own containers, when they will
   free one soon enough (the rule of OpenWhisk's scheduler, see WARM WAIT below).
3. Otherwise take a stem cell of the action's kind and memory (concurrency 1 only: a
   runtime's concurrency is fixed when it starts); it only needs /init. A replacement is
   started in the background once that /init ended and ``STEM_CELL_REFILL_DELAY_S`` (50
   ms) after the take, when the cold start has answered (started at once, it slowed the
   /init by ~5 ms on 2 vCPUs; started when /init ended, the first /run). Not when the
   factory would fork the container from the namespace's running zygote (``forks``): a
   forked Python container starts as fast and is one process of ~3.4 MiB, where a stem
   cell is three of ~6.7 MiB, and its replacement would cost a bubblewrap start in the
   middle of a burst.
4. Otherwise start a new container if the invoker's user memory (the sum of the memory
   limits of live containers, stem cells and ones still starting included) leaves room.
5. Otherwise evict stem cells (they are of another shape, or rule 3 would have taken
   one), then idle containers least recently used first, until it fits.
6. Otherwise wait: the request is queued (first come, first served) until a release or
   a removal frees memory.
7. A container idle for ``keep_warm_s`` is removed by the reaper; stem cells are kept.
8. With ``pause_grace_s > 0`` a container idle that long is frozen (cgroup freezer) and
   thawed on reuse. Off by default, by measurement (2 vCPUs, cgroup v1, bubblewrap): an
   idle runtime used 0 (Python) to 3 (Node.js) clock ticks of CPU in 10 s, i.e. at most
   0.3 % of a CPU, while the thaw made the next warm acquire + /run cost 0.78 ms instead
   of 0.52 ms (Node.js) and 0.44 ms instead of 0.24 ms (Python), p50 of 50 — freezing
   would save nearly nothing and slow the warm path that B1 measures by 50-80 %. Turn it
   on (``SQUALL_PAUSE_GRACE_S``, e.g. 1 s) where many idle Node.js containers are kept.
9. Stem cells are refilled only from free memory and only when no request is waiting.
   A kind whose stem cells are reactive (Node.js) keeps more after a burst of cold starts
   of one shape, for a while (:mod:`squall.invoker.prewarm`, BURSTS).
10. MEMORY GUARD (:mod:`squall.invoker.memguard`): once a second, a container that ran
   since its last read, uses ≥ 90 % of its memory limit and grew since the guard's first
   read of it is retired: it takes no new run and is removed when its runs in flight end
   (at once when idle).
A container whose activation ended in a developer or internal error, or whose /init did
not succeed, is destroyed, never reused.

WARM WAIT (rule 2; OpenWhisk's scheduler decides the same way, with its ``stale
threshold`` as the window): a run of key K that finds no free slot waits for one of K's
containers — those running and those still starting — instead of starting its own, when
K's slots can serve it and every run already waiting for K within the window, at the
time K's runs recently took:

    waiting(K) + 1  <=  slots(K) * window(K) / run_time(K)

``run_time(K)`` is the containers' share of K's runs: the moving average of K's run
times (hand-out to release, /init excluded) times the share of time the event loop is
not busy (:mod:`squall.invoker.loopload`), at least the fastest of K's last 16 runs
(:meth:`KeyGroup.service_s`). A run's hold is the container's time plus its task's waits
for the loop (the started point's commit, reading the answer, resuming); with the loop
saturated (a noop at c=50 on two cores) those waits are most of it and grow with the
number of containers (Little's law: hold = containers / throughput), so the plain
average kept the queue at ``window x throughput`` whatever the count and a quiet machine
ended a c=50 noop with 20-30 containers; the fastest recent run is then the container's
time. With the loop idle the whole average counts: a slow or varying action, or runs
starved of CPU by other work, scale as before.
``window(K)`` is ``warm_wait_s``, or K's recent cold start time when that is longer
(waiting is then still the sooner way to a container: under CPU contention both grow).
A freed slot goes to K's oldest waiting run directly (first come, first served). A run
that waited a whole window (a slow run held the slots longer than expected) starts a
container after all, as a stale activation does in OpenWhisk — unless a container of K
is starting already: then it keeps its place for another window, so a burst of runs
going stale together starts one container at a time, not one each. Each such stale start
doubles K's patience (the windows a run waits before going stale, up to 32): runs that
go stale although K's run times said they would not are held up outside the containers
(on two busy cores, by the invoker's own loop), where more containers do not help; a run
that finds a free slot resets it. Runs that arrive
while a ``concurrency > 1`` container of K starts wait for its free slots (no window: the
slots are theirs). A brake on growth: once K has as many containers starting as started,
while K's fastest recent run fits the window, a run waits for their slots instead of
starting one more (:meth:`KeyGroup.starting_enough`): a burst at most doubles K's
containers per cold start, since cold starts take the CPU the running containers need,
lengthening the very run times the rule reads (on two busy cores a c=50 noop started 25
Node.js containers within 1.7 s that way). Consequences:

- a single stream never waits: its one run in flight always finds its container free, so
  its latency is unchanged;
- a burst scales out as far as the work needs: each container serves
  ``window / run_time`` queued runs, so about ``waiting / that`` containers are started —
  a noop at c=50 takes a few containers, not 50 (on a saturated loop the stale starts
  below add the rest, one at a time); runs that take longer than the window get a
  container each, at once, as before (their fastest run is longer than the window
  too);
- before any run of K ended there is no estimate, and a burst on a new action of
  concurrency 1 starts a container per run as before (latency first);
- a container of K removed (error, eviction, failed start) lowers K's slots: K's waiting
  runs look again.
``warm_wait_s = 0`` turns the rule off (``concurrency > 1`` runs still share containers).

Concurrency: everything runs on one event loop. Memory is reserved and states change
synchronously (no await between a check and what it allows), so concurrent acquires cannot
overshoot the capacity or take the same container; destroying and starting runtimes is
awaited outside the bookkeeping.

The bookkeeping (holdings, figures, removal, waking waiters, stocking stem cells) is
:mod:`squall.invoker.poolbooks`; this module is the policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Iterable

from squall.errors import ContainerError
from squall.invoker.container import PooledContainer, PoolKey, State
from squall.invoker.groups import GroupKey, KeyGroup
from squall.invoker.loopload import LoopLoad
from squall.invoker.poolbooks import PoolBooks, Shape
from squall.invoker.prewarm import StemCellSpec
from squall.sandbox.contracts import ContainerFactory

log = logging.getLogger("squall.invoker.pool")


class NeverFits(ContainerError):
    """The action needs more memory than this invoker has at all: no later try can
    succeed (so it is not tried again, :mod:`squall.invoker.provisioning`)."""


__all__ = ["ContainerPool", "PoolKey", "PooledContainer"]

#: WARM WAIT's window by default (OpenWhisk's stale threshold is 100 ms; a smaller window
#: trades a few more containers for a shorter queue: see docs/architecture.md).
DEFAULT_WARM_WAIT_S = 0.02  # Settings.warm_wait_ms


class ContainerPool(PoolBooks):
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
        warm_wait_s: float = DEFAULT_WARM_WAIT_S,
    ) -> None:
        self._factory = factory
        #: WARM WAIT's window (0: never wait for a busy container).
        self.warm_wait_s = warm_wait_s
        #: Whether stem cells get a network (the invoker's default for namespaces).
        self.stem_network = stem_network
        self.capacity_mb = capacity_mb
        self.keep_warm_s = keep_warm_s
        self.pause_grace_s = pause_grace_s
        specs = tuple(stem_cells)
        self.stem_cell_specs = tuple(s for s in specs if factory.supports(s.kind))
        for spec in set(specs) - set(self.stem_cell_specs):
            log.warning("no stem cells of %s: the container factory cannot run it", spec.kind)
        self._groups: dict[GroupKey, KeyGroup] = {}
        self._stem: dict[Shape, list[PooledContainer]] = {}  # STARTING or PREWARMED
        self._stem_tasks: set[asyncio.Task[None]] = set()
        self._stem_retry_at: dict[Shape, float] = {}
        self._stem_failures: dict[Shape, int] = {}
        self._stem_retry_timers: dict[Shape, asyncio.TimerHandle] = {}
        self._used_mb = 0  # reserved by live and starting containers
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._seq = itertools.count()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()
        self._refill_scheduled = False
        self._refill_after = 0.0
        self._bursts = {}
        self._cold = {}
        self._retiring = {}
        self._retired = {}
        self._guard: asyncio.Task[None] | None = None
        #: The event loop's busy share, for WARM WAIT (made here: the loop's thread).
        self._loop_load = LoopLoad()

    # -- acquire / release ------------------------------------------------------------

    async def acquire(
        self, key: PoolKey, kind: str, memory_mb: int, max_concurrent: int, network: bool = True
    ) -> tuple[PooledContainer, bool]:
        """A container for ``key`` and whether it is new (needs /init, then
        :meth:`initialized`). ``network``: whether the container has a network (one of
        the other setting is never reused for it). Raises ContainerError when the action
        can never fit or the pool is closing."""
        if memory_mb > self.capacity_mb:
            raise NeverFits(
                f"the action needs {memory_mb} MB but the invoker has {self.capacity_mb} MB"
            )
        gkey = (key, network)
        patient = True  # until it waited a whole window for a slot (WARM WAIT)
        while True:
            if self._closed:
                raise ContainerError("the invoker is shutting down")
            group = self._groups.get(gkey)
            if group is not None:
                warm = group.take()
                if warm is not None:
                    group.patience = 1.0
                    if self._hand_out(warm, group):
                        return warm, False
                    continue  # it could not be thawed and is gone; look again
                if group.pending_slot_free():
                    # A container starting for this key has a slot for it: no window.
                    handed, _ = await group.wait_for_slot(None, self.release)
                    if handed is not None:
                        return handed, False
                    continue
                window = group.window(self.warm_wait_s)
                if patient and (
                    group.may_wait(window, self._loop_load.busy()) or group.starting_enough(window)
                ):
                    handed, patient = await group.wait_for_slot(window, self.release)
                    if handed is not None:
                        return handed, False
                    continue
            stem_shaped = (
                max_concurrent == 1
                and network == self.stem_network
                and not self._forks(kind, key[0])
            )
            if stem_shaped:
                cell = self._take_stem_cell(kind, memory_mb)
                if cell is not None:
                    self._cold_started(cell)
                    # Its replacement starts once this /init ended (initialized or
                    # release) and a moment after this take (poolbooks), not to compete
                    # with the /init, the first /run and the answer for CPU.
                    cell.assign(key, 1)
                    self._group(gkey).join(cell)
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
        if stem_shaped:
            self._cold_started(pc)  # a stem cell's shape: counted for its bursts
        # Its slots count for WARM WAIT while it starts: runs arriving meanwhile may wait.
        starting = self._group(gkey)
        starting.starting += max_concurrent
        starting.slots += max_concurrent
        starting.pending += max_concurrent - 1  # its run takes one slot
        try:
            # The runtime must know it may overlap runs (it then writes no sentinels);
            # OpenWhisk's Node.js runtime accepts concurrent /run only with
            # __OW_ALLOW_CONCURRENT, so an OpenWhisk runtime image gets it too.
            env = (
                {"__OW_CONCURRENCY": str(max_concurrent), "__OW_ALLOW_CONCURRENT": "true"}
                if max_concurrent > 1
                else None
            )
            container = await self._factory.create(
                kind, memory_mb, env, network=network, tenant=key[0]
            )
        except BaseException:
            self._cold_ended(pc)
            self._used_mb -= memory_mb
            self._started(gkey, starting, max_concurrent)
            starting.wake_waiters()  # the slots they counted on will not come
            self._wake()
            raise
        if self._closed:  # close() ran while it started: it never saw this one
            self._cold_ended(pc)
            self._used_mb -= memory_mb
            self._started(gkey, starting, max_concurrent)
            await container.destroy()
            raise ContainerError("the invoker is shutting down")
        # A group with a container starting is never dropped, so ``starting`` is current.
        starting.starting -= max_concurrent
        starting.slots -= max_concurrent
        pc.assign(key, max_concurrent, container)
        starting.join(pc)
        return pc, True

    def _forks(self, kind: str, tenant: str) -> bool:
        """Whether the factory would fork a container of ``kind`` for ``tenant`` from a
        running zygote (rule 3: then no stem cell is taken; a factory without ``forks``
        never does)."""
        forks = getattr(self._factory, "forks", None)
        return bool(forks(kind, tenant)) if forks is not None else False

    def initialized(self, pc: PooledContainer) -> None:
        """/init on a new container succeeded: it may take runs of its key from now on
        (and a stem cell taken for it is replaced)."""
        pc.initialized_ok()
        self._cold_ended(pc)
        group = self._group_of(pc)
        if group is not None:
            group.learn_cold(time.monotonic() - pc.asked_at)
            group.pending -= pc.max_concurrent - 1
            group.file(pc)
            while pc.has_slot() and group.hand_to_waiter(pc):
                pass
        if pc.stem_cell:
            self._refill_soon()

    def release(self, pc: PooledContainer, *, destroy: bool = False) -> None:
        """End one run on ``pc``; ``destroy`` removes it (after a developer or internal
        error). A container whose /init did not succeed is always removed."""
        if destroy or self._closed or pc.state is State.INITIALIZING:
            pc.active = max(0, pc.active - 1)
            self._remove(pc)
        else:
            self._loop_load.busy()  # sampled every run: current when a burst begins
            took = pc.end_run()
            group = self._group_of(pc)
            if group is not None:
                group.learn(took)  # a retired container's runs count too
            if pc in self._retiring:  # MEMORY GUARD: no further run on it
                self._retired_run_ended(pc)
            elif group is not None and not group.hand_to_waiter(pc):
                # A freed slot goes to the oldest run waiting for this key, directly.
                group.file(pc)
            if pc.state is State.READY and self.pause_grace_s > 0:
                # A timer, not a task: pausing is a synchronous cgroup write. ``uses`` tells
                # the callback whether the container was handed out again meanwhile.
                asyncio.get_running_loop().call_later(
                    self.pause_grace_s, self._pause_if_idle, pc, pc.uses
                )
        self._wake()

    def _hand_out(self, pc: PooledContainer, group: KeyGroup) -> bool:
        """Give ``pc`` one more run, thawing it first; False if it had to be removed."""
        if pc.state is State.PAUSED:
            try:
                pc.container.resume()
            except (OSError, ContainerError):
                log.exception("thawing container %s failed", pc.describe())
                self._remove(pc)
                return False
        pc.take_run()
        group.file(pc)
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
            (pc for g in self._groups.values() for pc in g.idle),
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

    def start(self) -> None:
        """Start the keep-warm reaper, the MEMORY GUARD and the first stem cells."""
        self._reaper = asyncio.create_task(self._reap(), name="pool-reaper")
        self._guard = asyncio.create_task(self._guard_memory(), name="pool-memory-guard")
        self.refill()

    async def close(self) -> None:
        """Destroy every container (also busy ones: the invoker already gave up on them)
        and stop starting stem cells."""
        self._closed = True
        for schedule in self._bursts.values():
            schedule.close()
        for timer in self._stem_retry_timers.values():
            timer.cancel()
        self._stem_retry_timers.clear()
        for task in (self._reaper, self._guard):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # Stem cells still starting are awaited, not cancelled: a start is bounded by the
        # factory's start timeout, and cancelling ``create`` while the runtime's process is
        # being spawned can hang in asyncio's subprocess set-up (seen with bubblewrap).
        # Each one sees ``_closed`` when it listens and destroys itself.
        await asyncio.gather(*list(self._stem_tasks), return_exceptions=True)
        for pc in self.containers():
            self._remove(pc)
        for group in list(self._groups.values()):
            group.wake_waiters()  # they see the pool closed
        await asyncio.gather(*list(self._background))
        self._wake()
