"""Per-namespace throttles: invocations per minute, concurrent invocations, trigger fires
per minute — with OpenWhisk's 429 messages.

Limits come from the settings (OpenWhisk's defaults: 60/min, 30 concurrent, 60 fires/min)
and may be overridden per namespace in the auth store under OpenWhisk's ``UserLimits``
names: ``invocationsPerMinute``, ``concurrentInvocations``, ``firesPerMinute``. Overrides
are cached for ``ttl`` seconds, so a change reaches a running controller within that.

Per-minute counters are tumbling windows of the current wall-clock minute, as in
OpenWhisk's RateThrottler: the count starts from zero each minute. Concurrency counts
activations from publication to completion: ``started`` when the activator is about to
put the message on the bus, ``ended`` when the completion arrives or publication failed
— so a burst or a failure always returns the counter to zero.

Where the counts live is a :class:`~squall.bus.counters.ThrottleCounters`
provider: in memory (standalone, the default), or shared by a cluster's controllers in
NATS key-value buckets (``bus/nats_counters.py``), so that a namespace's limits hold across
the cluster rather than per controller; there a controller takes the counts in leases
(numbers of a minute's window, slots of the concurrency) and admits from them without
I/O. Admission reads the counts and then counts: two requests admitted at the same
instant may both pass the concurrency check (the bound is in docs/cluster.md); the
per-minute windows are exact in both shapes (a lease can only make them admit fewer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from squall.bus.counters import (
    FIRES,
    INVOKES,
    MemoryCounters,
    ThrottleCounters,
)
from squall.bus.messages import Completion
from squall.config import Settings
from squall.controller.refusals import Refusals
from squall.errors import TooManyRequests
from squall.metrics.controller import ControllerMetrics
from squall.store.contracts import AuthStore

INVOCATIONS_PER_MINUTE = "invocationsPerMinute"
CONCURRENT_INVOCATIONS = "concurrentInvocations"
FIRES_PER_MINUTE = "firesPerMinute"
# Not throttles, but stored beside them (OpenWhisk's UserLimits): the runtime kinds a
# namespace may create actions of (absent or empty: all), and whether its activation
# records are stored (absent: yes).
ALLOWED_KINDS = "allowedKinds"
STORE_ACTIVATIONS = "storeActivations"
#: Squall's own limit: whether the namespace's sandboxes have a network (see
#: squall/sandbox/egress.py).
NETWORK = "network"
NETWORK_MODES = ("egress", "none")


@dataclass(frozen=True, slots=True)
class Policy:
    """A namespace's stored limits and what they decide, until ``expires`` (monotonic)."""

    stored: dict[str, Any]
    limits: dict[str, int]  # the three throttles' effective values; not to be mutated
    store_activations: bool
    network: str | None
    expires: float


def too_many_per_minute(count: int, allowed: int) -> str:
    return f"Too many requests in the last minute (count: {count}, allowed: {allowed})."


def too_many_concurrent(count: int, allowed: int) -> str:
    return f"Too many concurrent requests in flight (count: {count}, allowed: {allowed})."


