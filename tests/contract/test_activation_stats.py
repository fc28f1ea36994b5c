"""ActivationStore.stats contract: per-minute figures of a namespace's activations."""

from __future__ import annotations

from typing import Any

import pytest

from squall.entities.activation import Activation, from_builtins
from squall.store.contracts import ActivationQuery
from squall.store.stats import TOP_ACTIONS

from .conftest import Stores

pytestmark = pytest.mark.anyio

NS = "guest"
MINUTE = 60_000
T0 = 1_700_000_040_000  # a whole minute


def record(
    activation_id: str,
    start: int,
    *,
    name: str = "hello",
    status: str = "success",
    duration: int | None = 10,
    init_time: int | None = None,
    namespace: str = NS,
    result: Any = None,
) -> Activation:
    """A record; without a ``duration``, a trigger's (``end`` 0, no duration)."""
    annotations: list[dict[str, Any]] = [
        {"key": "path", "value": f"{namespace}/{name}"},
        {"key": "waitTime", "value": 2},
        {"key": "kind", "value": "nodejs:20"},
        {"key": "limits", "value": {"memory": 256, "timeout": 60000}},
    ]
    if init_time is not None:
        annotations.append({"key": "initTime", "value": init_time})
    out: dict[str, Any] = {
        "namespace": namespace,
        "name": name,
        "activationId": activation_id,
        "start": start,
        "end": 0 if duration is None else start + duration,
        "response": {"status": status, "success": status == "success", "result": result or {}},
        "logs": [],
        "annotations": annotations,
    }
    if duration is not None:
        out["duration"] = duration
    return from_builtins(out)


def aid(n: int) -> str:
    return f"{n:032x}"


async def test_figures_per_minute_of_a_known_set(stores: Stores) -> None:
    # Given, in the first minute, 10 successes of "hello" lasting 1..10 ms, the first two
    # cold (init 30 and 50 ms), an application error, a pending one and a trigger's record
    puts = [
        record(aid(i), T0 + i, duration=i, init_time=(30 if i == 1 else 50 if i == 2 else None))
        for i in range(1, 11)
    ]
    puts.append(record(aid(11), T0 + 11, name="bad", status="application error", duration=40))
    puts.append(record(aid(12), T0 + 12, name="slow", status="pending", duration=0))
    puts.append(record(aid(13), T0 + 13, name="fire", duration=None))
    # and, in the third minute, one developer error of "bad" lasting 100 ms
    puts.append(
        record(
            aid(14), T0 + 2 * MINUTE + 5, name="bad", status="action developer error", duration=100
        )
    )
    for r in puts:
        await stores.activations.put(r)

    # When the namespace's figures are asked per minute
    stats = await stores.activations.stats(ActivationQuery(NS, since=T0, upto=T0 + 3 * MINUTE))

    # Then only the two minutes with activations have a bucket, in order
    assert stats.total == 14
    assert [b.start for b in stats.buckets] == [T0, T0 + 2 * MINUTE]
    first, third = stats.buckets
    assert first.statuses == {"success": 11, "application error": 1, "pending": 1}
    # And latency covers the 11 ended action activations (1..10 ms and 40 ms), nearest rank
    assert (first.p50, first.p90, first.p99) == (6, 10, 40)
    assert (first.cold, first.warm, first.init_ms) == (2, 9, 80)
    assert third.statuses == {"action developer error": 1}
    assert (third.p50, third.p90, third.p99, third.cold, third.warm) == (100, 100, 100, 0, 1)
    # And the busiest and slowest actions say so
    assert [(a.name, a.count, a.errors) for a in stats.busiest] == [
        ("hello", 10, 0),
        ("bad", 2, 2),
        ("fire", 1, 0),
        ("slow", 1, 0),
    ]
    assert [(a.name, a.p90, a.max_ms) for a in stats.slowest] == [
        ("bad", 100, 100),
        ("hello", 9, 10),
    ]


