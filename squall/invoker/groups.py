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
  cold start times (a run asking → /init done); ``fastest_s`` the fastest of the key's
  last :data:`RUN_SAMPLES` runs (a sliding minimum, kept in a monotonic deque: O(1)
  amortized per run);
- :meth:`service_s` is what a run holds a slot for *because of the container*, the time
  WARM WAIT divides the window by: the run time less the event loop's busy share of it,
  never below the fastest recent run (see the pool's docstring, "WARM WAIT").

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

#: How many of a key's latest runs ``fastest_s`` is the fastest of: enough that one of
#: them met a short loop queue, few enough to follow a slower action within a burst.
RUN_SAMPLES = 16


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
    fastest_s: float | None = None
    #: The sliding minimum's candidates: (run number, seconds), seconds increasing.
    _recent: deque[tuple[int, float]] = field(default_factory=deque)
    _runs: int = 0

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
        self._runs += 1
        recent = self._recent
        while recent and recent[-1][1] >= seconds:
            recent.pop()  # never the minimum again while this run is in the window
        recent.append((self._runs, seconds))
        if recent[0][0] <= self._runs - RUN_SAMPLES:
            recent.popleft()
        self.fastest_s = recent[0][1]

    def service_s(self, loop_busy: float) -> float | None:
        """How long a run holds a slot because of the container (None before any run
        ended), given the event loop's busy share (0 to 1, :mod:`squall.invoker.loopload`):
        the run time times the loop's idle share, at least the fastest recent run. With
        the loop idle it is the run time (a slow or varying action counts whole); with
        the loop saturated (a noop at c=50) a run's hold is mostly its task waiting for
        the loop, which more containers lengthen rather than shorten, and the fastest
        recent run is the better estimate of what the container takes."""
        if self.run_s is None:
            return None
        return max(self.fastest_s or 0.0, self.run_s * (1.0 - loop_busy))

    def starting_enough(self, window_s: float) -> bool:
        """WARM WAIT's brake on growth: whether this key already has as many containers
        starting as it has started, while its fastest recent run fits ``window_s`` (its
        containers could serve waiting runs, were they not slowed). A run then waits for
        a slot rather than start one more, so a burst at most doubles the key's
        containers per cold start: cold starts take CPU, which slows the running
        containers, which lengthens the run times the rule reads, which started more
        (measured on two busy cores: 25 Node.js starts within 1.7 s of a c=50 noop)."""
        if window_s <= 0 or self.fastest_s is None or self.fastest_s > window_s:
            return False
        return self.starting > 0 and len(self.members) <= self.starting

    def learn_cold(self, seconds: float) -> None:
        """One cold start of this key took ``seconds`` (until its /init ended)."""
        self.cold_s = _average(self.cold_s, seconds)

    def window(self, base_s: float) -> float:
        """How long a run may wait for a slot: ``base_s``, or longer when the key's cold
        starts take longer (waiting is then still the sooner way to a container); 0 when
        ``base_s`` is 0 (WARM WAIT off)."""
        return 0.0 if base_s <= 0 else max(base_s, self.cold_s or 0.0)

    def may_wait(self, window_s: float, loop_busy: float = 0.0) -> bool:
        """WARM WAIT: whether a new run is served by this key's slots within
        ``window_s``, behind the runs already waiting (see the pool's docstring)."""
        if self.pending_slot_free():
            return True
        service = self.service_s(loop_busy)
        if window_s <= 0 or service is None or self.slots <= 0:
            return False
        # Runs one slot ends within the window (OpenWhisk's "container throughput").
        per_slot = window_s / max(service, 1e-6)
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