class Throttles:
    def __init__(
        self,
        settings: Settings,
        auth: AuthStore,
        *,
        ttl: float = 10.0,
        clock: Callable[[], float] = time.time,
        metrics: ControllerMetrics | None = None,
        counters: ThrottleCounters | None = None,
    ) -> None:
        self._settings = settings
        # The counts (in memory unless the wiring shares them: bus/counters.py).
        self.counters: ThrottleCounters = counters or MemoryCounters()
        self._metrics = metrics
        self._auth = auth
        self._ttl = ttl
        # Wall-clock seconds; public so tests can pin the minute they count in.
        self.clock = clock
        self._policies: dict[str, Policy] = {}
        # The refused requests by namespace, for the dashboard (see refusals.py).
        self.refusals = Refusals(lambda: self.clock())

    async def policy(self, namespace: str) -> Policy:
        """What the namespace's stored limits (``squall admin limits set``) decide, cached
        for ``ttl`` seconds: read once per invoke by the activator and by ``admit_invoke``,
        each a lookup (the per-invoke figures are worked out once per fetch, not per call)."""
        now = time.monotonic()
        cached = self._policies.get(namespace)
        if cached is None or cached.expires <= now:
            cached = self._policy(await self._auth.get_limits(namespace), now + self._ttl)
            self._policies[namespace] = cached
        return cached

    def _policy(self, stored: dict[str, Any], expires: float) -> Policy:
        s = self._settings

        def pick(key: str, default: int) -> int:
            value = stored.get(key)
            return int(value) if isinstance(value, int) and value >= 0 else default

        network = stored.get(NETWORK)
        return Policy(
            stored=stored,
            limits={
                INVOCATIONS_PER_MINUTE: pick(INVOCATIONS_PER_MINUTE, s.invocations_per_minute),
                CONCURRENT_INVOCATIONS: pick(CONCURRENT_INVOCATIONS, s.concurrent_invocations),
                FIRES_PER_MINUTE: pick(FIRES_PER_MINUTE, s.fires_per_minute),
            },
            store_activations=stored.get(STORE_ACTIVATIONS) is not False,
            network=network if network in NETWORK_MODES else None,
            expires=expires,
        )

    async def stored(self, namespace: str) -> dict[str, Any]:
        """The namespace's stored limits, cached (see ``policy``); the caller must not
        mutate the returned dict."""
        return (await self.policy(namespace)).stored

    async def store_activations(self, namespace: str) -> bool:
        """False when the namespace's records are not to be stored (OpenWhisk's
        ``storeActivations`` user limit; absent means true)."""
        return (await self.policy(namespace)).store_activations

    async def network(self, namespace: str) -> str | None:
        """The namespace's ``network`` limit (``"egress"`` or ``"none"``), None when it has
        none (the invoker's default applies)."""
        return (await self.policy(namespace)).network

    async def limits(self, namespace: str) -> dict[str, int]:
        """The namespace's effective limits (settings, then its stored overrides)."""
        return dict((await self.policy(namespace)).limits)

    def _minute(self) -> int:
        return int(self.clock() // 60)

    async def admit_invoke(self, namespace: str) -> None:
        """Count one invoke request; 429 when over the per-minute or concurrent limit."""
        limits = (await self.policy(namespace)).limits
        allowed = limits[INVOCATIONS_PER_MINUTE]
        count = await self.counters.hit(INVOKES, namespace, self._minute(), allowed)
        if count > allowed:
            self._refused(namespace, INVOCATIONS_PER_MINUTE)
            raise TooManyRequests(too_many_per_minute(count, allowed))
        allowed = limits[CONCURRENT_INVOCATIONS]
        in_flight = await self.counters.admit(namespace, allowed)
        if in_flight >= allowed:
            self._refused(namespace, CONCURRENT_INVOCATIONS)
            raise TooManyRequests(too_many_concurrent(in_flight, allowed))

    async def admit_fire(self, namespace: str) -> None:
        """Count one trigger fire; 429 when over the namespace's fires per minute."""
        limits = (await self.policy(namespace)).limits
        allowed = limits[FIRES_PER_MINUTE]
        count = await self.counters.hit(FIRES, namespace, self._minute(), allowed)
        if count > allowed:
            self._refused(namespace, FIRES_PER_MINUTE)
            raise TooManyRequests(too_many_per_minute(count, allowed))

    def _refused(self, namespace: str, limit: str) -> None:
        self.refusals.refused(namespace, limit)
        if self._metrics is not None:
            self._metrics.throttled(limit)

    async def started(self, namespace: str, activation_id: str) -> None:
        """Count it in flight (idempotent per id); a shared provider has written it
        when this returns."""
        await self.counters.started(namespace, activation_id)

    def ended(self, activation_id: str) -> None:
        self.counters.ended(activation_id)

    def on_completion(self, completion: Completion) -> None:
        """A completion listener (see ``CompletionWaiters.add_listener``): ``ended``."""
        self.counters.ended(completion.activation_id)

    def in_flight(self, namespace: str) -> int:
        """This controller's activations in flight for ``namespace`` (no I/O)."""
        return self.counters.own(namespace)

    async def close(self) -> None:
        await self.counters.close()
