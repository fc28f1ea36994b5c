"""Fixtures of the API tests: the whole platform in-process, driven over ASGI.

One :class:`~squall.cli.standalone.Standalone` per test module (SQLite store under a
temporary home, in-memory bus, one invoker with the process sandbox); tests keep out of
each other's way by naming their entities uniquely. The root ``anyio_backend`` fixture is
function-scoped, and a module-scoped async fixture cannot use it, so it is redefined here
with module scope (same value: asyncio).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from squall.cli.standalone import Standalone
from squall.config import Settings

# The helpers assert too: let pytest explain their failures like a test's own asserts.
pytest.register_assert_rewrite("apisupport")

BASE_URL = "http://testserver"


@pytest.fixture(scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Standalone]:
    # Generous throttles: a module's tests share one platform and must not depend on
    # each other's pace; tests/api/test_api_throttles.py checks the limits themselves.
    settings = Settings(
        home=tmp_path_factory.mktemp("squall-api"),
        keep_warm_s=60,
        invocations_per_minute=100_000,
        concurrent_invocations=10_000,
        fires_per_minute=100_000,
    )
    platform = await Standalone.start(settings)
    try:
        yield platform
    finally:
        await platform.close()


def _client(system: Standalone, auth: tuple[str, str] | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=system.app),
        base_url=BASE_URL,
        auth=auth,
        timeout=30.0,
    )


@pytest.fixture
def guest_credentials(system: Standalone) -> tuple[str, str]:
    uuid_, _, key = system.guest_auth.partition(":")
    return uuid_, key


@pytest.fixture
async def client(
    system: Standalone, guest_credentials: tuple[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated as the guest."""
    async with _client(system, guest_credentials) as c:
        yield c


@pytest.fixture
async def anonymous(system: Standalone) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no credentials."""
    async with _client(system, None) as c:
        yield c


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("hello")`` → ``hello-3f2a9c1e``: one test's entities never collide with
    another's on the module's shared system."""
    suffix = uuid.uuid4().hex[:8]
    return lambda stem: f"{stem}-{suffix}"
