"""``GET /metrics`` on the in-process platform: after cold, prewarmed and warm invokes, a
non-blocking one, a blocking one that outlived its wait, and 429s, standalone's one page
carries the controller's and the invoker's families with the right counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from apisupport import BASE_URL, NS, assert_error, get_activation, node_action, poll, python_action
from prometheus_client.parser import text_string_to_metric_families

from squall.cli.standalone import Standalone
from squall.config import Settings
from squall.invoker.container import State

pytestmark = pytest.mark.anyio

PY = "python:3.13"  # python:default, the kind python_action() creates
NODE = "nodejs:20"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[Standalone]:
    # A platform of its own: 7 invokes a minute (one minute for the whole test), so the
    # counts below are this test's alone; one python stem cell of 256 MB.
    settings = Settings(
        home=tmp_path, keep_warm_s=60, invocations_per_minute=7, stem_cells=f"{PY}@256x1"
    )
    platform = await Standalone.start(settings)
    platform.controller.throttles.clock = lambda: 600.0
    try:
        yield platform
    finally:
        await platform.close()


async def _prewarmed(system: Standalone) -> bool | None:
    cells = system.invoker.pool.stem_cells()
    return True if cells and all(pc.state is State.PREWARMED for pc in cells) else None


async def test_metrics_count_invokes_starts_and_throttles(system: Standalone) -> None:
    uuid, key = system.guest_auth.split(":", 1)
    transport = httpx.ASGITransport(app=system.app)
    async with (
        httpx.AsyncClient(transport=transport, base_url=BASE_URL, auth=(uuid, key)) as client,
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as anonymous,
    ):
        # Given a python action of 128 MB (no stem cell of that shape: a cold start), one
        # of 256 MB (the stem cell's shape) and a slow Node.js action
        small = python_action(limits={"memory": 128})
        slow = node_action("function main() { return new Promise(ok => setTimeout(ok, 400)) }")
        for name, body in (("small", small), ("big", python_action()), ("slow", slow)):
            assert (await client.put(f"{NS}/actions/{name}", json=body)).status_code == 200
        await poll(lambda: _prewarmed(system), what="the python stem cell")
        # When the big one runs once (prewarmed: no Python container of the namespace yet)
        # and the small one twice (cold, then warm). In that order: once the namespace's
        # zygote runs, its cold starts are forked and the stem cell is left to others
        # (the pool's rule 3).
        for name in ("big", "small", "small"):
            r = await client.post(f"{NS}/actions/{name}", params={"blocking": "true"})
            assert r.status_code == 200, r.text
        # ...the slow one blocking with a shorter wait (202), then non-blocking (warm)
        r = await client.post(f"{NS}/actions/slow", params={"blocking": "true", "timeout": "50"})
        assert r.status_code == 202, r.text
        await get_activation(client, r.json()["activationId"])
        r = await client.post(f"{NS}/actions/slow")
        assert r.status_code == 202, r.text
        await get_activation(client, r.json()["activationId"])
        # ...and the 5 invokes so far plus 2 more reach the limit of 7: two more are 429
        for name in ("small", "small"):
            r = await client.post(f"{NS}/actions/{name}", params={"blocking": "true"})
            assert r.status_code == 200, r.text
        for _ in range(2):
            assert_error(await client.post(f"{NS}/actions/small"), 429)
        # Then /metrics answers without credentials in the text format
        r = await anonymous.get("/metrics")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        samples = parse(r.text)

    # And the controller counted each outcome and each refusal
    invocations = "squall_controller_invocations_total"
    assert value(samples, invocations, outcome="completed") == 5
    assert value(samples, invocations, outcome="timeout") == 1
    assert value(samples, invocations, outcome="accepted") == 1
    assert value(samples, invocations, outcome="failed") is None
    throttled = "squall_controller_throttled_requests_total"
    assert value(samples, throttled, reason="invocationsPerMinute") == 2
    # And the invoker's queue is empty again (everything was taken)
    assert value(samples, "squall_controller_invoker_queue_length", invoker="invoker0") == 0
    # And the invoker counted every activation by kind and status, and how each started
    activations = "squall_invoker_activations_total"
    assert value(samples, activations, kind=PY, status="success") == 5
    assert value(samples, activations, kind=NODE, status="success") == 2
    starts = "squall_invoker_starts_total"
    assert value(samples, starts, kind=PY, start="cold") == 1
    assert value(samples, starts, kind=PY, start="prewarmed") == 1
    assert value(samples, starts, kind=PY, start="warm") == 3
    assert value(samples, starts, kind=NODE, start="warm") == 1
    assert value(samples, starts, kind=NODE, start="cold") == 1
    assert value(samples, "squall_invoker_activation_init_seconds_count", kind=PY) == 2
    assert value(samples, "squall_invoker_activation_wait_seconds_count", kind=PY) == 5
    assert value(samples, "squall_invoker_activation_duration_seconds_count", kind=NODE) == 2
    slow_s = value(samples, "squall_invoker_activation_duration_seconds_sum", kind=NODE)
    assert slow_s is not None and slow_s >= 0.8
    # And the containers by state: the two python actions' and the slow one's are ready
    containers = "squall_invoker_containers"
    assert value(samples, containers, kind=PY, state="ready") == 2
    assert value(samples, containers, kind=NODE, state="ready") == 1
