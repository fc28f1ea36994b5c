"""Fixtures of the store's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pgsupport import fresh_schema, require_postgres


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh PostgreSQL schema of the machine's server, dropped after the test."""
    require_postgres()
    with fresh_schema() as name:
        yield name
