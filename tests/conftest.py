"""Fixtures shared by every test directory.

``standalone`` is one real ``squall standalone`` process for the whole session, used by
the integration tests and the ``openwhisk`` client compatibility tests alike; tests keep
out of each other's way by naming their entities uniquely. Stopping it at the end is a
check too: it must exit 0 on SIGTERM and leave no runtime process behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _required import unavailable
from _standalone import Standalone, start
from netsupport import OutsideHost, outside_host
from netsupport import missing as netns_missing

from squall.sandbox.network import nft_available


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Every async test and fixture runs on asyncio; session-scoped so that module- and
    session-scoped async fixtures can use it too."""
    return "asyncio"


@pytest.fixture(scope="session")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    server = start(tmp_path_factory.mktemp("squall-home"), keep_warm_s=60)
    try:
        yield server
    finally:
        server.stop_cleanly()


@pytest.fixture(scope="session")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutsideHost]:
    """The test run's own outside host (tests/netsupport.py), with its resolver."""
    problem = netns_missing() or nft_available()
    if problem is not None:
        unavailable(problem)
    with outside_host(tmp_path_factory.mktemp("outside")) as host:
        if host.resolver is None:
            unavailable("dnsmasq is not installed: apt-get install dnsmasq-base")
        yield host
