"""An invoker's metric families: its activations, their times, its containers.

Everything about activations comes from the record the invoker builds — one
:meth:`InvokerMetrics.observe` per record, where the invoker stores it — so the figures
say what the activation records say (OpenWhisk's annotations: ``waitTime``, ``initTime``,
``kind``, ``prewarmed``). Containers are read from the pool at scrape time by a custom
collector, so the states are never stale and nothing in the pool reports to us.

Families (labels in braces):

- ``squall_invoker_activations_total{kind, status}``: every record that ended, status
  one of ``success``, ``application_error``, ``action_developer_error``,
  ``whisk_internal_error`` (the four OpenWhisk outcomes); a record the invoker made
  without running anything (action gone, expired, shut down) has ``kind="unknown"``.
- ``squall_invoker_starts_total{kind, start}``: how each run got its container:
  ``cold`` (a new runtime, then /init), ``prewarmed`` (a stem cell, /init only) or
  ``warm`` (reused, no /init).
- ``squall_invoker_activation_wait_seconds{kind}``: ``waitTime``, from acceptance by the
  controller until a container took the activation (bus, queueing, container start).
- ``squall_invoker_activation_init_seconds{kind}``: ``initTime`` of cold and prewarmed
  starts (the /init call).
- ``squall_invoker_activation_duration_seconds{kind}``: the record's ``duration``: /run,
  plus /init on a cold or prewarmed start, as in OpenWhisk.
- ``squall_invoker_containers{kind, state}``: live containers by state machine state
  (``starting``, ``prewarmed``, ``initializing``, ``busy``, ``ready``, ``paused``).
- ``squall_invoker_memory_reserved_bytes`` / ``squall_invoker_memory_capacity_bytes``:
  the memory limits of live containers against the invoker's user memory.
- ``squall_invoker_containers_retired_total{kind}``: containers the MEMORY GUARD
  (``invoker/memguard.py``) retired near their memory limit. A rising count says actions
  (or a runtime) grow with every run: their users see cold starts instead of errors.

Concurrency: ``observe`` runs on the invoker's event loop; the scrape reads the pool on
the same loop, so it sees a consistent table (the pool changes state without awaiting).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from squall.entities.activation import STATUS_NAMES, WHISK_ERROR, Activation
from squall.metrics.tally import CountFamily, Tally, TimeFamily

#: Seconds, from a warm run (~1 ms) to the longest action time limit (5 minutes).
TIME_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
UNKNOWN_KIND = "unknown"
COLD, PREWARMED, WARM = "cold", "prewarmed", "warm"
MB = 1024 * 1024


def status_label(status_code: int) -> str:
    """``application error`` → ``application_error`` (label values without spaces)."""
    return STATUS_NAMES.get(status_code, STATUS_NAMES[WHISK_ERROR]).replace(" ", "_")


class PooledView(Protocol):
    """What the collector reads of a pooled container (``invoker/container.py``)."""

    @property
    def kind(self) -> str: ...

    @property
    def state(self) -> enum.Enum: ...


class PoolView(Protocol):
    """What the collector reads of the container pool (``invoker/pool.py``)."""

    @property
    def capacity_mb(self) -> int: ...

    @property
    def used_mb(self) -> int: ...

    def containers(self) -> Sequence[PooledView]: ...

    def retired(self) -> Mapping[str, int]: ...


# The label of each status code (by ``status_code``: a pending record's None and any code
# not known read as a whisk error, as ``ActivationResponse.code`` has it).
_STATUS_LABELS: dict[int | None, str] = {code: status_label(code) for code in STATUS_NAMES}
_WHISK_ERROR_LABEL = status_label(WHISK_ERROR)


def _seconds(value: Any) -> float | None:
    """An annotation in milliseconds as seconds; None if absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(0.0, value / 1000)


