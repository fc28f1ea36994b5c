"""Throttle counters: tumbling minutes, concurrency bookkeeping, stored overrides."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from squall.bus.messages import Completion
from squall.config import Settings
from squall.controller.throttle import Throttles
from squall.entities.activation import Activation, ActivationResponse
from squall.errors import TooManyRequests
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 600.0  # the start of minute 10

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(":memory:")
    await s.auth.create_subject("guest")
    yield s
    await s.close()


def _settings() -> Settings:
    return Settings(invocations_per_minute=2, concurrent_invocations=1, fires_per_minute=1)


async def test_per_minute_window_starts_over_each_minute(store: SqliteStore) -> None:
    clock = Clock()
    throttles = Throttles(_settings(), store.auth, clock=clock)
    await throttles.admit_invoke("guest")
    await throttles.admit_invoke("guest")
    with pytest.raises(TooManyRequests, match=r"count: 3, allowed: 2"):
        await throttles.admit_invoke("guest")
    # When the next minute begins / Then the count starts from zero
    clock.now += 60
    await throttles.admit_invoke("guest")


async def test_fires_have_their_own_window(store: SqliteStore) -> None:
    throttles = Throttles(_settings(), store.auth, clock=Clock())
    await throttles.admit_fire("guest")
    await throttles.admit_invoke("guest")  # invokes are counted apart from fires
    with pytest.raises(TooManyRequests, match=r"Too many requests in the last minute"):
        await throttles.admit_fire("guest")


async def test_concurrency_is_released_by_completions(store: SqliteStore) -> None:
    throttles = Throttles(_settings(), store.auth, clock=Clock())
    await throttles.started("guest", "a" * 32)
    with pytest.raises(TooManyRequests, match=r"concurrent requests in flight \(count: 1"):
        await throttles.admit_invoke("guest")
    # A completion for it (twice: redelivery must not go negative)
    done = Activation(
        namespace="guest", name="a", activation_id="a" * 32, start=1,
        response=ActivationResponse.ok({}),
    )  # fmt: skip
    throttles.on_completion(Completion("t", "a" * 32, "0", done))
    throttles.on_completion(Completion("t", "a" * 32, "0", done))
    assert throttles.in_flight("guest") == 0
    await throttles.admit_invoke("guest")


async def test_namespaces_are_counted_apart(store: SqliteStore) -> None:
    await store.auth.create_subject("other")
    throttles = Throttles(_settings(), store.auth, clock=Clock())
    await throttles.started("guest", "a" * 32)
    await throttles.admit_invoke("other")


async def test_stored_overrides_win_over_settings(store: SqliteStore) -> None:
    await store.auth.set_limits("guest", {"concurrentInvocations": 5, "firesPerMinute": 9})
    throttles = Throttles(_settings(), store.auth, clock=Clock())
    limits = await throttles.limits("guest")
    assert limits == {"invocationsPerMinute": 2, "concurrentInvocations": 5, "firesPerMinute": 9}
