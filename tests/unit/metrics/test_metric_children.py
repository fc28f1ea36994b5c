"""Children: a family's labelled children, looked up once per label values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from squall.metrics.children import Children


def test_a_kept_child_is_the_familys_own_and_counts_in_its_samples() -> None:
    # Given a labelled counter and its children
    registry = CollectorRegistry()
    family = Counter("runs", "Runs.", ["kind", "status"], registry=registry)
    children = Children(family)
    # When the same values are asked for twice and other values once
    first = children("nodejs:20", "success")
    again = children("nodejs:20", "success")
    other = children("python:3", "success")
    first.inc()
    again.inc()
    other.inc(3)
    # Then the same child came back, it is the family's, and the samples say so
    assert first is again is family.labels("nodejs:20", "success")
    assert other is not first
    assert registry.get_sample_value("runs_total", {"kind": "nodejs:20", "status": "success"}) == 2
    assert registry.get_sample_value("runs_total", {"kind": "python:3", "status": "success"}) == 3
