"""What a test does when something it needs is missing from the machine.

Locally it skips with the reason; with ``CI=true`` it fails, since CI provides every
service and tool, and a test that skips there would hide a broken set-up.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(problem: str) -> NoReturn:
    """Skip locally, fail under ``CI=true``, saying what is missing."""
    if in_ci():
        pytest.fail(f"{problem} (CI=true: tests never skip for a missing service or tool)")
    pytest.skip(problem)


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts a TCP connection on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def require(what: str, ok: bool) -> None:
    """Go on when ``ok``; else skip locally and fail in CI, saying ``what`` is missing."""
    if not ok:
        unavailable(f"{what} is not available")
