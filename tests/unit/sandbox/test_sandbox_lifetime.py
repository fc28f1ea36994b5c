"""A killed invoker never leaves a sandbox behind, whatever the moment it dies.

A helper process plays the invoker: it makes a factory and starts containers one after
the other until it is SIGKILLed at a random moment — during its factory's start, its
supervisor's, a zygote's or a container's. Afterwards nothing of it may survive: every
cgroup below the factory's is empty, and no process carries the run's marker (in its
environment, as the containers' processes do, or on its command line, as the
supervisor's do). Real bubblewrap, cgroups and runtimes; 100 kills, each waited on with
a deadline. A container paused (frozen) when its invoker is killed dies at once too.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest
from _polling import until

from squall.sandbox.cgrouptree import CgroupRoot
from squall.sandbox.isolation import Isolation
from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[3]
#: Kills, half of each kind. Their moments are stratified: each kind's start window is cut
#: into KILLS / 2 equal slices and each slice gets one kill at a random moment in it, so
#: no gap between two kill moments exceeds two slices (4 % of the window). 200 kills at
#: uniform random moments (this test before) left gaps of ≈ ln(100) / 100 ≈ 4.6 % of it.
KILLS = 100
#: Where a kill may land: up to this share of a full start, so some land after it.
WINDOW = 1.25
#: How long the processes of a killed invoker may take to be gone.
SURVIVOR_DEADLINE_S = 20.0
#: How long the calibration start (one factory, one container) may take.
START_DEADLINE_S = 60.0

# Forks an "invoker" per line read (workdir, kind, marker) and prints its pid. Forking
# from a process that imported squall once keeps 200 invoker starts affordable.
FORK_SERVER = """
import asyncio, os, signal, sys, traceback
from pathlib import Path
from squall.sandbox.process import ProcessContainerFactory

async def invoker(workdir, kind, marker):
    progress = open(workdir.parent / "progress", "a", buffering=1)
    factory = ProcessContainerFactory(workdir, "https://api", zygote_spares=1)
    progress.write("factory\\n")
    while True:
        container = await factory.create(
            kind, 128, {"SQUALL_TEST_MARKER": marker}, tenant="guest"
        )
        progress.write("created\\n")
        await container.destroy()

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # killed invokers are reaped by the kernel
for line in sys.stdin:
    workdir, kind, marker = line.split()
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            asyncio.run(invoker(Path(workdir), kind, marker))
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(1)
    print(pid, flush=True)
"""


# An invoker with one paused container: prints the container's cgroup directories once
# the freezer reports it frozen, then waits to be killed.
PAUSED_INVOKER = """
import asyncio, sys
from pathlib import Path
from squall.sandbox.process import ProcessContainerFactory

async def invoker(workdir):
    factory = ProcessContainerFactory(workdir, "https://api")
    container = await factory.create("nodejs:20", 128)
    container.pause()
    while not container.cgroup.frozen():
        await asyncio.sleep(0.01)
    print(" ".join(str(d) for d in container.cgroup.directories), flush=True)
    await asyncio.Event().wait()

asyncio.run(invoker(Path(sys.argv[1])))
"""


def survivors(root: CgroupRoot, marker: str) -> set[int]:
    """Processes left by the invoker of ``marker``: in its cgroups, or marked."""
    found: set[int] = set()
    for directory in root.directories:
        for procs in directory.glob("*/cgroup.procs"):
            found.update(int(pid) for pid in procs.read_text().split())
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (
                needle in (entry / "cmdline").read_bytes()
                or needle in (entry / "environ").read_bytes()
            ):
                found.add(int(entry.name))
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return found


async def gone(root: CgroupRoot, marker: str) -> set[int]:
    """Poll until nothing of ``marker``'s invoker is left; what is left at the deadline."""
    deadline = time.monotonic() + SURVIVOR_DEADLINE_S
    while True:
        left = survivors(root, marker)
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.05)


def cgroup_root(isolation: Isolation, workdir: Path) -> CgroupRoot:
    """The factory's parent cgroup (named after its resolved directory, as it does)."""
    instance = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:16]
    return isolation.hierarchy.root(f"{isolation.cgroup_root}/{instance}")


