"""A real process sandbox for the pool tests (helpers are in ``poolsupport``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from squall.sandbox.process import ProcessContainerFactory


@pytest.fixture
async def factory(tmp_path: Path) -> AsyncIterator[ProcessContainerFactory]:
    f = ProcessContainerFactory(tmp_path / "containers", "http://127.0.0.1:1")
    try:
        yield f
    finally:
        await f.close()
