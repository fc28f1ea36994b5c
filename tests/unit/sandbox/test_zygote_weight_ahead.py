"""A started spare's cgroup CPU weight file is opened while it waits, and its take writes the
container's weight through it: real bubblewrap, cgroups and CPython, as test_zygote.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from squall.sandbox.cgroups import Cgroup
from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

NOOP = "def main(args):\n    return {'ok': True}\n"


def weight_file(cgroup: Cgroup) -> Path:
    """A cgroup's CPU weight file (v1 ``cpu.shares``, v2 ``cpu.weight``)."""
    for directory in cgroup.directories:
        for name in ("cpu.shares", "cpu.weight"):
            if (directory / name).exists():
                return directory / name
    raise AssertionError("the machine running these tests has a cpu controller")


def opened_here() -> set[Path]:
    """The files this process holds open."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(Path(os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return found


async def test_a_spares_take_writes_its_weight_through_a_file_opened_while_it_waited(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given started spares waiting to be taken
    await zygotic.create(zygotic.zygote_kind, 256, {}, tenant="guest")
    zygote = zygotic.zygote
    assert zygote is not None
    await zygote.filled()
    spares = list(zygote._spares)
    assert spares
    files = {spare.pid: weight_file(spare.cgroup) for spare in spares}
    waiting = {path.read_text().strip() for path in files.values()}
    # Then each one's CPU weight file is open already (its take walks no path)
    assert set(files.values()) <= opened_here()
    # When a container takes one
    container = await zygotic.create(zygotic.zygote_kind, 256, {}, tenant="guest")
    # Then its cgroup has the container's weight, and its file is no longer held open
    assert container.pid in files
    taken = files[container.pid]
    assert taken.read_text().strip() not in waiting
    assert taken not in opened_here()
    answer = await container.initialize({"code": NOOP}, timeout=10)
    assert answer.status == 200, answer.body
    ran = await container.run({"value": {}}, timeout=10)
    assert ran.status == 200, ran.body
    # And once the factory closes, no spare's weight file is held open either
    await zygotic.close()
    assert not set(files.values()) & opened_here()
