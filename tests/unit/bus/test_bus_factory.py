"""Choosing the bus from ``Settings.bus_url`` (the NATS case: tests/contract/bus)."""

from __future__ import annotations

import pytest

from squall.bus.factory import open_bus
from squall.bus.memory import MemoryBus
from squall.config import Settings
from squall.errors import ConfigError

pytestmark = pytest.mark.anyio


async def test_no_url_is_the_in_process_bus() -> None:
    bus = await open_bus(Settings(bus_url=""))
    assert isinstance(bus, MemoryBus)
    await bus.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379",
        "127.0.0.1:4222",
        "nats://127.0.0.1:4222?ack_wait=30",
        "nats://127.0.0.1:4222?max_deliver=many",
        "nats://127.0.0.1:4222?prefix",
    ],
)
async def test_urls_that_cannot_work_are_config_errors(url: str) -> None:
    # Given a URL of another scheme or with a bad option / When opening / Then ConfigError,
    # before any connection is tried
    with pytest.raises(ConfigError):
        await open_bus(Settings(bus_url=url))
