"""Controller metrics: 429s by limit, invocation outcomes, invoker queue lengths read
from a real bus, and several controllers' registries side by side."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from metricsupport import parse, value
from prometheus_client import generate_latest

from squall.bus.memory import MemoryBus
from squall.config import Settings
from squall.controller.throttle import Throttles
from squall.errors import TooManyRequests
from squall.metrics import ControllerMetrics, exposition, metrics_app
from squall.metrics.controller import ACCEPTED, COMPLETED
from squall.metrics.exposition import CONTENT_TYPE
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(":memory:")
    await s.auth.create_subject("guest")
    yield s
    await s.close()


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    b = MemoryBus()
    yield b
    await b.close()


async def test_throttled_requests_are_counted_by_limit(store: SqliteStore, bus: MemoryBus) -> None:
    # Given throttles of 1 invoke a minute, 1 fire a minute, and metrics for them
    metrics = ControllerMetrics(bus, lambda: [])
    settings = Settings(invocations_per_minute=1, concurrent_invocations=5, fires_per_minute=1)
    throttles = Throttles(settings, store.auth, clock=lambda: 600.0, metrics=metrics)
    await throttles.admit_invoke("guest")
    await throttles.admit_fire("guest")
    # When two invokes and one fire are refused
    for admit in (throttles.admit_invoke, throttles.admit_invoke, throttles.admit_fire):
        with pytest.raises(TooManyRequests):
            await admit("guest")
    # Then each is counted under the limit that refused it
    samples = parse((await exposition([metrics])).decode())
    name = "squall_controller_throttled_requests_total"
    assert value(samples, name, reason="invocationsPerMinute") == 2
    assert value(samples, name, reason="firesPerMinute") == 1
    assert value(samples, name, reason="concurrentInvocations") is None


async def test_concurrency_refusals_have_their_own_reason(
    store: SqliteStore, bus: MemoryBus
) -> None:
    # Given one activation in flight and a limit of one
    metrics = ControllerMetrics(bus, lambda: [])
    throttles = Throttles(Settings(concurrent_invocations=1), store.auth, metrics=metrics)
    await throttles.started("guest", "a" * 32)
    # When another invoke is asked for / Then it is counted as a concurrency refusal
    with pytest.raises(TooManyRequests):
        await throttles.admit_invoke("guest")
    samples = parse((await exposition([metrics])).decode())
    name = "squall_controller_throttled_requests_total"
    assert value(samples, name, reason="concurrentInvocations") == 1


async def test_queue_lengths_come_from_the_bus(bus: MemoryBus) -> None:
    # Given three messages waiting for invoker 7 and none for invoker 8
    for n in range(3):
        await bus.send("invoker.7", b"m%d" % n)
    metrics = ControllerMetrics(bus, lambda: ["7", "8"])
    # When scraped / Then each known invoker has its queue length
    samples = parse((await exposition([metrics])).decode())
    name = "squall_controller_invoker_queue_length"
    assert value(samples, name, invoker="invoker7") == 3
    assert value(samples, name, invoker="invoker8") == 0
    # When invoker 7 takes one / Then the next scrape says two
    consumer = await bus.consumer("invoker.7")
    await (await consumer.receive()).ack()
    samples = parse((await exposition([metrics])).decode())
    assert value(samples, name, invoker="invoker7") == 2


async def test_queue_lengths_are_left_out_when_the_bus_cannot_answer() -> None:
    # Given a bus that is closed (every call raises ProviderError)
    bus = MemoryBus()
    metrics = ControllerMetrics(bus, lambda: ["0"])
    name = "squall_controller_invoker_queue_length"
    assert value(parse((await exposition([metrics])).decode()), name, invoker="invoker0") == 0
    await bus.close()
    # When scraped / Then the page still answers, without that figure (not a stale one)
    samples = parse((await exposition([metrics])).decode())
    assert value(samples, name, invoker="invoker0") is None


async def test_controllers_in_one_process_keep_their_own_counts(bus: MemoryBus) -> None:
    # Given two controllers' metrics in one process
    first, second = ControllerMetrics(bus, lambda: []), ControllerMetrics(bus, lambda: [])
    # When each counts different outcomes
    first.invocation(ACCEPTED)
    second.invocation(COMPLETED)
    second.invocation(COMPLETED)
    # Then neither sees the other's, and the global default registry has none of them
    one = parse(generate_latest(first.registry).decode())
    two = parse(generate_latest(second.registry).decode())
    name = "squall_controller_invocations_total"
    assert value(one, name, outcome="accepted") == 1
    assert value(one, name, outcome="completed") is None
    assert value(two, name, outcome="completed") == 2
    assert b"squall_controller" not in generate_latest()


async def test_metrics_app_serves_the_text_format(bus: MemoryBus) -> None:
    # Given a metrics app over a controller's families
    metrics = ControllerMetrics(bus, lambda: ["0"])
    metrics.invocation(ACCEPTED)
    app = metrics_app(metrics)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://metrics"
    ) as client:
        # When scraped
        r = await client.get("/metrics")
        # Then it is Prometheus' text format 0.0.4 with the controller's figures
        assert r.status_code == 200
        assert r.headers["content-type"] == CONTENT_TYPE
        assert "version=0.0.4" in CONTENT_TYPE
        samples = parse(r.text)
        assert value(samples, "squall_controller_invocations_total", outcome="accepted") == 1
        # And only GET /metrics is served
        assert (await client.get("/other")).status_code == 404
        assert (await client.post("/metrics")).status_code == 405
