"""How many started spares a Python zygote keeps: :class:`SpareDemand`.

A spare (:mod:`squall.sandbox.spare`) is a container forked, confined, linked and started
ahead; taking one is a rename and a message, while forking one on the spot costs the
burst the fork, the namespaces, the cgroup's creation and move, the link and the proxy's
start — about three times the CPU (``bench/zygote_burst.py``). A zygote keeps ``base``
spares (2 by default): enough for a stream of cold starts, not for a burst of them, where
every create but the first two forks its own container while the two cores are already
saturated.

So the count follows demand, as OpenWhisk's reactive prewarming (``reactive``:
``minCount``, ``maxCount``, ``ttl``, ``threshold``) does for its prewarmed containers:

- a *burst* is at least ``burst`` creates waiting for a runtime of the zygote at the same
  moment (a sequence of creates, however fast, is not: each waits for the one before);
- after a burst the zygote keeps as many spares as the burst had creates in flight at
  most, up to ``ceiling``, so that the next burst of that size takes started spares;
- ``ttl`` seconds after the last burst the count falls back to ``base`` and the spares
  beyond it are discarded: memory (≈ 3 MB per started spare) is held only while bursts
  keep coming. The pool's Node.js stem cells count the ``ttl`` from the last cell of the
  burst's refill ready too, if later (:meth:`SpareDemand.ready`: their refill can take
  longer than the ttl), so at most ``2 * ttl`` after the last burst.

Spares are forked again only once no create is waiting (:mod:`squall.sandbox.zygote`), and
a refill under way stops when a burst begins: a spare forked during a burst serves none
of the creates already waiting, which fork their own, and would only compete with them
for the CPU.

:class:`SpareDemand` is pure bookkeeping (the caller passes the time);
:class:`SpareSchedule` puts the event loop's timers around it: when to fork spares again,
when to drop the grown ones. Event loop thread only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

#: Creates in flight at once from which a zygote counts a burst.
BURST_CREATES = 8
#: Most spares a zygote keeps after a burst (≈ 3 MB each while they wait).
MAX_SPARES = 100
#: How long after the last burst the grown spares are kept.
BURST_SPARES_TTL_S = 60.0
#: How long after the last create took its runtime the forking of spares starts (not to
#: compete with the taken containers' first requests).
REFILL_DELAY_S = 0.05
#: The longest creates in flight postpone that forking, unless they are a burst's.
REFILL_MAX_DELAY_S = 1.0
#: Spares forked (stem cells started) at once while refilling: a fork waits on the
#: zygote, the cgroup move (an RCU grace period) and the network's thread as much as on
#: the CPU; a stem cell's start on bubblewrap and the same cgroup and network steps.
REFILL_PARALLEL = 4


class SpareDemand:
    """The wanted number of spares of one zygote (or stem cells of one shape, the pool's:
    invoker/prewarm.py); see the module docstring.

    ``base``: kept at all times (0: none, and no growth either, unless ``from_none``: the
    pool's stem cells of a shape it keeps only after bursts); ``ceiling``: the most after
    a burst (:data:`MAX_SPARES`); ``burst``: creates in flight at once that make a burst
    (:data:`BURST_CREATES`); ``ttl``: how long grown spares are kept after the last burst
    (:data:`BURST_SPARES_TTL_S`).
    """

    def __init__(
        self,
        base: int,
        *,
        ceiling: int | None = None,
        burst: int | None = None,
        ttl: float | None = None,
        from_none: bool = False,
    ) -> None:
        self.base = base
        # The module's constants are read now (not when this was defined): tests set them.
        ceiling = MAX_SPARES if ceiling is None else ceiling
        self._ceiling = max(base, ceiling) if base > 0 or from_none else 0
        self._burst = BURST_CREATES if burst is None else burst
        self._ttl = BURST_SPARES_TTL_S if ttl is None else ttl
        self._wanted = base
        self._in_flight = 0
        self._in_burst = False
        # When the count falls back is ``ttl`` after ``_last_burst``; ``_burst_at`` is when
        # a burst was last seen, which only ``started`` moves (``ready`` may move the
        # former, never the latter: see ready).
        self._last_burst: float | None = None
        self._burst_at: float | None = None

    @property
    def wanted(self) -> int:
        """How many started spares to keep now."""
        return self._wanted

    @property
    def in_flight(self) -> int:
        """Creates waiting for a runtime now."""
        return self._in_flight

    @property
    def bursting(self) -> bool:
        """Whether a burst's creates are in flight: from when ``burst`` of them waited at
        once until none waits any more."""
        return self._in_burst

    @property
    def grown(self) -> bool:
        """Whether more than ``base`` spares are wanted (a burst was seen within ``ttl``)."""
        return self._wanted > self.base

    def started(self, now: float) -> None:
        """A create began waiting for a runtime (``now``: the clock)."""
        self._in_flight += 1
        if self._in_flight >= self._burst:
            self._in_burst = True
        if self._in_burst and self._ceiling > 0:
            self._last_burst = self._burst_at = now
            self._wanted = min(self._ceiling, max(self._wanted, self._in_flight))

    def ended(self) -> None:
        """A create got its runtime, or failed."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._in_burst = False

    def ready(self, now: float) -> None:
        """A grown spare became ready at ``now``: the grown count is kept until ``ttl``
        after that too, as OpenWhisk's prewarmed container expires ``ttl`` after it was
        started. The pool's stem cells call this (a Node.js refill of 100 needs ≈ 6 s of
        CPU; on a saturated machine it took longer than the ttl, and the cells were
        removed as they became ready, before the next burst: bench/README.md, "Node.js
        stem cells kept ttl after they are ready"); a zygote's spares do not.

        Only a spare ready within ``ttl`` of the burst extends it — the burst's own
        refill — so the grown count is held at most ``2 * ttl`` after the last burst. A
        later one (the replacement of a spare an ordinary cold start took, or of an
        evicted one) extends nothing: else a trickle of lone cold starts, each refilled,
        would hold a burst's spares for ever."""
        if not self.grown or self._last_burst is None or self._burst_at is None:
            return
        if now <= self._burst_at + self._ttl:
            self._last_burst = max(self._last_burst, now)

    def expire(self, now: float) -> float | None:
        """Fall back to ``base`` if the last burst is ``ttl`` old; the seconds until that
        is due otherwise, or None when nothing is grown."""
        if self._last_burst is None or not self.grown:
            return None
        left = self._last_burst + self._ttl - now
        if left > 0:
            return left
        self._wanted = self.base
        self._last_burst = self._burst_at = None
        return None


class SpareSchedule:
    """The timers around a zygote's :class:`SpareDemand`.

    ``refill()`` is called to fork spares up to ``demand.wanted``: :data:`REFILL_DELAY_S`
    after the last create took its runtime — postponed while creates wait, at most
    :data:`REFILL_MAX_DELAY_S` in all (a steady stream), until the last create of a
    burst has its runtime (a spare forked during a burst serves none of its creates,
    which fork their own). ``shrink()`` is called once a grown count fell back to the
    base count (the zygote then drops the spares beyond it).
    """

    def __init__(
        self, demand: SpareDemand, refill: Callable[[], None], shrink: Callable[[], None]
    ) -> None:
        self.demand = demand
        self._refill = refill
        self._shrink = shrink
        self._refill_timer: asyncio.TimerHandle | None = None
        #: When the pending refill was first asked for.
        self._asked: float | None = None
        self._shrink_timer: asyncio.TimerHandle | None = None

    def started(self) -> None:
        """A create began waiting for a runtime."""
        self.demand.started(asyncio.get_running_loop().time())
        self._watch_growth()

    def ended(self) -> None:
        """A create got its runtime (or failed): a refill is due soon."""
        self.demand.ended()
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._asked is None:
            self._asked = now
        elif now - self._asked >= REFILL_MAX_DELAY_S and self._refill_timer is not None:
            return  # postponed long enough: the timer set stays
        if self._refill_timer is not None:
            self._refill_timer.cancel()
        self._refill_timer = loop.call_later(REFILL_DELAY_S, self._refill_due)

    def ready(self) -> None:
        """A spare became ready: a grown count is kept ``ttl`` after now too
        (:meth:`SpareDemand.ready`; the shrink timer set finds the later time)."""
        self.demand.ready(asyncio.get_running_loop().time())

    def pending(self) -> bool:
        """Cancel a refill that is due soon; whether there was one (the caller refills)."""
        if self._refill_timer is None:
            return False
        self._refill_timer.cancel()
        self._refill_timer = None
        self._asked = None
        return True

    def close(self) -> None:
        for timer in (self._refill_timer, self._shrink_timer):
            if timer is not None:
                timer.cancel()
        self._refill_timer = self._shrink_timer = None

    def _refill_due(self) -> None:
        self._refill_timer = None
        loop = asyncio.get_running_loop()
        waited = loop.time() - (self._asked or 0.0)
        if (self.demand.in_flight and waited < REFILL_MAX_DELAY_S) or self.demand.bursting:
            return  # the last create in flight asks again when it has its runtime
        self._asked = None
        self._refill()

    def _watch_growth(self) -> None:
        if self._shrink_timer is not None:
            return
        loop = asyncio.get_running_loop()
        left = self.demand.expire(loop.time())
        if left is not None:
            self._shrink_timer = loop.call_later(left, self._shrink_due)

    def _shrink_due(self) -> None:
        self._shrink_timer = None
        if self.demand.expire(asyncio.get_running_loop().time()) is not None:
            self._watch_growth()  # a later burst: its own ttl
        else:
            self._shrink()
