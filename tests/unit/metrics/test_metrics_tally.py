"""Tally: counters and histograms in plain numbers render as prometheus_client's own."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from squall.metrics.tally import CountFamily, Tally, TimeFamily

BOUNDS = (0.001, 0.0025, 0.01, 1.0, 300.0)
# The ``_created`` series hold the time each child was made: equal up to that time.
CREATED = re.compile(rb"^(\w+_created\{[^}]*\}) \S+$", re.M)


def rendered(registry: CollectorRegistry) -> bytes:
    return CREATED.sub(rb"\1 T", generate_latest(registry))


def test_families_render_byte_for_byte_as_prometheus_client_renders_them() -> None:
    # Given the same counts and times in prometheus_client's families and in a Tally
    theirs = CollectorRegistry()
    doc = "Things, by kind and status."
    counter = Counter("squall_x", doc, ["kind", "status"], registry=theirs)
    histogram = Histogram("squall_x_seconds", "Times.", ["kind"], buckets=BOUNDS, registry=theirs)
    empty = Counter("squall_y", "Never counted.", ["outcome"], registry=theirs)
    ours = CollectorRegistry()
    count = CountFamily("squall_x", doc, ["kind", "status"])
    times = TimeFamily("squall_x_seconds", "Times.", ["kind"], BOUNDS)
    ours.register(Tally(count, times, CountFamily("squall_y", "Never counted.", ["outcome"])))
    assert empty is not None
    for kind, status, seconds in [
        ("python:3.13", "success", 0.0004),
        ("nodejs:20", "success", 0.001),  # on a bound: in its bucket ("le")
        ("python:3.13", "application_error", 0.02),
        ("python:3.13", "success", 2.5),
        ("nodejs:20", "success", 301.0),  # past the last bound: +Inf only
        ("python:3.13", "success", 0.0),
    ]:
        counter.labels(kind, status).inc()
        histogram.labels(kind).observe(seconds)
        count.add((kind, status))
        times.observe((kind,), seconds)
    counter.labels("nodejs:20", "success").inc(3)
    count.add(("nodejs:20", "success"), 3)
    # Then both pages are the same bytes (created times aside)
    assert rendered(ours) == rendered(theirs)
    assert b'squall_x_seconds_bucket{kind="nodejs:20",le="+Inf"} 2.0' in rendered(ours)


def test_a_family_never_counted_renders_its_help_and_type_only() -> None:
    registry = CollectorRegistry()
    registry.register(Tally(TimeFamily("squall_t_seconds", "Times.", ["kind"], BOUNDS)))
    text = generate_latest(registry).decode()
    assert text == "# HELP squall_t_seconds Times.\n# TYPE squall_t_seconds histogram\n"
