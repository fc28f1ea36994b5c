"""The cluster balancer's choices and the invoker health states, on the in-process bus."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from squall.bus.memory import MemoryBus
from squall.bus.messages import (
    INVOKER_STOPPING,
    INVOKER_UP,
    ActivationMessage,
    Completion,
    InvokerPing,
    invoker_topic,
)
from squall.config import Settings
from squall.controller.health import (
    HEALTHY,
    OFFLINE,
    SYSTEM_ERRORS_LIMIT,
    UNHEALTHY,
    UNRESPONSIVE,
    InvokerRegistry,
)
from squall.controller.sharding import ShardingBalancer, action_hash, coprime_steps
from squall.entities.activation import Activation, ActivationResponse
from squall.errors import ServiceUnavailable

pytestmark = pytest.mark.anyio

SETTINGS = replace(
    Settings(), unresponsive_after_s=3.0, offline_after_s=10.0, cluster_controllers=2
)


def state_of(registry: InvokerRegistry, invoker: str) -> str:
    """The health state of a registered invoker."""
    status = registry.get(invoker)
    assert status is not None, f"invoker{invoker} is not registered"
    return status.state


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ping(invoker: str, memory: int = 1024, state: str = INVOKER_UP) -> InvokerPing:
    return InvokerPing(invoker, memory, state, 0)


def healthy_registry(bus: MemoryBus, clock: Clock, *ids: str) -> InvokerRegistry:
    registry = InvokerRegistry(bus, SETTINGS, clock=clock)
    for invoker in ids:
        registry.on_ping(ping(invoker))  # no health test wired: counts as tested
    return registry


def message(action: str, activation_id: str = "a1") -> ActivationMessage:
    return ActivationMessage("tx", activation_id, "ns", "ns", action, "1", {}, False, "0", 0)


def test_coprime_steps_visit_every_invoker() -> None:
    for n in range(1, 9):
        for step in coprime_steps(n):
            assert sorted((k * step) % n for k in range(n)) == list(range(n))


async def test_an_action_goes_to_its_home_invoker_again() -> None:
    # Given four healthy invokers
    bus, clock = MemoryBus(), Clock()
    balancer = ShardingBalancer(bus, healthy_registry(bus, clock, "0", "1", "2", "3"), SETTINGS)
    # When the same action is sent twice (its slot freed in between)
    first = await balancer.publish(message("/ns/a", "x1"), 128)
    done = Activation(
        namespace="ns", name="a", activation_id="x1", start=1, response=ActivationResponse.ok({})
    )
    balancer.on_completion(Completion("tx", "x1", first, done))
    second = await balancer.publish(message("/ns/a", "x2"), 128)
    # Then both went to the home invoker of its hash
    assert first == second == str(action_hash("ns", "/ns/a") % 4)
    # And the message is on that invoker's topic
    assert await bus.pending(invoker_topic(first)) == 2


async def test_a_full_invoker_is_skipped_and_its_share_is_per_controller() -> None:
    # Given two invokers of 1024 MB shared by two controllers (512 MB each here)
    bus, clock = MemoryBus(), Clock()
    balancer = ShardingBalancer(bus, healthy_registry(bus, clock, "0", "1"), SETTINGS)
    # When an action's home share is used up
    home = await balancer.publish(message("/ns/a", "x1"), 512)
    other = await balancer.publish(message("/ns/a", "x2"), 256)
    # Then the next activation goes to the other invoker
    assert other != home
    assert balancer.used_mb(home) == 512 and balancer.used_mb(other) == 256


async def test_when_every_invoker_is_full_a_healthy_one_is_overloaded() -> None:
    bus, clock = MemoryBus(), Clock()
    registry = healthy_registry(bus, clock, "0", "1")
    balancer = ShardingBalancer(bus, registry, SETTINGS, rng=random.Random(7))
    await balancer.publish(message("/ns/a", "x1"), 512)
    await balancer.publish(message("/ns/a", "x2"), 512)
    # When nothing is left anywhere, the activation is still sent (the pool queues it)
    chosen = await balancer.publish(message("/ns/a", "x3"), 512)
    assert chosen in ("0", "1")
    assert balancer.used_mb("0") + balancer.used_mb("1") == 1536


async def test_no_healthy_invoker_answers_503_and_keeps_no_slot() -> None:
    bus, clock = MemoryBus(), Clock()
    registry = healthy_registry(bus, clock, "0")
    balancer = ShardingBalancer(bus, registry, SETTINGS)
    clock.now += SETTINGS.unresponsive_after_s + 1
    registry.refresh()
    with pytest.raises(ServiceUnavailable):
        await balancer.publish(message("/ns/a"), 128)
    assert balancer.used_mb("0") == 0 and not balancer.dispatched


async def test_invoker_states_follow_pings_tests_and_errors() -> None:
    bus, clock = MemoryBus(), Clock()
    changes: list[tuple[str, str]] = []
    tested = asyncio.Event()

    async def health_test(invoker: str) -> bool:
        tested.set()
        return True

    registry = InvokerRegistry(
        bus,
        SETTINGS,
        clock=clock,
        health_test=health_test,
        listeners=[lambda status, previous: changes.append((previous, status.state))],
    )
    # A new invoker is unhealthy until its health test passes
    registry.on_ping(ping("0"))
    assert state_of(registry, "0") == UNHEALTHY
    await asyncio.wait_for(tested.wait(), 5)
    for _ in range(50):
        if registry.usable("0"):
            break
        await asyncio.sleep(0.01)
    assert state_of(registry, "0") == HEALTHY
    # Silence makes it unresponsive, then offline
    clock.now += SETTINGS.unresponsive_after_s + 0.1
    registry.refresh()
    assert state_of(registry, "0") == UNRESPONSIVE
    clock.now += SETTINGS.offline_after_s
    registry.refresh()
    assert state_of(registry, "0") == OFFLINE
    # Coming back means testing again
    registry.health_test = None
    registry.on_ping(ping("0"))
    assert state_of(registry, "0") == HEALTHY

    # Repeated whisk internal errors make it unhealthy (until a health test passes)
    async def failing_test(invoker: str) -> bool:
        return False

    registry.health_test = failing_test
    for _ in range(SYSTEM_ERRORS_LIMIT):
        registry.on_outcome("0", system_error=True)
    assert state_of(registry, "0") == UNHEALTHY
    # A stopping invoker is offline at once
    registry.on_ping(ping("0", state=INVOKER_STOPPING))
    assert state_of(registry, "0") == OFFLINE
    assert (UNRESPONSIVE, OFFLINE) in changes and (UNHEALTHY, HEALTHY) in changes
    await registry.close()


async def test_an_invoker_restarted_before_it_went_silent_counts_as_offline_once() -> None:
    # Given a healthy invoker
    bus, clock = MemoryBus(), Clock()
    registry = InvokerRegistry(bus, SETTINGS, clock=clock)
    changes: list[tuple[str, str]] = []
    registry.add_listener(lambda status, previous: changes.append((previous, status.state)))
    registry.on_ping(replace(ping("0"), incarnation="first"))
    assert state_of(registry, "0") == HEALTHY
    # When it pings from a new process (restarted within the offline delay)
    registry.on_ping(replace(ping("0"), incarnation="second"))
    # Then it went through offline (recovery runs for the old process) and is back
    assert (HEALTHY, OFFLINE) in changes
    assert state_of(registry, "0") == HEALTHY
    # And further pings of the same process change nothing
    changes.clear()
    registry.on_ping(replace(ping("0"), incarnation="second"))
    assert changes == []
