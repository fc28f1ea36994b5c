"""Fixtures shared by the unit tests that need real runtimes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from squall.sandbox.process import ProcessContainerFactory
from squall.store.sqlite import SqliteStore


@pytest.fixture
async def factory(anyio_backend: str, tmp_path: Path) -> AsyncIterator[ProcessContainerFactory]:
    """A process sandbox under a fresh directory; every container is destroyed afterwards."""
    factory = ProcessContainerFactory(tmp_path / "containers", "https://api.example.test")
    try:
        yield factory
    finally:
        await factory.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real SQLite store in a fresh file, closed afterwards."""
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        yield store
    finally:
        await store.close()