async def test_only_the_namespace_and_window_asked_for(stores: Stores) -> None:
    # Given activations of two namespaces, of two actions, over three minutes
    await stores.activations.put(record(aid(1), T0, name="a"))
    await stores.activations.put(record(aid(2), T0 + MINUTE, name="b"))
    await stores.activations.put(record(aid(3), T0 + 2 * MINUTE, name="a"))
    await stores.activations.put(record(aid(4), T0 + MINUTE, namespace="other", name="a"))
    # When the figures of a window, or of one action, are asked
    window = await stores.activations.stats(
        ActivationQuery(NS, since=T0 + MINUTE, upto=T0 + 2 * MINUTE), bucket_ms=MINUTE
    )
    one = await stores.activations.stats(ActivationQuery(NS, name="a"), bucket_ms=3 * MINUTE)
    nobody = await stores.activations.stats(ActivationQuery("nobody"))
    # Then the other namespace never counts, and the bounds are inclusive
    assert [(b.start, b.statuses) for b in window.buckets] == [
        (T0 + MINUTE, {"success": 1}),
        (T0 + 2 * MINUTE, {"success": 1}),
    ]
    assert one.total == 2
    assert sum(b.statuses["success"] for b in one.buckets) == 2
    assert all(b.start % (3 * MINUTE) == 0 for b in one.buckets)
    assert (nobody.total, nobody.buckets, nobody.busiest) == (0, [], [])


async def test_a_final_record_replacing_a_pending_one_updates_the_figures(stores: Stores) -> None:
    # Given a pending record
    await stores.activations.put_pending(record(aid(1), T0, status="pending", duration=0))
    before = await stores.activations.stats(ActivationQuery(NS))
    # When its final record, a cold start, replaces it
    ended = record(aid(1), T0 + 1, duration=25, init_time=12)
    assert await stores.activations.put_unless_final(ended)
    after = await stores.activations.stats(ActivationQuery(NS))
    # Then the figures follow the stored record
    assert before.buckets[0].statuses == {"pending": 1}
    assert before.buckets[0].p50 is None
    (bucket,) = after.buckets
    assert bucket.statuses == {"success": 1}
    assert (bucket.p50, bucket.cold, bucket.init_ms) == (25, 1, 12)


async def test_a_result_that_looks_like_an_annotation_is_not_a_cold_start(
    stores: Stores,
) -> None:
    # Given warm activations whose result or annotations' strings mimic an initTime one
    mimic = {"key": "initTime", "value": 999}
    await stores.activations.put(record(aid(1), T0, result=mimic))
    await stores.activations.put(
        record(aid(2), T0 + 1, result={"s": '{"key":"initTime","value":7}'})
    )
    tricky = record(aid(3), T0 + 2)
    tricky.annotations[0]["value"] = 'guest/{"key":"initTime","value":5}'
    await stores.activations.put(tricky)
    # When the figures are asked / Then none counts as cold
    (bucket,) = (await stores.activations.stats(ActivationQuery(NS))).buckets
    assert (bucket.cold, bucket.warm, bucket.init_ms) == (0, 3, 0)


async def test_busiest_and_slowest_keep_the_top_actions(stores: Stores) -> None:
    # Given more actions than the lists keep, action i run i times lasting i ms
    n = 0
    for i in range(1, TOP_ACTIONS + 3):
        for _ in range(i):
            n += 1
            await stores.activations.put(record(aid(n), T0 + n, name=f"a{i:02}", duration=i))
    # When the figures are asked
    stats = await stores.activations.stats(ActivationQuery(NS))
    # Then both lists hold the top TOP_ACTIONS, biggest first
    expected = [f"a{i:02}" for i in range(TOP_ACTIONS + 2, 2, -1)]
    assert [a.name for a in stats.busiest] == expected
    assert [a.name for a in stats.slowest] == expected


async def test_pruned_records_leave_the_figures(stores: Stores) -> None:
    # Given two records a minute apart, the first pruned by retention
    await stores.activations.put(record(aid(1), T0))
    await stores.activations.put(record(aid(2), T0 + MINUTE))
    assert await stores.activations.prune(T0 + 1) == 1
    # When the figures are asked / Then only the kept record counts
    stats = await stores.activations.stats(ActivationQuery(NS))
    assert [b.start for b in stats.buckets] == [T0 + MINUTE]
