"""Web actions at the limits: an answer not ready within the blocking wait (202), and the
owner's throttles (429). This module runs its own platform with a short blocking wait."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from apisupport import BASE_URL, assert_error, get_activation
from websupport import ACTIVATION_HEADER, DEFAULT_CORS, url, web_action

from squall.cli.standalone import Standalone
from squall.config import Settings
from squall.errors import Conflict

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
WAIT_MS = 300
SLOW_JS = "function main() { return new Promise(r => setTimeout(() => r({done: true}), 1500)); }\n"


@pytest.fixture(scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Standalone]:
    settings = Settings(
        home=tmp_path_factory.mktemp("squall-web-limits"),
        keep_warm_s=60,
        max_blocking_wait_ms=WAIT_MS,
    )
    platform = await Standalone.start(settings)
    try:
        yield platform
    finally:
        await platform.close()


async def test_an_answer_not_ready_in_time_is_202_and_the_action_runs_on(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a web action that takes longer than the platform's blocking wait
    name = unique("web-slow")
    await web_action(client, name, SLOW_JS)
    # When it is called
    r = await anonymous.get(url(name, ".json"))
    # Then 202 with OpenWhisk's message, the activation id and CORS headers
    assert_error(r, 202, "Response not yet ready.")
    assert r.headers["access-control-allow-origin"] == DEFAULT_CORS["access-control-allow-origin"]
    # And the activation completes on its own
    record = await get_activation(client, r.headers[ACTIVATION_HEADER])
    assert record["response"]["result"] == {"done": True}


async def test_the_owners_throttle_applies_to_anonymous_callers(
    system: Standalone, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a namespace allowed no invocations per minute, owning a web action
    namespace = unique("web-owner")
    try:
        subject = await system.store.auth.create_subject(namespace)
    except Conflict:
        subject = await system.store.auth.create_subject(namespace, rotate=True)
    await system.store.auth.set_limits(namespace, {"invocationsPerMinute": 0})
    uuid_, key = subject.auth.split(":", 1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, auth=(uuid_, key)
    ) as owner:
        await web_action(owner, "throttled")
    # When anyone calls it
    r = await anonymous.get(url("throttled", ".json", namespace=namespace))
    # Then the owner's limit answers 429, before anything runs
    assert_error(r, 429, "Too many requests in the last minute (count: 1, allowed: 0).")
    assert ACTIVATION_HEADER not in r.headers
    assert r.headers["access-control-allow-origin"] == "*"
