"""Fixtures of the integration tests: an HTTP client for the session's server, unique
entity names, and a factory for servers of a test's own (restarts, SIGTERM)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from _standalone import Standalone, StartServer, start


@pytest.fixture
def client(standalone: Standalone) -> Iterator[httpx.Client]:
    with standalone.client() as c:
        yield c


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("hello")`` → ``hello-3f2a9c1e``: entities of one test never collide with
    another test's on the shared server."""
    suffix = uuid.uuid4().hex[:8]
    return lambda stem: f"{stem}-{suffix}"


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start servers of this test's own (any number, on homes the test chooses); any
    still running at the end are stopped, and every one must have stopped cleanly."""
    servers: list[Standalone] = []

    def _start(home: Path) -> Standalone:
        server = start(home, keep_warm_s=60)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        if server.running():
            server.stop_cleanly()
