"""The container pool's bookkeeping: what it holds (the key groups, the stem cells, the
memory reserved), its figures, how a container leaves it (removed, its memory freed, its
runtime destroyed in the background; idle past its keep-warm period; retired by the
MEMORY GUARD), waking the runs that wait for memory, and keeping the stem cells stocked
(POLICY rule 9). The rules that decide which container runs what are
:mod:`squall.invoker.pool`'s; its :class:`~squall.invoker.pool.ContainerPool` is this
class with them.

Concurrency: as the pool's — one event loop; state changes are synchronous.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, TypeVar

from squall.invoker.container import PooledContainer, PoolKey, State
from squall.invoker.groups import GroupKey, KeyGroup
from squall.invoker.memguard import CHECK_INTERVAL_S, too_full
from squall.invoker.prewarm import StemCellSpec
from squall.sandbox.contracts import Container, ContainerFactory
from squall.sandbox.sparedemand import REFILL_PARALLEL, SpareDemand, SpareSchedule

log = logging.getLogger("squall.invoker.pool")

#: After a stem cell failed to start, its shape is not tried again for this long; each
#: further failure in a row doubles the pause, up to STEM_CELL_RETRY_MAX_S (a runtime that
#: cannot start at all — its binary gone — is then tried once a minute, as OpenWhisk's
#: prewarm check runs, not every 5 s with a traceback each time).
STEM_CELL_RETRY_S = 5.0
STEM_CELL_RETRY_MAX_S = 60.0


def stem_retry_pause(failures: int) -> float:
    """The pause before a shape is tried again after ``failures`` failed starts in a row."""
    return min(STEM_CELL_RETRY_MAX_S, STEM_CELL_RETRY_S * float(2 ** (max(1, failures) - 1)))


#: A taken stem cell's replacement starts no sooner than this after the take: by then
#: the cold start that took it has answered (a Node.js stem cell's /init and first /run
#: take a few ms; started when /init ended, the replacement's bubblewrap and runtime
#: start — ~50 ms of CPU, and its spawn's work on this loop — competed with the first
#: /run and the answer for the two cores: bench/README.md "coldapi"). The zygote waits
#: as long before refilling its spares (``sandbox/sparedemand.py``).
STEM_CELL_REFILL_DELAY_S = 0.05

Shape = tuple[str, int]  # (kind, memory MB)
K = TypeVar("K")


def _discard(table: dict[K, list[PooledContainer]], key: K, pc: PooledContainer) -> None:
    group = table.get(key)
    if group is not None and pc in group:
        group.remove(pc)
        if not group:
            del table[key]


class PoolBooks:
    """The pool's holdings and how they change; the attributes are set by the pool's
    constructor."""

    _factory: ContainerFactory
    capacity_mb: int
    keep_warm_s: float
    #: Whether stem cells get a network (the invoker's default for namespaces).
    stem_network: bool
    stem_cell_specs: tuple[StemCellSpec, ...]
    _groups: dict[GroupKey, KeyGroup]
    _stem: dict[Shape, list[PooledContainer]]  # STARTING or PREWARMED
    _stem_tasks: set[asyncio.Task[None]]
    _stem_retry_at: dict[Shape, float]
    _stem_failures: dict[Shape, int]  # failed starts in a row, per shape
    _stem_retry_timers: dict[Shape, asyncio.TimerHandle]  # cancelled by close()
    _used_mb: int  # reserved by live and starting containers
    _waiters: deque[asyncio.Future[None]]
    _seq: itertools.count[int]
    _closed: bool
    _background: set[asyncio.Task[None]]
    _refill_scheduled: bool  # a refill is in the loop's ready queue or on a timer
    _refill_after: float  # monotonic: no refill before (STEM_CELL_REFILL_DELAY_S)
    #: Stem cells that follow bursts (invoker/prewarm.py, BURSTS): per shape of a
    #: reactive kind, and the cold starts in flight counted there (by ``seq``).
    _bursts: dict[Shape, SpareSchedule]
    _cold: dict[int, Shape]
    #: Retired by the MEMORY GUARD, runs still in flight: no longer in their key's group
    #: (no run is handed to them), removed when the last run ends (``_retired_run_ended``).
    _retiring: dict[PooledContainer, None]
    #: Containers the MEMORY GUARD retired since the pool started, by runtime kind (the
    #: ``squall_invoker_containers_retired_total`` counter reads it at scrape time).
    _retired: dict[str, int]

    # -- figures ----------------------------------------------------------------------

    @property
    def used_mb(self) -> int:
        return self._used_mb

    def retired(self) -> dict[str, int]:
        """Containers retired by the MEMORY GUARD since the pool started, by kind."""
        return dict(self._retired)

    def containers(self) -> list[PooledContainer]:
        """Every live container: those of actions, then stem cells (starting ones too)."""
        warm = [pc for group in self._groups.values() for pc in group.members]
        return warm + list(self._retiring) + self.stem_cells()

    def waiting_for(self, key: PoolKey, network: bool = True) -> int:
        """Runs of ``key`` waiting for a slot of its containers (WARM WAIT)."""
        group = self._groups.get((key, network))
        return 0 if group is None else sum(not w.future.done() for w in group.waiters)

    @property
    def waiting_for_memory(self) -> int:
        """Runs waiting until enough of the invoker's memory is free for a new container."""
        return sum(not w.done() for w in self._waiters)

    def stem_cells(self) -> list[PooledContainer]:
        return [pc for group in self._stem.values() for pc in group]

    # -- bookkeeping ------------------------------------------------------------------

    def _group(self, gkey: GroupKey) -> KeyGroup:
        group = self._groups.get(gkey)
        if group is None:
            group = self._groups[gkey] = KeyGroup()
        return group

    def _started(self, gkey: GroupKey, group: KeyGroup, slots: int) -> None:
        """A container of ``group`` failed to start."""
        group.starting -= slots
        group.slots -= slots
        group.pending -= slots - 1
        if group.empty and self._groups.get(gkey) is group:
            del self._groups[gkey]

    def _group_of(self, pc: PooledContainer) -> KeyGroup | None:
        return None if pc.key is None else self._groups.get((pc.key, pc.network))

    def _remove(self, pc: PooledContainer) -> None:
        """→ REMOVED: forget it, free its memory, destroy its runtime in the background."""
        initializing = pc.state is State.INITIALIZING
        if not pc.removed():
            return
        self._retiring.pop(pc, None)
        if pc.key is not None:
            gkey = (pc.key, pc.network)
            group = self._groups.get(gkey)
            if group is not None and group.leave(pc):
                if initializing:
                    group.pending -= pc.max_concurrent - 1
                group.wake_waiters()  # fewer slots: each waiting run looks again
                if group.empty:
                    del self._groups[gkey]
        else:
            _discard(self._stem, (pc.kind, pc.memory_mb), pc)
        self._cold_ended(pc)
        self._used_mb -= pc.memory_mb
        if pc.started:
            self._spawn(self._destroy(pc.container))

    # -- keep-warm reaper (the pool's task) --------------------------------------------

    async def _reap(self) -> None:
        interval = max(0.05, min(10.0, self.keep_warm_s / 4))
        while True:
            await asyncio.sleep(interval)
            self.reap_idle()

    def reap_idle(self) -> int:
        """Remove containers idle longer than the keep-warm period; returns how many."""
        deadline = time.monotonic() - self.keep_warm_s
        expired = [pc for g in self._groups.values() for pc in g.idle if pc.last_used <= deadline]
        for pc in expired:
            self._remove(pc)
        return len(expired)

    # -- MEMORY GUARD (invoker/memguard.py) ------------------------------------------

    def retire_full(self) -> int:
        """Retire the containers near their memory limit (:mod:`squall.invoker.memguard`):
        an idle one is removed, a busy one takes no new run and is removed when its runs
        end. Returns how many. Called every ``memguard.CHECK_INTERVAL_S`` by the pool."""
        full = too_full(pc for group in self._groups.values() for pc in group.members)
        freed = False
        for pc in full:
            log.info("container %s is near its memory limit: retired", pc.describe())
            self._retired[pc.kind] = self._retired.get(pc.kind, 0) + 1
            if pc.idle:
                self._remove(pc)
                freed = True
                continue
            assert pc.key is not None  # initialized: it has a key
            gkey = (pc.key, pc.network)
            group = self._groups.get(gkey)
            if group is not None and group.leave(pc):
                group.wake_waiters()  # fewer slots: each waiting run looks again
                if group.empty:
                    del self._groups[gkey]
            self._retiring[pc] = None
        if freed:
            self._wake()  # its memory is free: waiting runs look again, stem cells refill
        return len(full)

    async def _guard_memory(self) -> None:
        """The MEMORY GUARD's task (started by the pool, cancelled when it closes)."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            try:
                self.retire_full()
            except Exception:  # a failed read must not end the guard for good
                log.exception("reading the containers' memory failed")

    def _retired_run_ended(self, pc: PooledContainer) -> None:
        """One run on the retired ``pc`` ended well (``end_run`` done by the caller):
        removed once none is left in flight (the others go on undisturbed), never filed
        for another run."""
        if not pc.active:
            self._remove(pc)

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
                self._refill_after = time.monotonic() + STEM_CELL_REFILL_DELAY_S
                return pc
        return None

    def _refill_soon(self) -> None:
        # After the callbacks already scheduled: woken waiters re-check first, so a refill
        # never takes memory a queued request was about to get. Every release comes here:
        # with every stem cell in place (the usual case) or a refill already queued,
        # nothing is scheduled (a handle and a loop step per run, ~1 % of a c=50 profile).
        # Shortly after a stem cell was taken, on a timer instead (STEM_CELL_REFILL_DELAY_S).
        if self._refill_scheduled or self._closed or not self._stem_missing():
            return
        self._refill_scheduled = True
        loop = asyncio.get_running_loop()
        delay = self._refill_after - time.monotonic()
        if delay > 0:
            loop.call_later(delay, self._refill_now)
        else:
            loop.call_soon(self._refill_now)

    def _stem_missing(self) -> bool:
        """Whether a stem cell of some shape is missing (starting ones count as there).
        Asked at every release (:meth:`_wake`): it builds nothing, and with no burst
        remembered it only compares the specs' counts (as :meth:`_stem_wanted`, which
        gives a shape of the bursts the count of its schedule instead)."""
        stem, bursts = self._stem, self._bursts
        for spec in self.stem_cell_specs:
            if len(stem.get(spec.shape, ())) < spec.count and spec.shape not in bursts:
                return True
        # Loops, not generators handed to any()/sum(): each item of a generator is a
        # frame resumed, and after a burst this runs at every release.
        for shape, schedule in bursts.items():
            if len(stem.get(shape, ())) < _wanted_now(schedule.demand):
                return True
        return False

    def _stem_wanted(self) -> list[tuple[Shape, int, int]]:
        """(shape, stem cells kept at all times, stem cells wanted now) for every shape:
        those of the specs, and those grown after a burst (not while one is under way: a
        cell started then serves none of its cold starts and takes CPU from them)."""
        wanted = {spec.shape: (spec.count, spec.count) for spec in self.stem_cell_specs}
        for shape, schedule in self._bursts.items():
            wanted[shape] = (schedule.demand.base, _wanted_now(schedule.demand))
        return [(shape, base, want) for shape, (base, want) in wanted.items()]

    def _refill_now(self) -> None:
        delay = self._refill_after - time.monotonic()
        if delay > 0 and not self._closed:
            # Another stem cell was taken since the timer was set: wait for its delay too.
            asyncio.get_running_loop().call_later(delay, self._refill_now)
            return
        self._refill_scheduled = False
        self.refill()

    def refill(self) -> int:
        """Start the missing stem cells that fit in free memory now; returns how many.
        Does nothing while requests wait for memory or the pool is closed."""
        if self._closed or self._waiters:
            return 0
        started = 0
        now = time.monotonic()
        for (kind, memory_mb), base, want in self._stem_wanted():
            if self._stem_retry_at.get((kind, memory_mb), 0.0) > now:
                continue
            group = self._stem.setdefault((kind, memory_mb), [])
            starting = 0
            for pc in group:
                if pc.state is State.STARTING:
                    starting += 1
            while len(group) < want and self._used_mb + memory_mb <= self.capacity_mb:
                if len(group) >= base and starting >= REFILL_PARALLEL:
                    break  # grown ones a few at a time, as a zygote forks its spares
                pc = PooledContainer(
                    kind, memory_mb, seq=next(self._seq), network=self.stem_network
                )
                group.append(pc)
                self._used_mb += memory_mb
                task = asyncio.get_running_loop().create_task(self._start_stem_cell(pc))
                self._stem_tasks.add(task)
                task.add_done_callback(self._stem_tasks.discard)
                started += 1
                starting += 1
            if not group:
                del self._stem[(kind, memory_mb)]
        return started

    async def _start_stem_cell(self, pc: PooledContainer) -> None:
        try:
            # Idle until taken: its start and warm-up yield the CPU to containers at work.
            container = await self._factory.create(
                pc.kind, pc.memory_mb, network=pc.network, idle=True
            )
        except asyncio.CancelledError:
            self._remove(pc)  # the factory cleaned up the half-started runtime
            raise
        except Exception:
            log.exception("stem cell %s@%d MB did not start", pc.kind, pc.memory_mb)
            shape = (pc.kind, pc.memory_mb)
            failures = self._stem_failures[shape] = self._stem_failures.get(shape, 0) + 1
            pause = stem_retry_pause(failures)
            self._stem_retry_at[shape] = time.monotonic() + pause
            self._remove(pc)
            # Tried again after the pause even if nothing else happens meanwhile: a
            # refill is otherwise only asked for by a release or a removal, and after a
            # burst (a start timing out on a saturated machine) none may come until the
            # next burst, which would then find none of its cells. One timer per shape
            # (a later failure's replaces it); close() cancels it.
            if not self._closed:
                earlier = self._stem_retry_timers.pop(shape, None)
                if earlier is not None:
                    earlier.cancel()
                self._stem_retry_timers[shape] = asyncio.get_running_loop().call_later(
                    pause, self._retry_stem, shape
                )
            return
        self._stem_failures.pop((pc.kind, pc.memory_mb), None)
        if self._closed or pc.state is State.REMOVED:  # the pool closed while it started
            self._remove(pc)
            await container.destroy()
            return
        pc.started_as_stem_cell(container)
        schedule = self._bursts.get((pc.kind, pc.memory_mb))
        if schedule is not None:
            # A grown cell is kept ttl after it is ready, not only after the burst: a
            # refill slower than the ttl (a saturated machine) would lose it unused.
            schedule.ready()
        self._wake()  # a queued request of this shape can take it

    def _retry_stem(self, shape: Shape) -> None:
        """The pause after the last failed start of ``shape`` is over (a later failure
        replaced the timer of an earlier one)."""
        self._stem_retry_timers.pop(shape, None)
        self._stem_retry_at.pop(shape, None)
        self._refill_soon()

    # -- stem cells that follow bursts (invoker/prewarm.py, BURSTS) ----------------------

    def _burst_schedule(self, shape: Shape) -> SpareSchedule | None:
        """The demand of ``shape``'s stem cells, if its kind's stem cells are reactive."""
        schedule = self._bursts.get(shape)
        if schedule is not None:
            return schedule
        reactive = [s for s in self.stem_cell_specs if s.kind == shape[0] and s.max_count > 0]
        if not reactive:
            return None
        base = sum(spec.count for spec in self.stem_cell_specs if spec.shape == shape)
        ceiling, ttl = reactive[0].max_count, reactive[0].ttl_s
        demand = SpareDemand(base, ceiling=ceiling, ttl=ttl, from_none=True)
        schedule = SpareSchedule(demand, self._refill_soon, lambda: self._shrink_stem(shape))
        self._bursts[shape] = schedule
        return schedule

    def _cold_started(self, pc: PooledContainer) -> None:
        """A cold start of ``pc``'s shape began (a stem cell taken, or a container of a
        stem cell's shape starting): counted for its shape's bursts until its /init
        ended (:meth:`_cold_ended`). The shapes a stem cell could serve only."""
        shape = (pc.kind, pc.memory_mb)
        schedule = self._burst_schedule(shape)
        if schedule is not None and pc.seq not in self._cold:
            self._cold[pc.seq] = shape
            schedule.started()

    def _cold_ended(self, pc: PooledContainer) -> None:
        """``pc``'s /init ended, or it failed or was removed before (once per start)."""
        shape = self._cold.pop(pc.seq, None)
        if shape is not None:
            # The refill comes on the schedule's timer, once no burst is under way.
            self._bursts[shape].ended()

    def _shrink_stem(self, shape: Shape) -> None:
        """``ttl`` after the last burst: remove the stem cells of ``shape`` beyond the
        count kept at all times, idle ones first, then ones still starting. Nothing else
        checks a starting one against the count once it was started: it would stay
        PREWARMED, its memory counted, until evicted. Removed while starting, its memory
        is free at once; its start destroys the runtime when that listens
        (:meth:`_start_stem_cell` sees it REMOVED)."""
        want = _wanted_now(self._bursts[shape].demand)  # the schedule calling this one's
        group = self._stem.get(shape, [])
        # sorted() is stable: PREWARMED ones (False) first, each kind in start order.
        beyond = sorted(group, key=lambda pc: pc.state is not State.PREWARMED)
        for pc in beyond[: max(0, len(group) - want)]:
            self._remove(pc)


def _wanted_now(demand: SpareDemand) -> int:
    """Stem cells of a burst schedule's shape wanted now: its base while a burst is under
    way (a cell started then serves none of its cold starts), else as many as the last
    bursts had in flight (up to the ceiling) until their ttl passed."""
    return demand.base if demand.bursting else max(demand.base, demand.wanted)
