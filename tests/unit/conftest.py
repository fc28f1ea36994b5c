"""Fixtures shared by the unit tests that need real runtimes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from squall.sandbox.process import ProcessContainerFactory


@pytest.fixture
async def factory(anyio_backend: str, tmp_path: Path) -> AsyncIterator[ProcessContainerFactory]:
    """A process sandbox under a fresh directory; every container is destroyed afterwards."""
    factory = ProcessContainerFactory(tmp_path / "containers", "https://api.example.test")
    try:
        yield factory
    finally:
        await factory.close()
