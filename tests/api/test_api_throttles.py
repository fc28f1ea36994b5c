"""Namespace throttles through the API: OpenWhisk's 429 answers, counters back to zero."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from apisupport import BASE_URL, NS, assert_error, get_activation, node_action, poll

from squall.cli.standalone import Standalone
from squall.config import Settings

pytestmark = pytest.mark.anyio

SLOW = "function main() { return new Promise((ok) => setTimeout(() => ok({}), 600)); }"
THROWS = "function main() { throw new Error('x'); }"


@pytest.fixture
async def tight(tmp_path: Path) -> AsyncIterator[tuple[Standalone, httpx.AsyncClient]]:
    # A platform of its own with small limits: 5 invokes a minute, 2 in flight.
    settings = Settings(
        home=tmp_path, keep_warm_s=60, invocations_per_minute=5, concurrent_invocations=2
    )
    system = await Standalone.start(settings)
    system.controller.throttles.clock = lambda: 600.0  # one minute for the whole test
    uuid, key = system.guest_auth.split(":", 1)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, auth=(uuid, key)
    )
    try:
        yield system, client
    finally:
        await client.aclose()
        await system.close()


async def test_invocations_per_minute(tight: tuple[Standalone, httpx.AsyncClient]) -> None:
    _, client = tight
    # Given an action and a limit of 5 invokes a minute
    assert (
        await client.put(f"{NS}/actions/a", json=node_action("function main(){return {}}"))
    ).status_code == 200
    for _ in range(5):
        r = await client.post(f"{NS}/actions/a", params={"blocking": "true"})
        assert r.status_code == 200, r.text
    # When a sixth arrives in the same minute / Then 429 with OpenWhisk's message
    r = await client.post(f"{NS}/actions/a", params={"blocking": "true"})
    assert_error(r, 429, "Too many requests in the last minute (count: 6, allowed: 5).")
    # And nothing was accepted for it: still five activations
    r = await client.get(f"{NS}/activations", params={"count": "true"})
    assert r.json() == {"activations": 5}


async def test_concurrent_invocations_return_to_zero(
    tight: tuple[Standalone, httpx.AsyncClient],
) -> None:
    system, client = tight
    # Given a slow action and two runs of it in flight
    assert (await client.put(f"{NS}/actions/slow", json=node_action(SLOW))).status_code == 200
    ids = [(await client.post(f"{NS}/actions/slow")).json()["activationId"] for _ in range(2)]
    # When a third is asked for / Then 429 for concurrency
    r = await client.post(f"{NS}/actions/slow")
    assert_error(r, 429, "Too many concurrent requests in flight (count: 2, allowed: 2).")
    # When both end / Then the counter is back to zero
    for activation_id in ids:
        await get_activation(client, activation_id)
    await poll(lambda: _zero(system), what="in-flight count back to zero")


async def _zero(system: Standalone) -> bool | None:
    return True if system.controller.throttles.in_flight("guest") == 0 else None


async def test_failures_do_not_leak_concurrency(
    tight: tuple[Standalone, httpx.AsyncClient],
) -> None:
    system, client = tight
    # Given an action that always fails as a developer error
    assert (await client.put(f"{NS}/actions/bad", json=node_action(THROWS))).status_code == 200
    # When it runs and fails twice (the concurrency limit)
    for _ in range(2):
        r = await client.post(f"{NS}/actions/bad", params={"blocking": "true"})
        assert r.status_code == 502, r.text
    # Then nothing is left in flight and a further invoke is admitted
    await poll(lambda: _zero(system), what="in-flight count back to zero")
    r = await client.post(f"{NS}/actions/bad", params={"blocking": "true"})
    assert r.status_code == 502


async def test_limits_per_namespace_from_the_store(tmp_path: Path) -> None:
    # Given a namespace whose stored limits allow 1 invoke a minute
    system = await Standalone.start(Settings(home=tmp_path))
    system.controller.throttles.clock = lambda: 600.0  # one minute for the whole test
    try:
        await system.store.auth.set_limits("guest", {"invocationsPerMinute": 1})
        uuid, key = system.guest_auth.split(":", 1)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, auth=(uuid, key)
        ) as client:
            body = node_action("function main(){return {}}")
            assert (await client.put(f"{NS}/actions/a", json=body)).status_code == 200
            # Then the namespace's limits show it, and the second invoke is refused
            limits = (await client.get(f"{NS}/limits")).json()
            assert limits["invocationsPerMinute"] == 1
            first = await client.post(f"{NS}/actions/a", params={"blocking": "true"})
            assert first.status_code == 200
            second = await client.post(f"{NS}/actions/a", params={"blocking": "true"})
            assert_error(
                second, 429, "Too many requests in the last minute (count: 2, allowed: 1)."
            )
    finally:
        await system.close()
