"""Where the throttles' counts live: :class:`ThrottleCounters`, one provider per shape.

A seam of the bus package because sharing the counts is the messaging provider's job: a
cluster's controllers share them through the same NATS server that carries their
messages (the key-value buckets of JetStream), standalone keeps them in its process as
it keeps its queues.

- :class:`MemoryCounters` (standalone, and a cluster of one): dicts on the event loop.
- :class:`~squall.bus.nats_counters.NatsCounters` (a cluster): shared by every
  controller through NATS JetStream key-value buckets, so that a namespace's limits hold
  across the cluster, not per controller (design and error bounds: docs/cluster.md,
  "Limits across the cluster").

:class:`~squall.controller.throttle.Throttles` decides (limits, 429 messages, metrics);
a provider only counts. Both pass ``tests/contract/bus/test_throttle_counters.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

#: The per-minute windows: invokes (``invocationsPerMinute``) and trigger fires.
INVOKES = "invokes"
FIRES = "fires"


class ThrottleCounters(Protocol):
    """Per-namespace counts of attempts per wall-clock minute and of activations in
    flight, shared by every controller that uses the same provider (store).

    Guarantees:

    - ``hit(window, namespace, minute, allowed)`` counts one attempt and returns its
      number in that window: the attempt is admitted when the number is ``<= allowed``.
      Across all the controllers sharing the store, at most ``allowed`` attempts of one
      (window, namespace, minute) are admitted, whatever the concurrency; a refused
      attempt returns a number ``> allowed`` (how far above is the provider's view of the
      attempts, for the message only). Windows and namespaces are counted apart.
      A shared provider may grant attempts to a controller ahead of time (a lease):
      then fewer than ``allowed`` may be admitted while a controller holds granted
      attempts it has no requests for (within the provider's documented bound, for a
      bounded time), never more.
    - ``admit(namespace, allowed)`` decides one request against a concurrency limit:
      it returns the slots taken across the sharing controllers as this controller sees
      them, and the request is admitted when that is ``< allowed``. The caller then
      counts the admitted activation with ``started`` (admission itself counts nothing:
      requests admitted in the same instant, before any of them is started, may together
      exceed ``allowed`` by their number — the race standalone has too). Otherwise the
      activations started and not ended across the controllers never exceed ``allowed``
      through admissions. A shared provider may hold slots for a controller ahead of its
      requests (a reservation the others count as taken): then fewer may be admitted,
      by at most the unused reserved slots, until they are released (provider's bound).
    - ``started(namespace, activation_id)`` counts an activation in flight until
      ``ended(activation_id)``; both are idempotent per id (a redelivered completion
      cannot count twice or go below zero); ``ended`` of an unknown id does nothing.
      When ``started`` returns, every sharing controller counts the activation among
      the slots taken. ``ended`` never blocks: a shared provider makes the release
      visible to the others soon after (at most one round trip, or its refresh period
      if the store was away).
    - ``in_flight(namespace)`` is the slots taken across the sharing controllers as of
      the call: the activations started and not ended, plus the unused slots reserved
      by a provider that reserves; ``own(namespace)`` this controller's activations
      alone, without I/O. Counts of a controller that died stop counting within the
      provider's documented bound (never negative, never for ever).
    - Every method runs on the event loop; a shared provider whose store cannot be reached
      raises ``ProviderError`` from the async methods (the request answers 503).
    - ``close`` releases this controller's counts in the store where it can and stops
      background work; nothing is called after it.
    """

    async def hit(self, window: str, namespace: str, minute: int, allowed: int) -> int: ...

    async def admit(self, namespace: str, allowed: int) -> int: ...

    async def started(self, namespace: str, activation_id: str) -> None: ...

    def ended(self, activation_id: str) -> None: ...

    async def in_flight(self, namespace: str) -> int: ...

    def own(self, namespace: str) -> int: ...

    async def close(self) -> None: ...


@dataclass
class _Window:
    minute: int = -1
    count: int = 0

    def hit(self, minute: int) -> int:
        if minute != self.minute:
            self.minute, self.count = minute, 0
        self.count += 1
        return self.count


class InFlight:
    """Activations in flight by namespace, keyed by id (idempotent start and end).
    Everything runs on the event loop; the dicts need no lock."""

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._owner: dict[str, str] = {}  # activation id → namespace

    def start(self, namespace: str, activation_id: str) -> bool:
        """Count it; False when it was counted already."""
        if activation_id in self._owner:
            return False
        self._owner[activation_id] = namespace
        self._count[namespace] = self._count.get(namespace, 0) + 1
        return True

    def end(self, activation_id: str) -> str | None:
        """Stop counting it; its namespace, or None when it was not counted."""
        namespace = self._owner.pop(activation_id, None)
        if namespace is None:
            return None
        left = self._count.get(namespace, 0) - 1
        if left > 0:
            self._count[namespace] = left
        else:
            self._count.pop(namespace, None)
        return namespace

    def count(self, namespace: str) -> int:
        return self._count.get(namespace, 0)

    def namespaces(self) -> list[str]:
        return list(self._count)


class MemoryCounters:
    """Counts in this process: exact, no I/O. Per-minute windows are tumbling: every
    attempt counts, a refused one too, from zero each minute (OpenWhisk's RateThrottler)."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], _Window] = {}
        self._in_flight = InFlight()

    async def hit(self, window: str, namespace: str, minute: int, allowed: int) -> int:
        return self._windows.setdefault((window, namespace), _Window()).hit(minute)

    async def admit(self, namespace: str, allowed: int) -> int:
        return self._in_flight.count(namespace)

    async def started(self, namespace: str, activation_id: str) -> None:
        self._in_flight.start(namespace, activation_id)

    def ended(self, activation_id: str) -> None:
        self._in_flight.end(activation_id)

    async def in_flight(self, namespace: str) -> int:
        return self._in_flight.count(namespace)

    def own(self, namespace: str) -> int:
        return self._in_flight.count(namespace)

    async def close(self) -> None:
        return None
