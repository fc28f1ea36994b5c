"""Figures of a namespace's activations over time: what the dashboard plots.

Both providers read the same five indexed fields of each record in the window
(``start``, entity path, ``response.status``, ``duration``, the ``initTime``
annotation) and hand them to :func:`summarize`, so their answers are identical by
construction; the contract suite checks the figures themselves.

Definitions (the same everywhere the figures are shown):

- A record counts in the bucket of its ``start``: ``bucket = start - start % bucket_ms``.
- ``statuses`` counts every record by ``response.status`` (OpenWhisk's four outcomes,
  plus ``pending`` for an accepted activation that has not ended).
- Latency covers ended action activations: records with a numeric ``duration`` that are
  not pending (a trigger's record has no ``duration``). Percentiles are nearest-rank:
  the p-th percentile of n sorted durations is the ``ceil(p * n / 100)``-th smallest,
  always one of the measured values.
- ``cold`` counts the ended activations that carry an ``initTime`` annotation (their
  container was initialised for them, as OpenWhisk marks a cold start); ``warm`` the
  other ended ones; ``init_ms`` sums the ``initTime`` of the cold ones.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PENDING = "pending"
PERCENTILES = (50, 90, 99)
# How many actions the busiest and slowest lists keep.
TOP_ACTIONS = 10

StatsRow = tuple[int, str, str | None, float | None, float | None]
"""(start, entity path, status, duration ms, initTime ms) of one record."""


def percentile(ordered: list[float], p: int) -> float | None:
    """Nearest-rank ``p``-th percentile of ascending ``ordered``; None when empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p * len(ordered) / 100))
    return ordered[rank - 1]


@dataclass(slots=True)
class Bucket:
    """The activations that started in ``[start, start + bucket_ms)``."""

    start: int
    statuses: dict[str, int] = field(default_factory=dict)
    cold: int = 0
    warm: int = 0
    init_ms: float = 0
    # Nearest-rank percentiles of the ended activations' durations, ms (None: none ended).
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "statuses": self.statuses,
            "cold": self.cold,
            "warm": self.warm,
            "initMs": self.init_ms,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
        }


@dataclass(frozen=True, slots=True)
class ActionFigures:
    """One action over the whole window: how often, how many did not succeed, how fast."""

    name: str
    count: int
    errors: int
    p50: float | None
    p90: float | None
    max_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "errors": self.errors,
            "p50": self.p50,
            "p90": self.p90,
            "max": self.max_ms,
        }


@dataclass(frozen=True, slots=True)
class ActivationStats:
    """A window's figures: ``buckets`` ascending, only those with activations;
    ``busiest`` (by count, then name) and ``slowest`` (by p90, then name) hold at most
    :data:`TOP_ACTIONS` actions each; ``total`` counts every record of the window."""

    bucket_ms: int
    total: int
    buckets: list[Bucket]
    busiest: list[ActionFigures]
    slowest: list[ActionFigures]

    def to_json(self) -> dict[str, Any]:
        return {
            "bucketMs": self.bucket_ms,
            "total": self.total,
            "buckets": [b.to_json() for b in self.buckets],
            "busiest": [a.to_json() for a in self.busiest],
            "slowest": [a.to_json() for a in self.slowest],
        }


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def summarize(rows: Iterable[StatsRow], bucket_ms: int) -> ActivationStats:
    """The figures of ``rows`` (any order) in buckets of ``bucket_ms`` milliseconds."""
    if bucket_ms <= 0:
        raise ValueError(f"bucket_ms must be positive (got {bucket_ms})")
    buckets: dict[int, Bucket] = {}
    durations: dict[int, list[float]] = defaultdict(list)
    per_action: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    total = 0
    for start, name, status, duration, init_time in rows:
        total += 1
        key = start - start % bucket_ms
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = Bucket(key)
        label = status or "unknown"
        bucket.statuses[label] = bucket.statuses.get(label, 0) + 1
        counts[name] += 1
        if label not in ("success", PENDING):
            errors[name] += 1
        took = _number(duration)
        if took is None or label == PENDING:
            continue
        durations[key].append(took)
        per_action[name].append(took)
        init = _number(init_time)
        if init is None:
            bucket.warm += 1
        else:
            bucket.cold += 1
            bucket.init_ms += init
    for key, values in durations.items():
        values.sort()
        bucket = buckets[key]
        bucket.p50, bucket.p90, bucket.p99 = (percentile(values, p) for p in PERCENTILES)
    figures = []
    for name, count in counts.items():
        took_ms = sorted(per_action.get(name, ()))
        figures.append(
            ActionFigures(
                name,
                count,
                errors.get(name, 0),
                percentile(took_ms, 50),
                percentile(took_ms, 90),
                took_ms[-1] if took_ms else None,
            )
        )
    busiest = sorted(figures, key=lambda a: (-a.count, a.name))[:TOP_ACTIONS]
    timed = [a for a in figures if a.p90 is not None]
    slowest = sorted(timed, key=lambda a: (-(a.p90 or 0), a.name))[:TOP_ACTIONS]
    return ActivationStats(
        bucket_ms, total, [buckets[k] for k in sorted(buckets)], busiest, slowest
    )