async def test_a_killed_invoker_never_leaves_a_sandbox_behind(
    tmp_path: Path, anyio_backend: str
) -> None:
    isolation = Isolation.detect()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FORK_SERVER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    assert server.stdin is not None and server.stdout is not None
    run = uuid.uuid4().hex[:12]
    rng = random.Random(run)

    async def start(index: int, kind: str) -> tuple[int, Path, str, CgroupRoot]:
        marker = f"squall-kill-{run}-{index}"
        workdir = tmp_path / marker / "containers"
        workdir.parent.mkdir()
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(f"{workdir} {kind} {marker}\n".encode())
        await server.stdin.drain()
        pid = int(await asyncio.wait_for(server.stdout.readline(), START_DEADLINE_S))
        return pid, workdir.parent / "progress", marker, cgroup_root(isolation, workdir)

    def phase(progress: Path) -> str:
        lines = progress.read_text().split() if progress.exists() else []
        if not lines:
            return "factory start"
        return "first container start" if lines == ["factory"] else "later container"

    def kill(pid: int) -> None:
        # A SIGKILL to the invoker alone: nothing of it may clean up after it.
        os.kill(pid, signal.SIGKILL)

    try:
        # Given how long one invoker takes to start its factory and a first container
        # of each kind here and now (a calibration run, not an assertion)
        full: dict[str, float] = {}
        for kind in ("nodejs:20", "python:3.13"):
            began = time.monotonic()
            pid, progress, marker, root = await start(-len(full) - 1, kind)
            while "created" not in (progress.read_text() if progress.exists() else ""):
                assert time.monotonic() - began < START_DEADLINE_S, f"{kind} did not start"
                await asyncio.sleep(0.01)
            full[kind] = time.monotonic() - began
            kill(pid)
            assert await gone(root, marker) == set()
            root.prepare()
            root.remove()
        phases: dict[str, int] = {}
        failures: list[str] = []
        # When an invoker is SIGKILLed at a random moment of each slice of its start
        slices = KILLS // 2
        order = {kind: rng.sample(range(slices), slices) for kind in full}  # slices shuffled
        for index in range(KILLS):
            kind = ("nodejs:20", "python:3.13")[index % 2]
            pid, progress, marker, root = await start(index, kind)
            share = (order[kind][index // 2] + rng.random()) / slices
            await asyncio.sleep(share * WINDOW * full[kind])
            kill(pid)
            where = phase(progress)
            phases[where] = phases.get(where, 0) + 1
            # Then none of its processes survives: its cgroups are empty, and no
            # process carries its marker
            left = await gone(root, marker)
            if left:
                failures.append(f"kill {index} ({kind}, {where}): {sorted(left)} survived")
            root.prepare()  # the cgroups it left (empty), as the next invoker would
            root.remove()
        assert failures == [], failures
        assert sum(phases.values()) == KILLS
        # And the kills did land while containers were starting
        assert phases.get("first container start", 0) + phases.get("later container", 0) > 0
    finally:
        server.stdin.close()
        await server.wait()


async def test_a_killed_supervisor_takes_its_sandboxes_along_and_is_replaced(
    tmp_path: Path, anyio_backend: str
) -> None:
    # Given a factory with a running container
    factory = ProcessContainerFactory(tmp_path / "containers", "https://api")
    try:
        container = await factory.create("nodejs:20", 128)
        assert container.cgroup is not None and factory.supervisor is not None
        (launcher,) = factory.supervisor.pids()
        # When the supervisor is SIGKILLed from outside
        os.kill(launcher, signal.SIGKILL)
        # Then the container's processes die with it (its cgroup empties)
        deadline = time.monotonic() + SURVIVOR_DEADLINE_S
        while container.cgroup.pids():
            assert time.monotonic() < deadline, container.cgroup.pids()
            await asyncio.sleep(0.05)
        await container.destroy()
        # And the next container starts under a new supervisor, and runs
        again = await factory.create("nodejs:20", 128)
        assert factory.supervisor.pids() != {launcher}
        code = "function main() { return {again: true} }"
        assert (await again.initialize({"code": code}, timeout=10)).status == 200
        assert (await again.run({"value": {}}, timeout=10)).body == b'{"again":true}'
    finally:
        await factory.close()


async def test_a_paused_container_dies_with_its_killed_invoker(
    tmp_path: Path, anyio_backend: str
) -> None:
    # Given an invoker with a paused container (frozen: on cgroup v1 its tasks cannot act
    # on a SIGKILL until they are thawed)
    isolation = Isolation.detect()
    workdir = tmp_path / "containers"
    invoker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PAUSED_INVOKER, str(workdir), stdout=asyncio.subprocess.PIPE, cwd=REPO
    )
    assert invoker.stdout is not None
    try:
        line = await asyncio.wait_for(invoker.stdout.readline(), START_DEADLINE_S)
        procs = [Path(directory) / "cgroup.procs" for directory in line.decode().split()]
        assert procs, "the invoker did not report a paused container"

        def members() -> set[int]:
            return {int(pid) for p in procs if p.exists() for pid in p.read_text().split()}

        assert members()
        # When the invoker is SIGKILLed (nothing of it may clean up after it)
        invoker.kill()
        await invoker.wait()
        # Then the container's processes die at once, not when a next invoker starts:
        # its cgroup empties
        assert await until(lambda: not members(), SURVIVOR_DEADLINE_S), members()
    finally:
        if invoker.returncode is None:
            invoker.kill()
            await invoker.wait()
        root = cgroup_root(isolation, workdir)
        root.prepare()  # the cgroups it left, as the next invoker would
        root.remove()
