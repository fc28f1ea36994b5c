"""Waiting for something the system does on its own time, with a deadline.

A test asserts on what ``until`` returns: True once the condition held, False when the
deadline passed first (a hang, not a slow run: deadlines are generous). Conditions are
cheap checks of state (a file, a counter, a process), polled every few milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEADLINE_S = 10.0


async def until(condition: Callable[[], object], timeout: float = DEADLINE_S) -> bool:
    """Poll ``condition()`` on the event loop until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def until_blocking(condition: Callable[[], object], timeout: float = DEADLINE_S) -> bool:
    """:func:`until` for code without an event loop (it sleeps the thread)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
