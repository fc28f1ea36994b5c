"""Fixtures shared by every test directory.

``standalone`` is one real ``squall standalone`` process for the whole session, used by
the integration tests and the ``openwhisk`` client compatibility tests alike; tests keep
out of each other's way by naming their entities uniquely. Stopping it at the end is a
check too: it must exit 0 on SIGTERM and leave no runtime process behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _standalone import Standalone, start


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    server = start(tmp_path_factory.mktemp("squall-home"), keep_warm_s=60)
    try:
        yield server
    finally:
        server.stop_cleanly()
