"""Invoker metrics: activation records counted by status, kind and start; their times in
histograms; containers by state read from a real pool at scrape time."""

from __future__ import annotations

from typing import Any

import pytest
from metricsupport import parse, value
from prometheus_client import generate_latest

from squall.entities.activation import Activation, ActivationResponse, final_record
from squall.invoker.pool import ContainerPool
from squall.metrics import InvokerMetrics, exposition
from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

PY = "python:3.11"
NODE = "nodejs:20"


def record(
    response: ActivationResponse,
    *,
    kind: str | None = PY,
    wait_ms: int | None = 40,
    init_ms: int | None = None,
    prewarmed: bool = False,
    duration_ms: int = 20,
) -> Activation:
    """A final record as the invoker builds it (annotations only when they apply)."""
    notes: list[dict[str, Any]] = [{"key": "path", "value": "guest/a"}]
    if wait_ms is not None:
        notes.append({"key": "waitTime", "value": wait_ms})
    if kind is not None:
        notes.append({"key": "kind", "value": kind})
    if init_ms is not None:
        notes.append({"key": "initTime", "value": init_ms})
        if prewarmed:
            notes.append({"key": "prewarmed", "value": True})
    return final_record(
        namespace="guest",
        name="a",
        subject="guest",
        activation_id="0" * 32,
        start=1_000,
        end=1_000 + duration_ms,
        response=response,
        annotations=notes,
    )


@pytest.fixture
def pool(factory: ProcessContainerFactory) -> ContainerPool:
    return ContainerPool(factory, capacity_mb=1024)


async def test_records_are_counted_by_status_kind_and_start(pool: ContainerPool) -> None:
    metrics = InvokerMetrics(pool)
    # Given a cold start, a prewarmed start, two warm runs and three failures
    metrics.observe(record(ActivationResponse.ok({}), init_ms=60, duration_ms=80))
    metrics.observe(record(ActivationResponse.ok({}), kind=NODE, init_ms=9, prewarmed=True))
    metrics.observe(record(ActivationResponse.ok({"error": "bad"})))
    metrics.observe(record(ActivationResponse.ok({})))
    metrics.observe(record(ActivationResponse.developer_error("boom"), kind=NODE))
    # ...one the invoker recorded without a container (the action was gone)
    metrics.observe(record(ActivationResponse.whisk_error("gone"), kind=None, wait_ms=None))
    # When scraped
    samples = parse((await exposition([metrics])).decode())
    # Then activations are counted by kind and OpenWhisk's four statuses
    total = "squall_invoker_activations_total"
    assert value(samples, total, kind=PY, status="success") == 2
    assert value(samples, total, kind=PY, status="application_error") == 1
    assert value(samples, total, kind=NODE, status="success") == 1
    assert value(samples, total, kind=NODE, status="action_developer_error") == 1
    assert value(samples, total, kind="unknown", status="whisk_internal_error") == 1
    # And starts by how the container was got (nothing for the one without a container)
    starts = "squall_invoker_starts_total"
    assert value(samples, starts, kind=PY, start="cold") == 1
    assert value(samples, starts, kind=PY, start="warm") == 2
    assert value(samples, starts, kind=NODE, start="prewarmed") == 1
    assert value(samples, starts, kind=NODE, start="warm") == 1
    assert value(samples, starts, kind="unknown", start="warm") is None
    # And the histograms saw the times in seconds: waits of every run, inits of cold and
    # prewarmed starts, durations of every run
    wait = "squall_invoker_activation_wait_seconds"
    assert value(samples, f"{wait}_count", kind=PY) == 3
    assert value(samples, f"{wait}_sum", kind=PY) == pytest.approx(0.12)
    init = "squall_invoker_activation_init_seconds"
    assert value(samples, f"{init}_count", kind=PY) == 1
    assert value(samples, f"{init}_sum", kind=PY) == pytest.approx(0.06)
    assert value(samples, f"{init}_bucket", kind=PY, le="0.05") == 0
    assert value(samples, f"{init}_bucket", kind=PY, le="0.1") == 1
    assert value(samples, f"{init}_count", kind=NODE) == 1
    duration = "squall_invoker_activation_duration_seconds"
    assert value(samples, f"{duration}_sum", kind=PY) == pytest.approx(0.12)
    assert value(samples, f"{duration}_count", kind=NODE) == 2


async def test_times_that_are_not_plain_milliseconds(pool: ContainerPool) -> None:
    metrics = InvokerMetrics(pool)
    # Given records whose times are a float, negative (clock skew), a bool, a string, an
    # annotation without a value: the plain int's fast conversion takes none of them
    ok = ActivationResponse.ok({})
    metrics.observe(record(ok, kind="a", wait_ms=1500.5, init_ms=-5))  # type: ignore[arg-type]
    metrics.observe(record(ok, kind="b", wait_ms=True, init_ms=3))
    metrics.observe(record(ok, kind="c", wait_ms=-7, init_ms="9"))  # type: ignore[arg-type]
    valueless = record(ok, kind="d")
    valueless.annotations.append({"key": "initTime"})
    metrics.observe(valueless)
    samples = parse((await exposition([metrics])).decode())
    wait = "squall_invoker_activation_wait_seconds"
    init = "squall_invoker_activation_init_seconds"
    starts = "squall_invoker_starts_total"
    # Then a float is converted, a negative time counts as 0, a bool is no time (the
    # record then has no start: as one made without a container), a string is no init
    assert value(samples, f"{wait}_sum", kind="a") == pytest.approx(1.5005)
    assert value(samples, f"{init}_sum", kind="a") == 0
    assert value(samples, starts, kind="a", start="cold") == 1
    assert value(samples, f"{wait}_count", kind="b") is None
    assert value(samples, starts, kind="b", start="cold") is None
    assert value(samples, f"{wait}_sum", kind="c") == 0
    assert value(samples, f"{init}_count", kind="c") is None
    assert value(samples, starts, kind="c", start="warm") == 1
    assert value(samples, starts, kind="d", start="warm") == 1


async def test_containers_are_read_from_the_pool_at_scrape_time(pool: ContainerPool) -> None:
    metrics = InvokerMetrics(pool)
    name = "squall_invoker_containers"
    # Given an empty pool / Then no containers and nothing reserved
    samples = parse(generate_latest(metrics.registry).decode())
    assert not [k for k in samples if k[0] == name]
    assert value(samples, "squall_invoker_memory_reserved_bytes") == 0
    assert value(samples, "squall_invoker_memory_capacity_bytes") == 1024 * 1024 * 1024
    # When a real container starts for an action / Then it shows as initializing
    key = ("guest", "/guest/a", "1-x")
    pc, cold = await pool.acquire(key, PY, 256, 1)
    assert cold
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, name, kind=PY, state="initializing") == 1
    assert value(samples, "squall_invoker_memory_reserved_bytes") == 256 * 1024 * 1024
    # When its /init succeeded / Then it is busy with its run
    pool.initialized(pc)
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, name, kind=PY, state="busy") == 1
    # When the run ended / Then it is ready, and nothing else
    pool.release(pc)
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, name, kind=PY, state="ready") == 1
    assert value(samples, name, kind=PY, state="busy") is None
    # When it is removed / Then it is gone from the page
    again, _ = await pool.acquire(key, PY, 256, 1)
    pool.release(again, destroy=True)
    samples = parse(generate_latest(metrics.registry).decode())
    assert not [k for k in samples if k[0] == name]
    assert value(samples, "squall_invoker_memory_reserved_bytes") == 0
    await pool.close()
