"""Whether an invoker that went offline by its silence is really gone
(squall.controller.health.Silence): what recovery asks before it ends the activations
the invoker had started as lost. Driven by pings through a real registry on the
in-process bus, on the monotonic clock recovery uses."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from squall.bus.memory import MemoryBus
from squall.bus.messages import INVOKER_STOPPING, INVOKER_UP, InvokerPing
from squall.config import Settings
from squall.controller.health import OFFLINE, InvokerRegistry, InvokerStatus, Silence

pytestmark = pytest.mark.anyio

SETTINGS = replace(Settings(), unresponsive_after_s=3.0, offline_after_s=10.0)


def ping(incarnation: str, state: str = INVOKER_UP) -> InvokerPing:
    return InvokerPing("0", 1024, state, 0, incarnation=incarnation)


def silent_invoker() -> tuple[InvokerRegistry, InvokerStatus, Silence]:
    """A registry whose invoker ``0`` (incarnation ``a``) just went offline by silence."""
    registry = InvokerRegistry(MemoryBus(), SETTINGS)
    registry.on_ping(ping("a"))
    status = registry.get("0")
    assert status is not None
    status.last_ping -= SETTINGS.offline_after_s + 1  # as if silent since
    registry.refresh()
    assert status.state == OFFLINE
    return registry, status, Silence.of(status)


async def test_the_same_process_pinging_again_is_not_gone() -> None:
    registry, _, silence = silent_invoker()
    registry.on_ping(ping("a"))
    assert await silence.gone(lost_after_s=60.0) is False


async def test_the_same_process_announcing_it_stops_is_not_gone() -> None:
    # (it finishes, or records, what it runs itself)
    registry, _, silence = silent_invoker()
    registry.on_ping(ping("a", INVOKER_STOPPING))
    assert await silence.gone(lost_after_s=60.0) is False


async def test_another_process_pinging_means_the_silent_one_is_gone() -> None:
    registry, _, silence = silent_invoker()
    registry.on_ping(ping("b"))
    assert await silence.gone(lost_after_s=60.0) is True


async def test_silent_past_the_limit_is_gone() -> None:
    _, status, silence = silent_invoker()
    # its last ping was offline_after_s + 1 ago: a limit below that has passed
    assert await silence.gone(lost_after_s=SETTINGS.offline_after_s) is True
    assert status.state == OFFLINE


async def test_a_ping_while_waiting_ends_the_wait() -> None:
    registry, status, silence = silent_invoker()
    waited_from = time.monotonic()
    asyncio.get_running_loop().call_later(0.05, registry.on_ping, ping("a"))
    assert await silence.gone(lost_after_s=3600.0, poll_s=0.01) is False
    assert status.last_ping >= waited_from
