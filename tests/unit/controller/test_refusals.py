"""Throttled requests per namespace and minute (squall/controller/refusals.py)."""

from __future__ import annotations

from squall.controller.refusals import KEEP_MINUTES, MINUTE_MS, Refusals


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_040.0  # a whole minute, in seconds

    def __call__(self) -> float:
        return self.now


def test_counts_per_namespace_minute_and_limit() -> None:
    # Given refusals of two namespaces over two minutes
    clock = Clock()
    refusals = Refusals(clock)
    first = int(clock.now * 1000)
    refusals.refused("a", "invocationsPerMinute")
    refusals.refused("a", "invocationsPerMinute")
    refusals.refused("b", "firesPerMinute")
    clock.now += 61
    refusals.refused("a", "concurrentInvocations")
    # When a namespace's recent refusals are read / Then per minute and limit, its own only
    assert refusals.recent("a", first) == [
        (first, "invocationsPerMinute", 2),
        (first + MINUTE_MS, "concurrentInvocations", 1),
    ]
    # (a bound inside a minute includes that whole minute)
    assert refusals.recent("a", first + 1) == refusals.recent("a", first)
    assert refusals.recent("a", first + MINUTE_MS) == [
        (first + MINUTE_MS, "concurrentInvocations", 1)
    ]
    assert refusals.recent("b", first) == [(first, "firesPerMinute", 1)]
    assert refusals.recent("nobody", first) == []


def test_minutes_older_than_a_day_are_dropped() -> None:
    clock = Clock()
    refusals = Refusals(clock)
    refusals.refused("a", "invocationsPerMinute")
    clock.now += KEEP_MINUTES * 60
    assert refusals.recent("a", 0) == []
