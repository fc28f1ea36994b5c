"""Fixtures for the store contract suite, run once per provider.

Every test here talks to the stores only through the contracts in
``squall.store.contracts``; nothing may depend on which provider is underneath. To add a
provider (PostgreSQL), append a :class:`Provider` to ``PROVIDERS``: its ``open`` gets a
scratch directory and the test clock, and must return an object with ``entities``,
``activations``, ``auth``, ``schedules`` and ``close()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from squall.store.contracts import ActivationStore, AuthStore, EntityStore, ScheduleStore
from squall.store.sqlite import SqliteStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """Epoch-ms clock that moves only when told, so ordering by ``updated`` is exact."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int = 1) -> int:
        self.now += ms
        return self.now


class Stores(Protocol):
    @property
    def entities(self) -> EntityStore: ...
    @property
    def activations(self) -> ActivationStore: ...
    @property
    def auth(self) -> AuthStore: ...
    @property
    def schedules(self) -> ScheduleStore: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Provider:
    name: str
    # Opens the provider's stores; called again with the same directory to reopen.
    open: Callable[[Path, FakeClock], Awaitable[Stores]]
    # True when data survives close() and a second open() with the same directory.
    durable: bool


async def _sqlite_file(tmp: Path, clock: FakeClock) -> Stores:
    return await SqliteStore.open(tmp / "squall.db", clock=clock)


async def _sqlite_memory(tmp: Path, clock: FakeClock) -> Stores:
    return await SqliteStore.open(":memory:", clock=clock)


PROVIDERS = [
    Provider("sqlite-file", _sqlite_file, durable=True),
    Provider("sqlite-memory", _sqlite_memory, durable=False),
]


@pytest.fixture(params=PROVIDERS, ids=lambda p: p.name)
def provider(request: pytest.FixtureRequest) -> Provider:
    param: Provider = request.param
    return param


@pytest.fixture(params=[p for p in PROVIDERS if p.durable], ids=lambda p: p.name)
def durable_provider(request: pytest.FixtureRequest) -> Provider:
    param: Provider = request.param
    return param


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def stores(provider: Provider, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Stores]:
    opened = await provider.open(tmp_path, clock)
    try:
        yield opened
    finally:
        await opened.close()
