"""Counters and histograms kept as plain numbers, made into metric families at scrape time.

The activation families are touched on every warm invoke (the controller's outcome, the
invoker's count, start and times): through ``prometheus_client``'s own Counter and
Histogram that is, per invoke, seven ``MutexValue.inc`` under a lock each, two
observability checks per call, a linear scan of the buckets in Python per observation and
a child lookup per family — ~35 Python calls of a warm invoke's ~390 in the server
(bench/README.md "Issue 12, part 9"). Here an increment is one dict update and an
observation one ``bisect`` and two list updates; the families, with the same names,
samples, labels and ``_created`` series as ``prometheus_client`` renders them, are built
only when a scrape collects them (:class:`Tally` is a registry ``Collector``).

Concurrency: updated and collected on the event loop's thread only, as the families'
users are (no lock: nothing here awaits or runs on another thread). Children are never
removed: label values come from small fixed sets (kinds, statuses, outcomes).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import cast

from prometheus_client import metrics as _prometheus
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]
# prometheus_client's spelling of a bucket's bound ("0.001", "1.0", "+Inf"); untyped there.
_le = cast(Callable[[float], str], floatToGoString)


class CountFamily:
    """A labelled counter: ``add(labels)`` counts one (``amount`` more)."""

    __slots__ = ("created", "doc", "labelnames", "name", "values")

    def __init__(self, name: str, doc: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self.values: dict[Labels, float] = {}
        self.created: dict[Labels, float] = {}

    def add(self, labels: Labels, amount: float = 1.0) -> None:
        values = self.values
        if labels in values:
            values[labels] += amount
        else:
            self.created[labels] = time.time()
            values[labels] = amount

    def family(self) -> Metric:
        """The family as ``prometheus_client.Counter`` renders it."""
        family = Metric(self.name, self.doc, "counter")
        for labels, value in self.values.items():
            named = dict(zip(self.labelnames, labels, strict=True))
            family.add_sample(self.name + "_total", named, value)
            if _prometheus._use_created:
                family.add_sample(self.name + "_created", named, self.created[labels])
        return family


class _Times:
    __slots__ = ("buckets", "created", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size  # per bucket, not cumulative; the last one is +Inf
        self.sum = 0.0
        self.created = time.time()


class TimeFamily:
    """A labelled histogram over ``bounds`` (ascending, non-negative; +Inf is added):
    ``observe(labels, value)``."""

    __slots__ = ("_les", "bounds", "children", "doc", "labelnames", "name")

    def __init__(
        self, name: str, doc: str, labelnames: Sequence[str], bounds: Sequence[float]
    ) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(float(b) for b in bounds)
        self._les = [_le(b) for b in (*self.bounds, float("inf"))]
        self.children: dict[Labels, _Times] = {}

    def observe(self, labels: Labels, value: float) -> None:
        times = self.children.get(labels)
        if times is None:
            times = self.children[labels] = _Times(len(self.bounds) + 1)
        # The first bucket whose bound is >= value, as Prometheus' "le"; +Inf past the last.
        times.buckets[bisect_left(self.bounds, value)] += 1
        times.sum += value

    def family(self) -> Metric:
        """The family as ``prometheus_client.Histogram`` renders it."""
        family = Metric(self.name, self.doc, "histogram")
        for labels, times in self.children.items():
            named = dict(zip(self.labelnames, labels, strict=True))
            count = 0.0
            for le, n in zip(self._les, times.buckets, strict=True):
                count += n
                family.add_sample(self.name + "_bucket", {**named, "le": le}, count)
            family.add_sample(self.name + "_count", named, count)
            family.add_sample(self.name + "_sum", named, times.sum)
            if _prometheus._use_created:
                family.add_sample(self.name + "_created", named, times.created)
        return family


class Tally(Collector):
    """A registry collector of :class:`CountFamily` and :class:`TimeFamily` families,
    yielded in the order given."""

    def __init__(self, *families: CountFamily | TimeFamily) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.family()
