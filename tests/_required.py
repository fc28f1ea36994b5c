"""What a test does when something it needs is missing from the machine.

Locally it skips with the reason; with ``CI=true`` it fails, since CI provides every
service and tool, and a test that skips there would hide a broken set-up.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(problem: str) -> NoReturn:
    """Skip locally, fail under ``CI=true``, saying what is missing."""
    if in_ci():
        pytest.fail(f"{problem} (CI=true: tests never skip for a missing service or tool)")
    pytest.skip(problem)
