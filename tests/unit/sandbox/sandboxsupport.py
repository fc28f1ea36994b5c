"""Helpers shared by the sandbox tests (conftest.py makes fixtures of them)."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol

from squall.sandbox.cgroups import Cgroup
from squall.sandbox.isolation import DEFAULT_PIDS_MAX
from squall.sandbox.process import ProcessContainer, ProcessContainerFactory

#: Forks until a fork failed (at most ``seconds``: the test then fails); every child
#: forks forever; reports how many forks failed.
FORK_BOMB = """
import os, time
def main(args):
    failures = 0
    deadline = time.monotonic() + args["seconds"]
    while failures == 0 and time.monotonic() < deadline:
        try:
            if os.fork() == 0:
                while True:
                    try:
                        os.fork()
                    except OSError:
                        time.sleep(0.01)
        except OSError:
            failures += 1
            time.sleep(0.001)
    return {"fork_failures": failures}
"""


class ForkBomb(Protocol):
    """:func:`run_fork_bomb`'s signature, for the fixture."""

    def __call__(
        self, factory: ProcessContainerFactory, tenant: str | None = None
    ) -> Awaitable[ProcessContainer]: ...


def controller_file(cgroup: Cgroup, name: str) -> Path:
    """``name`` (e.g. ``pids.current``) in whichever of the cgroup's directories has it."""
    found = [d / name for d in cgroup.directories if (d / name).exists()]
    assert found, f"no {name} in {cgroup.directories}"
    return found[0]


async def run_fork_bomb(
    factory: ProcessContainerFactory, tenant: str | None = None
) -> ProcessContainer:
    """Run a fork bomb in a ``python:3.13`` (the default kind) container of ``factory``
    (for ``tenant``: then a zygote may fork it), check that it stopped at the pids limit,
    destroy the container and check that its cgroup is empty and gone — by the cgroup,
    never by pids the host may have reused. Returns the destroyed container."""
    # Given a container running a fork bomb until it hits the limit
    container = await factory.create("python:3.13", 256, tenant=tenant)
    code = textwrap.dedent(FORK_BOMB)
    assert (await container.initialize({"code": code}, timeout=10)).status == 200
    answer = await container.run({"value": {"seconds": 25}}, timeout=30)
    # Then forks failed at the limit, and the cgroup never held more than it allows
    assert answer.status == 200, answer
    assert json.loads(answer.body)["fork_failures"] > 0
    cgroup = container.cgroup
    assert cgroup is not None
    assert int(controller_file(cgroup, "pids.current").read_text()) <= DEFAULT_PIDS_MAX
    events = controller_file(cgroup, "pids.events").read_text().split()
    assert int(events[events.index("max") + 1]) > 0
    # And the host can still start processes
    process = await asyncio.create_subprocess_exec("true")
    assert await process.wait() == 0
    assert len(cgroup.pids()) > 3  # the bomb is still there, still forking
    # When the container is destroyed
    await container.destroy()
    # Then its cgroup is empty and removed (the kernel removes only empty cgroups)
    assert cgroup.pids() == set()
    assert not any(d.exists() for d in cgroup.directories)
    return container
