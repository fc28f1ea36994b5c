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
  keep coming.

Spares are forked again only once no create is waiting (:mod:`squall.sandbox.zygote`): a
spare forked during a burst serves none of the creates already waiting, which fork their
own, and would only compete with them for the CPU.

Pure bookkeeping, no I/O: the caller passes the time (the event loop's clock). Event loop
thread only.
"""

from __future__ import annotations

#: Creates in flight at once from which a zygote counts a burst.
BURST_CREATES = 8
#: Most spares a zygote keeps after a burst (≈ 3 MB each while they wait).
MAX_SPARES = 100
#: How long after the last burst the grown spares are kept.
BURST_SPARES_TTL_S = 30.0


class SpareDemand:
    """The wanted number of spares of one zygote; see the module docstring.

    ``base``: kept at all times (0: none, and no growth either); ``ceiling``: the most
    after a burst (:data:`MAX_SPARES`); ``burst``: creates in flight at once that make a
    burst (:data:`BURST_CREATES`); ``ttl``: how long grown spares are kept after the last
    burst (:data:`BURST_SPARES_TTL_S`).
    """

    def __init__(
        self,
        base: int,
        *,
        ceiling: int | None = None,
        burst: int | None = None,
        ttl: float | None = None,
    ) -> None:
        self.base = base
        # The module's constants are read now (not when this was defined): tests set them.
        ceiling = MAX_SPARES if ceiling is None else ceiling
        self._ceiling = max(base, ceiling) if base > 0 else 0
        self._burst = BURST_CREATES if burst is None else burst
        self._ttl = BURST_SPARES_TTL_S if ttl is None else ttl
        self._wanted = base
        self._in_flight = 0
        self._last_burst: float | None = None

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
        """Whether a burst's creates are in flight now."""
        return self._in_flight >= self._burst

    @property
    def grown(self) -> bool:
        """Whether more than ``base`` spares are wanted (a burst was seen within ``ttl``)."""
        return self._wanted > self.base

    def started(self, now: float) -> None:
        """A create began waiting for a runtime (``now``: the clock)."""
        self._in_flight += 1
        if self.bursting and self._ceiling > 0:
            self._last_burst = now
            self._wanted = min(self._ceiling, max(self._wanted, self._in_flight))

    def ended(self) -> None:
        """A create got its runtime, or failed."""
        self._in_flight -= 1

    def expire(self, now: float) -> float | None:
        """Fall back to ``base`` if the last burst is ``ttl`` old; the seconds until that
        is due otherwise, or None when nothing is grown."""
        if self._last_burst is None or not self.grown:
            return None
        left = self._last_burst + self._ttl - now
        if left > 0:
            return left
        self._wanted = self.base
        self._last_burst = None
        return None
