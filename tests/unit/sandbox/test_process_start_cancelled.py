"""A cold start cancelled once its runtime was spawned leaks nothing: the sandbox, the
descriptors of its start, its first connection (sandboxstart.py)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from _polling import until

from squall.sandbox.forkedruntime import ForkedRuntime
from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio


class CancelledAfterSpawn(ProcessContainerFactory):
    """A real factory whose caller gives up (a timeout, a shutdown) the moment the
    sandbox was spawned: the start's next await raises CancelledError."""

    spawned: list[int]
    cancel = False

    async def _spawn(self, *args: Any, **kwargs: Any) -> ForkedRuntime:
        runtime = await super()._spawn(*args, **kwargs)
        if not self.cancel:
            return runtime
        pid = runtime.get_pid()
        assert pid is not None
        self.spawned.append(pid)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        return runtime


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", ["nodejs:20", "python:3.13"])
async def test_a_start_cancelled_after_its_spawn_leaks_nothing(
    anyio_backend: str, tmp_path: Path, kind: str
) -> None:
    # Given a sandboxed factory, warmed by one start (its lazily made descriptors: the
    # supervisor's, the cgroup tree's)
    factory = CancelledAfterSpawn(tmp_path / "containers", "https://api.example.test")
    factory.spawned = []
    try:
        await (await factory.create(kind, 256)).destroy()
        factory.spawned.clear()
        factory.cancel = True
        before = open_fds()
        # When a start is cancelled right after its sandbox was spawned
        with pytest.raises(asyncio.CancelledError):
            await factory.create(kind, 256)
        # Then the sandbox was spawned (this is the case under test: a confined start)
        assert len(factory.spawned) == 1
        # And its runtime is gone and every descriptor of its start closed, before the
        # factory is closed
        pid = factory.spawned[0]
        assert await until(lambda: not alive(pid)), "the cancelled start's sandbox lives on"
        assert await until(lambda: open_fds() <= before), open_fds() - before
    finally:
        await factory.close()
