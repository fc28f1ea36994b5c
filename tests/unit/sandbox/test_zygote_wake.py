"""A started spare's take wakes its runtime off the invoker's CPU, and the action it serves
runs on every CPU: real bubblewrap, cgroups and CPython, as test_zygote.py."""

from __future__ import annotations

import ctypes
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from squall.sandbox.process import ProcessContainerFactory
from squall.sandbox.spare import Spare

pytestmark = pytest.mark.anyio

#: The CPUs each thread of the runtime may run on, as the action sees them.
AFFINITY = """
import os
def main(args):
    tasks = sorted(int(t) for t in os.listdir("/proc/self/task"))
    return {"threads": {str(t): sorted(os.sched_getaffinity(t)) for t in tasks}}
"""

sched_getcpu = ctypes.CDLL(None, use_errno=True).sched_getcpu


class SeenAtTake:
    """A spare's socket to its runtime that notes, when ``take`` is sent, the CPU the
    sending thread is on and the CPUs the runtime's main thread may then be woken on;
    everything else goes to the real socket."""

    def __init__(self, spare: Spare, seen: list[tuple[int, set[int]]]) -> None:
        self._sock, self._pid, self._seen = spare.sock, spare.pid, seen

    def send(self, data: bytes) -> int:
        if data.startswith(b"take"):
            self._seen.append((sched_getcpu(), os.sched_getaffinity(self._pid)))
        return self._sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


async def test_a_started_spares_take_wakes_it_off_the_invokers_cpu(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given started spares waiting to be taken, on a machine of more than one CPU
    every_cpu = os.sched_getaffinity(0)
    assert len(every_cpu) > 1, "the machine running these tests has at least two CPUs"
    await zygotic.create(zygotic.zygote_kind, 256, {}, tenant="guest")
    zygote = zygotic.zygote
    assert zygote is not None
    await zygote.filled()
    seen: list[tuple[int, set[int]]] = []
    spares = list(zygote._spares)
    for spare in spares:
        spare.sock = SeenAtTake(spare, seen)  # type: ignore[assignment]
    # When a container takes one, the invoker's loop on one CPU (not to move between
    # the take and the note of its CPU)
    loop_cpu = sched_getcpu()
    os.sched_setaffinity(0, {loop_cpu})
    try:
        container = await zygotic.create(zygotic.zygote_kind, 256, {}, tenant="guest")
    finally:
        # Every thread of this process: one started while the loop's was pinned (an
        # executor's) inherited the one CPU, and may serve the rest of the session.
        for task in os.listdir("/proc/self/task"):
            os.sched_setaffinity(int(task), every_cpu)
    # Then, when its take was sent, its runtime could be woken on any CPU but the one
    # the invoker's loop ran on (the kernel would queue it there, behind the invoker)
    assert container.pid in {spare.pid for spare in spares}
    assert seen == [(loop_cpu, every_cpu - {loop_cpu})]
    # And the action it serves, every thread of its runtime, runs on every CPU again
    answer = await container.initialize({"code": AFFINITY}, timeout=10)
    assert answer.status == 200, answer.body
    ran = await container.run({"value": {}}, timeout=10)
    assert ran.status == 200, ran.body
    threads = json.loads(ran.body)["threads"]
    assert len(threads) >= 2  # the runtime's main thread and its lifeline thread
    assert all(set(cpus) == every_cpu for cpus in threads.values())


async def test_a_runtime_forked_for_a_waiting_create_keeps_every_cpu(tmp_path: Path) -> None:
    # Given a zygote that keeps no spare (a burst used them all): each create forks its own
    factory = ProcessContainerFactory(tmp_path / "spot", "https://api", zygote_spares=0)
    try:
        # When a container is created, Then its action runs on every CPU
        container = await factory.create(factory.zygote_kind, 256, {}, tenant="guest")
        answer = await container.initialize({"code": AFFINITY}, timeout=10)
        assert answer.status == 200, answer.body
        ran = await container.run({"value": {}}, timeout=10)
        assert ran.status == 200, ran.body
        threads = json.loads(ran.body)["threads"]
        assert all(set(cpus) == os.sched_getaffinity(0) for cpus in threads.values())
    finally:
        await factory.close()


def test_a_spare_with_one_cpu_or_none_known_is_left_where_it_may_run() -> None:
    # Given spares whose CPUs are unknown (None), as with one CPU only
    left, right = socket.socketpair()
    try:
        spare = Spare(sock=left, pid=os.getpid(), pidfd=-1, cgroup=None)  # type: ignore[arg-type]
        before = os.sched_getaffinity(0)
        # When it is kept off this CPU, Then nothing changes
        spare.keep_off_this_cpu()
        assert os.sched_getaffinity(0) == before
    finally:
        left.close()
        right.close()
