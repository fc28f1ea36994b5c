"""Fixtures for the bus contract suite, run once per provider (in-process and NATS).

``bus`` is one open provider; ``bus_kind`` says which, and whether it is durable (then
it redelivers unacknowledged messages after ``ACK_WAIT_S``, at most ``MAX_DELIVER``
times). NATS buses live under a random prefix and their streams are deleted afterwards,
so runs never see each other's messages. ``nats_buses`` opens further connections under
one prefix, as several processes of one cluster would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from _required import unavailable

from squall.bus.contracts import MessagingProvider
from squall.bus.memory import MemoryBus
from squall.bus.nats import NatsBus

from .bussupport import NATS_URL, reachable, unique_prefix

ACK_WAIT_S = 2.0
MAX_DELIVER = 3


@dataclass(frozen=True)
class BusKind:
    name: str
    durable: bool


KINDS = [BusKind("memory", durable=False), BusKind("nats", durable=True)]


class NatsBuses:
    """Connections to the test NATS server sharing one random prefix."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = unique_prefix()
        self._opened: list[NatsBus] = []

    async def open(self, **options: Any) -> NatsBus:
        options.setdefault("ack_wait_s", ACK_WAIT_S)
        options.setdefault("max_deliver", MAX_DELIVER)
        bus = await NatsBus.connect(self.url, name="squall-test", prefix=self.prefix, **options)
        self._opened.append(bus)
        return bus

    async def cleanup(self) -> None:
        # A fresh connection: the tests may have closed theirs.
        if reachable(self.url):
            last = await NatsBus.connect(self.url, prefix=self.prefix)
            await last.delete_streams()
            await last.close()
        for bus in self._opened:
            await bus.close()


@pytest.fixture
async def nats_buses() -> AsyncIterator[NatsBuses]:
    if not reachable(NATS_URL):
        unavailable(f"NATS JetStream is not reachable at {NATS_URL}")
    buses = NatsBuses(NATS_URL)
    try:
        yield buses
    finally:
        await buses.cleanup()


@pytest.fixture(params=KINDS, ids=lambda k: k.name)
def bus_kind(request: pytest.FixtureRequest) -> BusKind:
    kind: BusKind = request.param
    return kind


@pytest.fixture
async def bus(bus_kind: BusKind) -> AsyncIterator[MessagingProvider]:
    if bus_kind.name == "memory":
        memory = MemoryBus()
        yield memory
        await memory.close()
        return
    if not reachable(NATS_URL):
        unavailable(f"NATS JetStream is not reachable at {NATS_URL}")
    buses = NatsBuses(NATS_URL)
    try:
        yield await buses.open()
    finally:
        await buses.cleanup()
