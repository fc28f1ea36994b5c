"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sandboxsupport import ForkBomb, run_fork_bomb

from squall.sandbox.process import ProcessContainerFactory


@pytest.fixture
def fork_bomb() -> ForkBomb:
    """The fork bomb check (:func:`sandboxsupport.run_fork_bomb`), for any factory."""
    return run_fork_bomb


@pytest.fixture
async def zygotic(anyio_backend: str, tmp_path: Path) -> AsyncIterator[ProcessContainerFactory]:
    """An isolating factory (``$SQUALL_HOME`` stands at ``tmp_path``) with a zygote."""
    factory = ProcessContainerFactory(tmp_path / "containers", "https://api")
    try:
        yield factory
    finally:
        await factory.close()
