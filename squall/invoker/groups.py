"""The containers of one pool key: O(1) choice, the runs waiting for them, their run time.

A :class:`KeyGroup` holds the live containers assigned to one (namespace, action,
revision, network setting), as the pool's rule 1 and WARM WAIT need them
(:mod:`squall.invoker.pool`):

- ``take()`` finds a container with a free slot in O(1): one already running some of the
  key's runs first (``concurrency > 1``; the one handed a run last), else the idle one
  released last. Both sets are insertion-ordered dicts, refiled after each state change
  (:meth:`file`), so nothing is scanned on the invoke path;
- ``slots`` counts the runs the key's containers can take at once, those still starting
  included (``starting``), for the warm-wait estimate; ``pending`` the free slots of
  containers still starting or in /init (``concurrency > 1``): reserved for the runs that
  arrive meanwhile, which wait for them rather than start containers of their own;
- ``waiters`` are the runs waiting for a slot, oldest first; :meth:`hand_to_waiter` gives
  a freed slot to the oldest one still waiting;
- ``run_s`` and ``cold_s`` are exponential moving averages of the key's run times and
  cold start times (a run asking → /init done).

Concurrency: used only by the pool, on the event loop, without awaits inside a method.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from squall.invoker.container import PooledContainer, PoolKey, State

#: (pool key, network): containers of one setting are never used for the other.
GroupKey = tuple[PoolKey, bool]

#: How far a key's patience grows: stale runs wait at most this many windows.
MAX_PATIENCE = 32.0

#: Weight of the newest run in the moving average: the estimate follows a change of load
#: within a handful of runs, and one slow run moves it by a quarter only.
RUN_TIME_WEIGHT = 0.25


def _average(current: float | None, sample: float) -> float:
    return sample if current is None else current + RUN_TIME_WEIGHT * (sample - current)


@dataclass(eq=False)
class Waiter:
    """A run waiting for a slot of its key: ``future`` gets the container (with the run
    taken on it), or None to look again; ``gave_up`` once it waited the whole window."""

    future: asyncio.Future[PooledContainer | None]
    gave_up: bool = False
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class KeyGroup:
    """The live containers of one key; see the module docstring."""

    members: dict[PooledContainer, None] = field(default_factory=dict)
    #: BUSY with a free slot (``concurrency > 1``), the one handed a run last at the end.
    partial: dict[PooledContainer, None] = field(default_factory=dict)
    #: READY or PAUSED, the one released last at the end.
    idle: dict[PooledContainer, None] = field(default_factory=dict)
    #: Runs the members can take at once, plus those of containers still starting.
    slots: int = 0
    starting: int = 0
    pending: int = 0
    #: Runs that gave up waiting and have not yet begun their cold start (see the pool).
    stale_starts: int = 0
    #: Windows a waiting run waits before it goes stale: doubled by each stale start,
    #: back to 1 when a run finds a free slot (see :meth:`_give_up`).
    patience: float = 1.0
    waiters: deque[Waiter] = field(default_factory=deque)
    run_s: float | None = None
    cold_s: float | None = None

    @property
    def empty(self) -> bool:
        """Nothing left to keep: no container, none starting, nobody waiting."""
        return not self.members and not self.starting and not self.waiters

    def take(self) -> PooledContainer | None:
        """The container the next run of this key should use, if one has a free slot."""
        if self.partial:
            return next(reversed(self.partial))
        if self.idle:
            return next(reversed(self.idle))
        return None

    def join(self, pc: PooledContainer) -> None:
        """``pc`` now belongs to this key (assigned, with its first run in flight)."""
        self.members[pc] = None
        self.slots += pc.max_concurrent
        self.file(pc)

    def leave(self, pc: PooledContainer) -> bool:
        """``pc`` is gone; False if it was not a member."""
        if pc not in self.members:
            return False
        del self.members[pc]
        self.partial.pop(pc, None)
        self.idle.pop(pc, None)
        self.slots -= pc.max_concurrent
        return True

    def file(self, pc: PooledContainer) -> None:
        """Put ``pc`` in the set its state says (after it took or ended a run)."""
        self.partial.pop(pc, None)
        self.idle.pop(pc, None)
        if pc.state is State.BUSY and pc.active < pc.max_concurrent:
            self.partial[pc] = None
        elif pc.idle:
            self.idle[pc] = None

    def learn(self, seconds: float) -> None:
        """One run of this key took ``seconds``."""
        self.run_s = _average(self.run_s, seconds)

    def learn_cold(self, seconds: float) -> None:
        """One cold start of this key took ``seconds`` (until its /init ended)."""
        self.cold_s = _average(self.cold_s, seconds)

    def window(self, base_s: float) -> float:
        """How long a run may wait for a slot: ``base_s``, or longer when the key's cold
        starts take longer (waiting is then still the sooner way to a container); 0 when
        ``base_s`` is 0 (WARM WAIT off)."""
        return 0.0 if base_s <= 0 else max(base_s, self.cold_s or 0.0)

    def may_wait(self, window_s: float) -> bool:
        """WARM WAIT: whether a new run is served by this key's slots within
        ``window_s``, behind the runs already waiting (see the pool's docstring)."""
        if self.pending_slot_free():
            return True
        if window_s <= 0 or self.run_s is None or self.slots <= 0:
            return False
        # Runs one slot ends within the window (OpenWhisk's "container throughput").
        per_slot = window_s / max(self.run_s, 1e-6)
        return len(self.waiters) + 1 <= self.slots * per_slot

    async def wait_for_slot(
        self, window_s: float | None, give_back: Callable[[PooledContainer], None]
    ) -> tuple[PooledContainer | None, bool]:
        """WARM WAIT: wait for a slot of this key's containers, at most ``window_s`` (None:
        a slot of a starting container is reserved for it). Returns the container (the run
        already taken on it) or None to look again, and whether it may wait again (not
        after a whole window). Cancelled, a slot handed over meanwhile goes to
        ``give_back`` (the pool's release: the next waiting run gets it)."""
        loop = asyncio.get_running_loop()
        waiter = Waiter(loop.create_future())
        self.waiters.append(waiter)
        if window_s is not None:
            window_s *= self.patience
            waiter.timer = loop.call_later(window_s, self._give_up, waiter, window_s)
        try:
            handed = await waiter.future
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled():
                slot = waiter.future.result()
                if slot is not None:
                    give_back(slot)
            with contextlib.suppress(ValueError):
                self.waiters.remove(waiter)
            raise
        finally:
            if waiter.timer is not None:
                waiter.timer.cancel()
            if waiter.gave_up:
                # From here to its cold start's ``starting`` count there is no await.
                self.stale_starts -= 1
        if handed is not None:
            handed.run_resumed()
        return handed, not waiter.gave_up

    def _give_up(self, waiter: Waiter, window_s: float) -> None:
        """The window ran out: start a container after all — unless one is starting for
        the key already (or is about to: another run just gave up). Then its slots come
        sooner than a new one's would, and the run keeps its place for another window."""
        if waiter.future.done():
            return
        if self.starting or self.stale_starts:
            loop = asyncio.get_running_loop()
            waiter.timer = loop.call_later(window_s, self._give_up, waiter, window_s)
            return
        self.stale_starts += 1
        # Runs went stale although the run times said they would not: the time goes
        # elsewhere than in the containers (on two busy cores, the invoker's own loop), and
        # one more container may not help. The next stale start waits twice as long; a
        # run finding a free slot (the containers outpace the work) resets it.
        self.patience = min(MAX_PATIENCE, self.patience * 2)
        waiter.gave_up = True
        with contextlib.suppress(ValueError):
            self.waiters.remove(waiter)
        waiter.future.set_result(None)

    def pending_slot_free(self) -> bool:
        """Whether a slot of a container still starting is left for one more run."""
        return len(self.waiters) < self.pending

    def hand_to_waiter(self, pc: PooledContainer) -> bool:
        """Give one free slot of ``pc`` (not paused) to the oldest run still waiting;
        False if none waits."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if waiter.future.done():  # cancelled, or already told to look again
                continue
            pc.take_run()
            self.file(pc)
            waiter.future.set_result(pc)
            return True
        return False

    def wake_waiters(self) -> None:
        """Tell every waiting run to look again (the key lost capacity, or shutdown)."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(None)
