"""Fixtures for the store contract suite, run once per provider.

Every test here talks to the stores only through the contracts in
``squall.store.contracts``; nothing may depend on which provider is underneath. To add a
provider, append a :class:`Provider` to ``PROVIDERS``: its ``open`` gets a scratch
directory and the test clock, and must return an object with ``entities``,
``activations``, ``auth``, ``schedules``, ``apis`` and ``close()``; opening twice with the same
directory reaches the same data (two controllers sharing one database).

PostgreSQL (127.0.0.1:5432, database ``test``): every test gets a schema of its own,
``squall_test_<random>``, created by the first open and dropped after the test, so the
suite can run beside anything else using that database. When the server is unreachable
its tests skip, or fail with ``CI=true``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from _clock import FakeClock
from _postgres import PG_DSN, PG_HOST, PG_PORT, pg_reachable
from _required import require

from squall.store.contracts import (
    ActivationStore,
    ApiStore,
    AuthStore,
    EntityStore,
    ScheduleStore,
)
from squall.store.encrypted import EncryptedStore
from squall.store.encryption import KeyRing, Keys, new_key, parse_key
from squall.store.sqlite import SqliteStore

# The contract tests import FakeClock from here; it lives with the other shared helpers.
__all__ = ["FakeClock", "Provider", "Stores"]


class Stores(Protocol):
    @property
    def entities(self) -> EntityStore: ...
    @property
    def activations(self) -> ActivationStore: ...
    @property
    def auth(self) -> AuthStore: ...
    @property
    def schedules(self) -> ScheduleStore: ...
    @property
    def apis(self) -> ApiStore: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Provider:
    name: str
    # Opens the provider's stores; called again with the same directory to reopen.
    open: Callable[[Path, FakeClock], Awaitable[Stores]]
    # True when data survives close() and a second open() with the same directory.
    durable: bool
    # Drops what open() created outside the directory; called once after the test.
    cleanup: Callable[[Path], None] | None = None
    # A service the provider needs: (description, is it reachable?).
    service: tuple[str, Callable[[], bool]] | None = None


async def _sqlite_file(tmp: Path, clock: FakeClock) -> Stores:
    return await SqliteStore.open(tmp / "squall.db", clock=clock)


# One key for every test: a reopened encrypted store must read what it wrote.
_PARAMETER_KEY = KeyRing(Keys(parse_key(new_key(), "the contract suite's key")))


async def _sqlite_encrypted(tmp: Path, clock: FakeClock) -> Stores:
    """The SQLite file inside the encrypting wrapper every server uses: it must keep
    every contract of the store it wraps."""
    return EncryptedStore(await SqliteStore.open(tmp / "squall.db", clock=clock), _PARAMETER_KEY)


async def _sqlite_memory(tmp: Path, clock: FakeClock) -> Stores:
    return await SqliteStore.open(":memory:", clock=clock)


# The schema of each test directory: the same directory opens the same schema again.
_PG_SCHEMAS: dict[Path, str] = {}


def pg_schema(tmp: Path) -> str:
    return _PG_SCHEMAS.setdefault(tmp, f"squall_test_{uuid.uuid4().hex[:12]}")


async def _postgres(tmp: Path, clock: FakeClock) -> Stores:
    from squall.store.postgres import PostgresStore

    return await PostgresStore.open(PG_DSN, schema=pg_schema(tmp), clock=clock, max_size=4)


def _drop_pg_schema(tmp: Path) -> None:
    schema = _PG_SCHEMAS.pop(tmp, None)
    if schema is None:
        return
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


PROVIDERS = [
    Provider("sqlite-file", _sqlite_file, durable=True),
    Provider("sqlite-memory", _sqlite_memory, durable=False),
    Provider("sqlite-encrypted", _sqlite_encrypted, durable=True),
    Provider(
        "postgres",
        _postgres,
        durable=True,
        cleanup=_drop_pg_schema,
        service=(f"PostgreSQL on {PG_HOST}:{PG_PORT}", pg_reachable),
    ),
]


@contextlib.contextmanager
def _using(provider: Provider, tmp: Path) -> Iterator[Provider]:
    if provider.service is not None:
        what, reachable = provider.service
        require(what, reachable())
    try:
        yield provider
    finally:
        if provider.cleanup is not None:
            provider.cleanup(tmp)


@pytest.fixture(params=PROVIDERS, ids=lambda p: p.name)
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Provider]:
    with _using(request.param, tmp_path) as used:
        yield used


@pytest.fixture(params=[p for p in PROVIDERS if p.durable], ids=lambda p: p.name)
def durable_provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Provider]:
    with _using(request.param, tmp_path) as used:
        yield used


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
