"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

import pytest
from sandboxsupport import ForkBomb, run_fork_bomb


@pytest.fixture
def fork_bomb() -> ForkBomb:
    """The fork bomb check (:func:`sandboxsupport.run_fork_bomb`), for any factory."""
    return run_fork_bomb
