"""A controller's metric families: what it was asked to run, what it refused, and how
long the invokers' queues are.

Families (labels in braces):

- ``squall_controller_invocations_total{outcome}``: activations this controller
  published to an invoker (API invokes, web actions, rules, each step of a sequence),
  by how the request ended: ``accepted`` (non-blocking, 202 at once), ``completed``
  (blocking, answered with the record), ``timeout`` (blocking, the wait ran out: 202
  with the id) or ``failed`` (it could not be published: no invoker, bus down).
- ``squall_controller_throttled_requests_total{reason}``: 429s by the limit that refused
  them, under OpenWhisk's limit names: ``invocationsPerMinute``,
  ``concurrentInvocations``, ``firesPerMinute``.
- ``squall_controller_recovered_activations_total{outcome}``: activations this
  controller took over from an invoker that went offline (``controller/recovery.py``):
  ``requeued`` (still on its queue: routed again by this controller), ``moved`` (taken
  by it but never started: marked started here and sent to another invoker), ``lost``
  (it had started there: ended with a whisk internal error, not run again).
- ``squall_controller_invoker_queue_length{invoker}``: activation messages on each known
  invoker's topic not yet taken (in-process bus) or not yet acknowledged (NATS), read
  from the bus at scrape time. An invoker the bus could not answer for within
  ``QUEUE_TIMEOUT_S`` is left out of that scrape (absent, not stale).

- ``squall_controller_log_forwarding_lines_total{destination}``: activation log lines
  this controller delivered to a namespace's log-forwarding destination (a 2xx answer).
- ``squall_controller_log_forwarding_dropped_lines_total{destination, reason}``: lines it
  gave up on: ``buffer_full`` (the bounded buffer had no room), ``destination_failed``
  (every attempt failed), ``shutdown`` (still waiting when the controller stopped).

Counters count per controller; sum them over controllers in the queries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from squall.bus.contracts import MessagingProvider
from squall.bus.messages import invoker_topic
from squall.metrics.tally import CountFamily, Tally

log = logging.getLogger("squall.metrics")

ACCEPTED, COMPLETED, TIMEOUT, FAILED = "accepted", "completed", "timeout", "failed"
# Outcomes of an activation taken over from an offline invoker (controller/recovery.py).
REQUEUED, MOVED, LOST = "requeued", "moved", "lost"
#: How long a scrape waits for the bus to count one invoker's queue.
QUEUE_TIMEOUT_S = 2.0


class _QueueCollector(Collector):
    """Yields the queue lengths the last refresh read (a scrape refreshes first)."""

    def __init__(self) -> None:
        self.lengths: dict[str, int] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "squall_controller_invoker_queue_length",
            "Activation messages waiting on an invoker's topic (read from the bus).",
            labels=["invoker"],
        )
        for invoker, length in sorted(self.lengths.items()):
            family.add_metric([invoker], length)
        yield family


class ControllerMetrics:
    """One controller's families, in a registry of its own.

    ``invokers`` returns the ids of the invokers whose queues to count (``"0"``, as in
    the topic ``invoker.0``); they are labelled ``invoker0``, as ``/invokers`` names them.
    """

    def __init__(self, bus: MessagingProvider, invokers: Callable[[], Iterable[str]]) -> None:
        self._bus = bus
        self._invokers = invokers
        self._registry = CollectorRegistry()
        # Counted on every invoke: in plain numbers, made a family when scraped (tally.py).
        self._invocations = CountFamily(
            "squall_controller_invocations",
            "Activations published to invokers, by how the request ended.",
            ["outcome"],
        )
        self._registry.register(Tally(self._invocations))
        self._throttled = Counter(
            "squall_controller_throttled_requests",
            "Requests refused with 429, by the namespace limit that refused them.",
            ["reason"],
            registry=self._registry,
        )
        self._recovered = Counter(
            "squall_controller_recovered_activations",
            "Activations this controller took over from an invoker that went offline.",
            ["outcome"],
            registry=self._registry,
        )
        self._forwarded = Counter(
            "squall_controller_log_forwarding_lines",
            "Activation log lines delivered to log-forwarding destinations.",
            ["destination"],
            registry=self._registry,
        )
        self._dropped = Counter(
            "squall_controller_log_forwarding_dropped_lines",
            "Activation log lines not delivered to log-forwarding destinations, by reason.",
            ["destination", "reason"],
            registry=self._registry,
        )
        self._queues = _QueueCollector()
        self._registry.register(self._queues)

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry

    def invocation(self, outcome: str) -> None:
        """Count one published activation's outcome (``ACCEPTED``, ``COMPLETED``, ...)."""
        self._invocations.add((outcome,))

    def recovered(self, outcome: str) -> None:
        """Count one activation taken over from an offline invoker (``REQUEUED``,
        ``MOVED`` or ``LOST``)."""
        self._recovered.labels(outcome).inc()

    def log_lines_forwarded(self, destination: str, lines: int) -> None:
        self._forwarded.labels(destination).inc(lines)

    def log_lines_dropped(self, destination: str, reason: str, lines: int) -> None:
        self._dropped.labels(destination, reason).inc(lines)

    def throttled(self, reason: str) -> None:
        """Count one 429, ``reason`` being the limit's name."""
        self._throttled.labels(reason).inc()

    async def refresh(self) -> None:
        """Read every known invoker's queue length from the bus, concurrently."""
        ids = list(dict.fromkeys(self._invokers()))
        counts = await asyncio.gather(*(self._pending(i) for i in ids))
        self._queues.lengths = {
            f"invoker{i}": n for i, n in zip(ids, counts, strict=True) if n is not None
        }

    async def _pending(self, invoker_id: str) -> int | None:
        try:
            return await asyncio.wait_for(
                self._bus.pending(invoker_topic(invoker_id)), QUEUE_TIMEOUT_S
            )
        except Exception as e:  # the bus is down or slow: leave this figure out
            log.debug("no queue length for invoker %s: %r", invoker_id, e)
            return None