class _PoolCollector(Collector):
    """Reads the pool at scrape time: containers by kind and state, and memory."""

    def __init__(self, pool: PoolView) -> None:
        self._pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        counts = Counter((pc.kind, str(pc.state.value)) for pc in self._pool.containers())
        containers = GaugeMetricFamily(
            "squall_invoker_containers",
            "Live containers by runtime kind and state.",
            labels=["kind", "state"],
        )
        for (kind, state), count in sorted(counts.items()):
            containers.add_metric([kind, state], count)
        yield containers
        yield GaugeMetricFamily(
            "squall_invoker_memory_reserved_bytes",
            "Memory limits of the live containers (stem cells and starting ones included).",
            value=self._pool.used_mb * MB,
        )
        yield GaugeMetricFamily(
            "squall_invoker_memory_capacity_bytes",
            "The invoker's user memory: the most its containers may reserve.",
            value=self._pool.capacity_mb * MB,
        )
        retired = CounterMetricFamily(
            "squall_invoker_containers_retired",
            "Containers the MEMORY GUARD retired near their memory limit, by runtime kind.",
            labels=["kind"],
        )
        for kind, count in sorted(self._pool.retired().items()):
            retired.add_metric([kind], count)
        yield retired


class InvokerMetrics:
    """One invoker's families, in a registry of its own (see the module docstring).

    The activation families are counted in plain numbers (``tally.py``: one dict update
    per count, one ``bisect`` per time, on every warm invoke) and rendered as
    Prometheus families only when scraped."""

    def __init__(self, pool: PoolView) -> None:
        self._registry = CollectorRegistry()
        self.activations = CountFamily(
            "squall_invoker_activations",
            "Activations that ended, by runtime kind and status.",
            ["kind", "status"],
        )
        self.starts = CountFamily(
            "squall_invoker_starts",
            "Runs by how they got their container: cold, prewarmed (stem cell) or warm.",
            ["kind", "start"],
        )
        self.wait = TimeFamily(
            "squall_invoker_activation_wait_seconds",
            "From acceptance by the controller until a container took the activation.",
            ["kind"],
            TIME_BUCKETS,
        )
        self.init = TimeFamily(
            "squall_invoker_activation_init_seconds",
            "The /init of cold and prewarmed starts.",
            ["kind"],
            TIME_BUCKETS,
        )
        self.duration = TimeFamily(
            "squall_invoker_activation_duration_seconds",
            "The record's duration: /run, plus /init on a cold or prewarmed start.",
            ["kind"],
            TIME_BUCKETS,
        )
        self._registry.register(
            Tally(self.activations, self.starts, self.wait, self.init, self.duration)
        )
        self._registry.register(_PoolCollector(pool))

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry

    async def refresh(self) -> None:
        """Nothing to await: the pool is read by its collector during the scrape."""

    def observe(self, record: Activation) -> None:
        """Count one final activation record (as the invoker stores it)."""
        # A loop, not a comprehension in a helper, and ``in`` and subscripts, not
        # ``dict.get``, with the milliseconds of a plain non-negative int converted inline
        # (``_seconds`` for anything else): every activation passes here, and each of
        # those is a call (about twenty per record).
        notes: dict[Any, Any] = {}
        for kv in record.annotations:
            if "key" in kv:
                notes[kv["key"]] = kv["value"] if "value" in kv else None  # noqa: SIM401
        kind = notes["kind"] if "kind" in notes else None  # noqa: SIM401
        kind = kind if isinstance(kind, str) and kind else UNKNOWN_KIND
        by_kind = (kind,)
        status = _STATUS_LABELS.get(record.response.status_code, _WHISK_ERROR_LABEL)
        self.activations.add((kind, status))
        ms = notes["waitTime"] if "waitTime" in notes else None  # noqa: SIM401
        wait = ms / 1000 if ms.__class__ is int and ms >= 0 else _seconds(ms)
        if wait is None:
            return  # made without a container (action gone, expired, shut down)
        self.wait.observe(by_kind, wait)
        if "initTime" in notes:
            ms = notes["initTime"]
            init = ms / 1000 if ms.__class__ is int and ms >= 0 else _seconds(ms)
        else:
            init = None
        if init is None:
            start = WARM
        else:
            start = PREWARMED if "prewarmed" in notes and notes["prewarmed"] is True else COLD
            self.init.observe(by_kind, init)
        self.starts.add((kind, start))
        ms = record.duration
        duration = ms / 1000 if ms.__class__ is int and ms >= 0 else _seconds(ms)
        if duration is not None:
            self.duration.observe(by_kind, duration)
