"""Containers forked by the Python zygote keep every guarantee of the bubblewrap sandbox.

Real bubblewrap, real cgroups, real CPython: each test starts a factory whose containers
of the default Python kind (``factory.zygote_kind``) come from its zygote
(``factory.zygote`` is set once the first one was created) and checks containment from
inside and outside.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import signal
import socket
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
from _polling import DEADLINE_S, until
from sandboxsupport import ForkBomb

from squall.sandbox import sparedemand
from squall.sandbox.cgroups import Cgroup
from squall.sandbox.http import UnixHttpClient
from squall.sandbox.isolation import DEFAULT_PIDS_MAX
from squall.sandbox.process import ProcessContainer, ProcessContainerFactory
from squall.sandbox.spare import Spare
from squall.sandbox.zygote import Zygote

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[3]

PROBE = """
import os, socket
def main(args):
    out = {"pid": os.getpid(), "uid": os.getuid(), "hostname": socket.gethostname(),
           "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
           "tmp": sorted(os.listdir("/tmp"))}
    status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines())
    out["caps"] = status["CapEff"].strip() + status["CapBnd"].strip()
    out["no_new_privs"] = status["NoNewPrivs"].strip()
    for path in args.get("read", []):
        try:
            open(path, "rb").read(1)
            out[path] = "ok"
        except OSError as ex:
            out[path] = type(ex).__name__
    if "write" in args:
        with open("/tmp/" + args["write"], "w") as f:
            f.write("secret")
    if "connect" in args:
        try:
            socket.create_connection(("127.0.0.1", args["connect"]), timeout=2).close()
            out["connected"] = True
        except OSError as ex:
            out["connected"] = type(ex).__name__
    return out
"""

KILL_ALL = """
import os, signal
def main(args):
    try:
        os.kill(-1, signal.SIGKILL)  # every process this one may signal
    except OSError as ex:
        return {"error": type(ex).__name__}
    return {"killed": True}
"""

SPAWN = """
import subprocess, sys
def main(args):
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    return {}
"""


async def python(
    factory: ProcessContainerFactory, code: str, memory_mb: int = 256, tenant: str = "guest"
) -> ProcessContainer:
    container = await factory.create(factory.zygote_kind, memory_mb, tenant=tenant)
    answer = await container.initialize({"code": textwrap.dedent(code)}, timeout=10)
    assert answer.status == 200, answer.body
    return container


async def result(container: ProcessContainer, value: Any) -> Any:
    answer = await container.run({"value": value}, timeout=20)
    assert answer.status == 200, answer
    return json.loads(answer.body)


def running_zygote(factory: ProcessContainerFactory) -> Zygote:
    assert factory.zygote is not None, "default Python kind containers should come from the zygote"
    return factory.zygote


def cpu_shares(cgroup: Cgroup) -> str | None:
    """A v1 cgroup's ``cpu.shares`` (None without that controller)."""
    for directory in cgroup.directories:
        if (directory / "cpu.shares").exists():
            return (directory / "cpu.shares").read_text().strip()
    return None


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # reaped between open and read
        return True


async def test_a_forked_container_runs_an_action_unprivileged_and_alone(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given a container of the default Python kind, forked by the zygote
    container = await python(zygotic, PROBE)
    zygote = running_zygote(zygotic)
    # When the action looks at itself
    seen = await result(container, {})
    # Then it is nobody without any capability, in pid and uts namespaces of its own,
    # where it is the first and only process
    assert (seen["uid"], seen["caps"], seen["no_new_privs"]) == (65534, "0" * 32, "1")
    assert (seen["pid"], seen["processes"], seen["hostname"]) == (1, [1], "squall")
    assert container.cgroup is not None and container.sandbox_pid == container.pid
    # And its init is in its own cgroup with the action's limits, not with the zygote
    assert container.cgroup.pids() & zygote.pids() == set()
    memory = container.cgroup.directories[0]
    assert (memory / "memory.limit_in_bytes").read_text().strip() == str(256 * MIB)
    pids = Path(str(memory).replace("/memory/", "/pids/"))
    assert (pids / "pids.max").read_text().strip() == str(DEFAULT_PIDS_MAX)


async def test_tmp_is_private_and_sized_and_the_host_is_out_of_sight(
    zygotic: ProcessContainerFactory, tmp_path: Path
) -> None:
    # Given the invoker's state next to its containers, and a container that wrote a file
    (tmp_path / "squall.db").write_text("store")
    first = await python(zygotic, PROBE)
    await result(first, {"write": "mine"})
    # When another container, with less memory, looks for it and for the host's files
    second = await python(zygotic, PROBE, memory_mb=128)
    paths = [str(tmp_path / "squall.db"), str(first.directory / "proxy.sock"), "/etc/shadow"]
    seen = await result(second, {"read": paths})
    # Then its /tmp holds only its own action, and nothing of the host exists for it
    assert [name for name in seen["tmp"] if not name.startswith("action-")] == []
    assert {seen[path] for path in paths} == {"FileNotFoundError"}
    # And its /tmp is capped at its memory
    size = """
        import os
        def main(a):
            s = os.statvfs("/tmp")
            return {"bytes": s.f_blocks * s.f_frsize}
    """
    assert (await result(await python(zygotic, size, memory_mb=128), {}))["bytes"] == 128 * MIB
    assert (await result(await python(zygotic, size), {}))["bytes"] == 256 * MIB


SETTINGS = """
import os
def main(args):
    tasks = {}
    for task in os.listdir("/proc/self/task"):
        status = open(f"/proc/self/task/{task}/status").read().splitlines()
        fields = dict(line.split(":\\t", 1) for line in status)
        tasks[task] = [fields[name].strip() for name in ("CapEff", "CapPrm", "NoNewPrivs")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("__OW_ACTIVATION")}
    return {"tasks": tasks, "env": env}
"""


def thread_privileges(pid: int) -> dict[str, tuple[str, str, str]]:
    """Per thread of ``pid`` (seen from the host): CapEff, CapPrm, NoNewPrivs."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = dict(line.split(":\t", 1) for line in (task / "status").read_text().splitlines())
        found[task.name] = (fields["CapEff"], fields["CapPrm"], fields["NoNewPrivs"])
    return found


async def test_a_started_spares_lifeline_thread_runs_without_capabilities_while_it_waits(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given started spares waiting to be taken
    await zygotic.create(zygotic.zygote_kind, 256, {}, tenant="guest")
    zygote = running_zygote(zygotic)
    await zygote.filled()
    assert zygote.spares == 2
    nothing = ("0" * 16, "0" * 16, "1")
    for pid in [spare.pid for spare in zygote._spares]:
        # Then each already has its lifeline thread (started off a take's path), which
        # drops every capability and sets no_new_privs (the main thread drops its own on
        # take)
        def lifeline(pid: int = pid) -> list[tuple[str, str, str]]:
            return [v for task, v in thread_privileges(pid).items() if task != str(pid)]

        assert await until(lambda: lifeline() == [nothing])


async def test_a_started_spare_takes_the_containers_own_settings(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given spares started ahead (listening, waiting to be taken) for 256 MB containers
    await python(zygotic, PROBE)
    zygote = running_zygote(zygotic)
    await zygote.filled()
    assert zygote.spares == 2
    spare_dirs = sorted((zygotic.workdir / "spares").iterdir())
    assert len(spare_dirs) == 2 and all(p.is_dir() for p in spare_dirs)
    # (with the least CPU weight while they wait)
    assert {cpu_shares(spare.cgroup) for spare in zygote._spares} <= {None, "2"}
    # When a 128 MB container with an environment of its own takes one
    env = {"__OW_CONCURRENCY": "1", "SOME": "value"}
    container = await zygotic.create(zygotic.zygote_kind, 128, env, tenant="guest")
    answer = await container.initialize({"code": SETTINGS}, timeout=10)
    assert answer.status == 200, answer.body
    seen = await result(container, {})
    # Then it serves on its own directory's socket, the spare's name is gone
    assert (container.directory / "proxy.sock").is_socket()
    assert sum(path.exists() for path in spare_dirs) == 1
    # And its environment is exactly its own (nothing of the zygote's or the spare's)
    assert seen["env"]["SOME"] == "value" and seen["env"]["__OW_CONCURRENCY"] == "1"
    assert seen["env"]["__OW_API_HOST"] == "https://api"
    assert not [k for k in seen["env"] if k.endswith("_FD") or k == "__OW_LIBRARIES"]
    # And no thread of its runtime has a capability (capabilities are per thread), each
    # with no_new_privs
    assert seen["tasks"] and set(map(tuple, seen["tasks"].values())) == {("0" * 16, "0" * 16, "1")}
    # And its cgroup has its own memory limit
    assert container.cgroup is not None
    memory = container.cgroup.directories[0]
    assert (memory / "memory.limit_in_bytes").read_text().strip() == str(128 * MIB)
    # And its own CPU weight
    isolation = zygotic.isolation
    assert isolation is not None
    assert cpu_shares(container.cgroup) in (None, str(isolation.limits(128).cpu_shares))


TMP_SIZE = """
import os
def main(args):
    tmp, shm = os.statvfs("/tmp"), os.statvfs("/dev/shm")
    return {"sizes": [tmp.f_blocks * tmp.f_frsize, shm.f_blocks * shm.f_frsize]}
"""


async def test_a_spare_replacing_a_taken_one_waits_ready_for_the_same_size(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given a zygote with its spares started (for 256 MB containers)
    await zygotic.create(zygotic.zygote_kind, 256, {}, tenant="guest")
    zygote = running_zygote(zygotic)
    await zygote.filled()
    assert zygote.spares == 2
    # And a 128 MB container that took one of them
    await zygotic.create(zygotic.zygote_kind, 128, {}, tenant="guest")
    await zygote.filled()

    # Then a spare made to replace it waits with a 128 MB container's memory limit
    # (written ahead, off the next take's path) and still the least CPU weight
    def memory_limit(spare: Spare) -> str:
        return (spare.cgroup.directories[0] / "memory.limit_in_bytes").read_text().strip()

    ready = [spare for spare in zygote._spares if memory_limit(spare) == str(128 * MIB)]
    assert ready
    assert cpu_shares(ready[0].cgroup) in (None, "2")
    # When the next 128 MB container is created
    container = await zygotic.create(zygotic.zygote_kind, 128, {}, tenant="guest")
    # Then it is that spare, now with its own CPU weight, and its /tmp and /dev/shm have
    # a 128 MB container's size
    assert (
        container.cgroup is not None and container.cgroup.directories == ready[0].cgroup.directories
    )
    isolation = zygotic.isolation
    assert isolation is not None
    assert cpu_shares(container.cgroup) in (None, str(isolation.limits(128).cpu_shares))
    answer = await container.initialize({"code": TMP_SIZE}, timeout=10)
    assert answer.status == 200, answer.body
    assert (await result(container, {}))["sizes"] == [isolation.tmp_bytes(128)] * 2


CHATTY = """
import sys
def main(args):
    print("out", args["n"])
    print("err", args["n"], file=sys.stderr)
    return {}
"""


async def test_a_taken_spare_whose_output_was_read_while_it_waited_logs_its_runs(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given started spares, their output read (and their exit watched) while they wait
    await zygotic.create(zygotic.zygote_kind, 256, {}, tenant="guest")
    zygote = running_zygote(zygotic)
    await zygote.filled()
    assert zygote.spares == 2 and all(spare.runtime is not None for spare in zygote._spares)
    # When a container takes one and runs twice
    container = await python(zygotic, CHATTY)
    for n in (1, 2):
        await result(container, {"n": n})
        logs = await container.logs(10_000, wait=5)
        # Then each run's lines are its logs, from both streams
        by_stream = {(line.stream, line.text) for line in logs.lines}
        assert by_stream == {("stdout", f"out {n}"), ("stderr", f"err {n}")}
    # And its exit is seen: destroyed, its runtime is gone
    pid = container.pid
    await container.destroy()
    assert await until(lambda: gone(pid))


async def test_a_started_spare_waits_in_a_directory_a_container_takes_whole(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given started spares, each in a directory of its own with its listening socket and
    # the pid file a container's directory holds (written ahead, off a cold start's path)
    await python(zygotic, PROBE)
    zygote = running_zygote(zygotic)
    await zygote.filled()
    spares: dict[int, Path] = {}
    for spare in zygote._spares:
        assert spare.directory is not None
        spares[spare.pid] = spare.directory
    for pid, directory in spares.items():
        assert directory.parent == zygotic.workdir / "spares"
        assert (directory / "proxy.sock").is_socket()
        assert (directory / "pid").read_text().split()[0] == str(pid)
    # When a container takes one
    container = await python(zygotic, PROBE)
    assert (await result(container, {}))["pid"] == 1
    # Then the spare's directory is the container's, renamed with its pid file
    assert container.pid in spares
    assert not spares[container.pid].exists()
    assert (container.directory / "pid").read_text().split()[0] == str(container.pid)
    assert sorted(p.name for p in container.directory.iterdir()) == ["pid", "proxy.sock"]
    # And once destroyed nothing of it is left, nor of a spare discarded at close
    await container.destroy()
    assert not container.directory.exists()
    await zygote.close()
    assert not [p for p in spares.values() if p.exists()]


async def test_a_spare_that_died_is_not_taken(zygotic: ProcessContainerFactory) -> None:
    # Given started spares, one of which was killed while it waited
    await python(zygotic, PROBE)
    zygote = running_zygote(zygotic)
    await zygote.filled()
    victim = zygote._spares[0]
    os.kill(victim.pid, signal.SIGKILL)
    assert await until(lambda: not victim.alive())
    # When containers are created, Then each is served by a live runtime
    for _ in range(3):
        assert (await result(await python(zygotic, PROBE), {}))["pid"] == 1


async def test_spares_are_watched_with_descriptors_past_1024(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given two started spares whose pidfds are past select's limit (an invoker with
    # hundreds of containers), the second of which was killed
    await python(zygotic, PROBE)
    zygote = running_zygote(zygotic)
    await zygote.filled()
    live, dead = zygote._spares
    for spare, fd in ((live, 1500), (dead, 1501)):
        os.dup2(spare.pidfd, fd)
        os.close(spare.pidfd)
        spare.pidfd = fd
    os.kill(dead.pid, signal.SIGKILL)
    # Then the first is seen alive, the second dead
    assert live.alive()
    assert await until(lambda: not dead.alive())
    # And containers are served by live runtimes, the dead spare never taken
    for _ in range(2):
        assert (await result(await python(zygotic, PROBE), {}))["pid"] == 1
    assert live not in zygote._spares and dead not in zygote._spares


async def test_a_spare_that_dies_as_it_is_taken_is_replaced(
    zygotic: ProcessContainerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given started spares, one of which dies right after its liveness was checked (the
    # check is made to pass once more for it: the window between check and take)
    await python(zygotic, PROBE)
    zygote = running_zygote(zygotic)
    await zygote.filled()
    victim = zygote._spares[0]
    os.kill(victim.pid, signal.SIGKILL)
    assert await until(lambda: not victim.alive())
    checked = Spare.alive
    monkeypatch.setattr(Spare, "alive", lambda spare: spare is victim or checked(spare))
    # When a container is created, Then another runtime serves it
    container = await python(zygotic, PROBE)
    assert (await result(container, {}))["pid"] == 1
    assert victim not in zygote._spares


async def test_after_a_burst_the_zygote_keeps_more_spares_for_a_while(
    zygotic: ProcessContainerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a zygote with its 2 spares, where 8 creates at once are a burst and grown
    # spares are kept long after it (so that a slow refill on a loaded machine is not
    # outlived by the ttl; the ttl is ended below)
    monkeypatch.setattr(sparedemand, "BURST_CREATES", 8)
    monkeypatch.setattr(sparedemand, "BURST_SPARES_TTL_S", 600.0)
    await python(zygotic, PROBE)
    zygote = running_zygote(zygotic)
    zygote._schedule.demand = sparedemand.SpareDemand(2)  # the constants above
    await zygote.filled()
    assert zygote.spares == 2
    # When 10 containers are created at once
    burst = await asyncio.gather(*(python(zygotic, PROBE, 128) for _ in range(10)))
    # Then each serves, alone in its pid namespace
    assert [(await result(c, {}))["pid"] for c in burst] == [1] * 10
    # And once the burst is over as many started spares wait as it had creates waiting
    # at once (the first two may have taken theirs before the last began), each in a
    # cgroup of its own
    await zygote.filled()
    grown = zygote.spares
    assert 8 <= grown <= 10 and grown == zygote._schedule.demand.wanted
    groups = [spare.cgroup for spare in zygote._spares]
    assert len({group.name for group in groups}) == grown
    # And once the ttl after the burst is over (its timer made due now: the ttl is cut to
    # 0 and the timer fires) the count is back to 2: the others are gone, with their cgroups
    schedule = zygote._schedule
    assert schedule._shrink_timer is not None  # the ttl's timer, set by the burst
    schedule.demand._ttl = 0.0
    schedule._shrink_timer.cancel()
    schedule._shrink_due()
    assert await until(lambda: zygote.spares == 2)
    await zygote.filled()
    kept = {spare.cgroup.name for spare in zygote._spares}
    dropped = [group for group in groups if group.name not in kept]
    assert len(dropped) == grown - 2
    assert await until(lambda: not any(d.exists() for g in dropped for d in g.directories))


async def test_no_spare_is_forked_while_a_bursts_creates_wait(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given a zygote with its 2 spares, whose demand counts a burst from one create
    await python(zygotic, PROBE)
    zygote = running_zygote(zygotic)
    await zygote.filled()
    demand = sparedemand.SpareDemand(2, ceiling=10, burst=1)
    zygote._schedule.demand = demand
    # When 6 creates wait at once (the burst wants 6 spares) and a refill is asked for
    for _ in range(6):
        demand.started(0.0)
    assert demand.bursting and demand.wanted == 6
    zygote.replenish()
    await zygote.filled()
    # Then no spare was forked while they wait
    assert zygote.spares == 2
    # When they have their runtimes, Then the refill forks the 4 missing
    for _ in range(6):
        demand.ended()
    zygote.replenish()
    await zygote.filled()
    assert zygote.spares == 6


async def test_a_zip_actions_own_modules_import_after_the_spares_rehearsal(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given a started spare (it rehearsed an /init in the same action directory name)
    await python(zygotic, PROBE)
    await running_zygote(zygotic).filled()
    # When a zip action whose __main__ imports a module of its own is initialized in it
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("__main__.py", "import helper\ndef main(a):\n    return helper.v()\n")
        archive.writestr("helper.py", "def v():\n    return {'helper': True}\n")
    code = base64.b64encode(buffer.getvalue()).decode()
    container = await zygotic.create(zygotic.zygote_kind, 256, tenant="guest")
    answer = await container.initialize({"code": code, "binary": True}, timeout=10)
    # Then its module is found, and runs
    assert answer.status == 200, answer.body
    assert await result(container, {}) == {"helper": True}


async def test_there_is_no_network_but_its_own_loopback(zygotic: ProcessContainerFactory) -> None:
    # Given a server on the host's loopback
    with socket.create_server(("127.0.0.1", 0)) as server:
        container = await python(zygotic, PROBE)
        # When a forked container connects to it, Then its 127.0.0.1 is its own
        seen = await result(container, {"connect": server.getsockname()[1]})
        assert seen["connected"] == "ConnectionRefusedError"


async def test_a_memory_hog_is_killed_and_reported(zygotic: ProcessContainerFactory) -> None:
    # Given a forked container with 128 MB running an action that fills twice that
    code = "def main(a):\n    hog = b'x' * (a['mb'] * MIB)\n    return {'n': len(hog)}\nMIB = 2**20"
    container = await python(zygotic, code, memory_mb=128)
    # When it runs, Then the kernel killed it in its cgroup and the answer says so
    answer = await container.run({"value": {"mb": 256}}, timeout=30)
    assert answer.exited and answer.oom and container.oom_killed
    # And the zygote lives on: the next container runs
    survivor = await python(zygotic, code, memory_mb=128)
    assert await result(survivor, {"mb": 16}) == {"n": 16 * MIB}
    assert running_zygote(zygotic).alive


async def test_a_fork_bomb_stops_at_the_pids_limit(
    zygotic: ProcessContainerFactory, fork_bomb: ForkBomb
) -> None:
    # Given a forked container running a fork bomb, When destroyed, Then its cgroup is
    # empty (see the fixture in tests/unit/sandbox/conftest.py)
    bombed = await fork_bomb(zygotic, "guest")
    assert bombed.sandbox_pid is not None and running_zygote(zygotic).alive
    # And the zygote still forks containers
    assert await result(await python(zygotic, PROBE), {})


ORPHANS = """
import os, subprocess, sys
kept = []
def main(args):
    if args.get("start"):
        # A child of its own that exits with 3 at once, waited for in a later activation
        kept.append(subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]))
        # And an orphan: its parent (the shell) exits at once, the sleep a moment later
        subprocess.run(["/bin/sh", "-c", "sleep 0.1 &"], check=True)
        return {"own": kept[0].pid}
    if args.get("wait"):
        return {"status": kept[0].wait()}
    zombies = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with open(f"/proc/{entry}/stat") as file:
                stat = file.read()
            if stat[stat.rfind(")") + 2] == "Z":
                zombies.append(int(entry))
    return {"zombies": zombies, "pid": os.getpid()}
"""


async def test_the_runtime_reaps_orphans_but_not_its_own_children(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given a forked container (its runtime is its pid namespace's init) whose action
    # left a child of its own that exited, not waited for, and an orphan that exits
    container = await python(zygotic, ORPHANS)
    own = (await result(container, {"start": True}))["own"]
    # When activations go on, Then the orphan is reaped between them, and the own child
    # is left a zombie for the action to wait for (bounded: a deadline, 20 ms apart)
    seen: dict[str, Any] = {}
    async with asyncio.timeout(DEADLINE_S):
        while seen.get("zombies") != [own]:
            seen = await result(container, {})
            await asyncio.sleep(0.02)
    assert seen["pid"] == 1
    # And the action gets its own child's exit status
    assert await result(container, {"wait": True}) == {"status": 3}
    assert (await result(container, {}))["zombies"] == []


async def test_a_container_cannot_signal_the_zygote_or_its_neighbours(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given a container running, and another whose action kills every process it can
    neighbour = await python(zygotic, PROBE)
    killer = await python(zygotic, KILL_ALL)
    zygote = running_zygote(zygotic)
    await zygote.filled()  # no spare being forked: its short-lived first process would go
    # When the killer runs, Then there was nothing it could signal (it is its namespace's
    # init, and nothing outside its pid namespace exists for it)
    assert await result(killer, {}) == {"error": "ProcessLookupError"}
    assert zygote.alive and not any(gone(pid) for pid in zygote.pids())
    assert (await result(neighbour, {}))["pid"] == 1


async def test_destroy_kills_every_process(zygotic: ProcessContainerFactory) -> None:
    # Given a forked container whose action left a long-running child behind
    container = await python(zygotic, SPAWN)
    await result(container, {})
    assert container.cgroup is not None
    members = container.cgroup.pids()
    assert len(members) == 2  # the runtime (its pid 1), the child
    # When it is destroyed
    await container.destroy()
    # Then all of them are gone, with its directory and cgroup
    assert await until(lambda: all(gone(pid) for pid in members))
    assert not container.directory.exists()
    assert not any(d.exists() for d in container.cgroup.directories)


async def test_when_the_zygote_dies_its_containers_die_and_starts_fall_back(
    zygotic: ProcessContainerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a forked container with a child process, and the zygote's spares
    container = await python(zygotic, SPAWN)
    await result(container, {})
    zygote = running_zygote(zygotic)
    assert await until(lambda: zygote.spares == 2)
    assert container.cgroup is not None
    victims = container.cgroup.pids() | zygote.pids()
    # When the zygote is killed
    monitor = zygote._process.pid  # the bubblewrap monitor of its sandbox
    assert monitor is not None
    os.kill(monitor, signal.SIGKILL)
    # Then every process of it, of its spares and of its containers goes too
    assert await until(lambda: all(gone(pid) for pid in victims))
    answer = await container.run({"value": {}}, timeout=10)
    assert answer.exited
    # And the next container of the kind is started by bubblewrap, with a warning saying so
    with caplog.at_level(logging.WARNING, logger="squall.sandbox.process"):
        started = await python(zygotic, PROBE)
    assert "zygote exited" in caplog.text
    assert zygotic.zygote is None and started.sandbox_pid != started.pid
    assert (await result(started, {}))["uid"] == 65534


async def test_close_leaves_no_process_and_no_cgroup(tmp_path: Path, anyio_backend: str) -> None:
    # Given a factory with a zygote, its spares and a running container
    factory = ProcessContainerFactory(tmp_path / "containers", "https://api")
    container = await python(factory, SPAWN)
    await result(container, {})
    zygote = running_zygote(factory)
    assert await until(lambda: zygote.spares == 2)
    assert container.cgroup is not None
    processes = container.cgroup.pids() | zygote.pids()
    confinement = factory._confinement
    assert confinement is not None
    # When the factory is closed
    await factory.close()
    # Then no process of it is left, and neither are its cgroups
    assert await until(lambda: all(gone(pid) for pid in processes))
    assert not any(d.exists() for d in confinement.cgroups.directories)
    # And nothing is left in its directory: the spares' sockets went with them
    assert [p.name for p in (tmp_path / "containers").iterdir() if not p.name.startswith(".")] == []


# An "invoker" that starts a forked container running a child process, waits until the
# zygote's spares are complete, prints every pid of the zygote and the container, then waits
# to be killed.
INVOKER = """
import asyncio, json, sys, time
from pathlib import Path
from squall.sandbox.process import ProcessContainerFactory

async def main():
    factory = ProcessContainerFactory(Path(sys.argv[1]), "https://api")
    container = await factory.create(factory.zygote_kind, 256, tenant="guest")
    await container.initialize({"code": sys.argv[2]}, timeout=10)
    await container.run({"value": {}}, timeout=10)
    zygote = factory.zygote
    deadline = time.monotonic() + 10
    while zygote.spares < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await zygote.filled()  # no spare being forked (its first process is short-lived)
    pids = container.cgroup.pids() | zygote.pids()
    print(json.dumps(sorted(pids)), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_nothing_is_left_when_the_invoker_dies(tmp_path: Path, anyio_backend: str) -> None:
    # Given an invoker process with a zygote, its spares and a forked container
    invoker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        INVOKER,
        str(tmp_path / "containers"),
        textwrap.dedent(SPAWN),
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    assert invoker.stdout is not None
    pids = json.loads(await asyncio.wait_for(invoker.stdout.readline(), timeout=30))
    # (bwrap's monitor and init, the zygote; the container's runtime and child; each
    # spare's runtime)
    assert len(pids) == 7 and not any(gone(pid) for pid in pids)
    # When the invoker is killed without any chance to clean up
    invoker.kill()
    await invoker.wait()
    # Then every one of them goes too
    assert await until(lambda: all(gone(pid) for pid in pids))


async def test_without_isolation_there_is_no_zygote(tmp_path: Path, anyio_backend: str) -> None:
    # Given a factory without isolation, When a default Python kind container is made
    factory = ProcessContainerFactory(tmp_path, "https://api", isolation=None)
    try:
        container = await python(factory, PROBE)
        # Then it is a plain process, started as before
        assert factory.zygote is None and container.cgroup is None
        assert (await result(container, {}))["pid"] == container.pid
    finally:
        await factory.close()


SECRETS = """
import random
def main(args):
    return {"hash": hash("squall"), "random": random.getrandbits(64)}
"""


async def test_namespaces_share_no_hash_seed_and_no_random_state(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given two containers of one namespace and one of another, all forked
    first = await result(await python(zygotic, SECRETS, tenant="alice"), {})
    second = await result(await python(zygotic, SECRETS, tenant="alice"), {})
    other = await result(await python(zygotic, SECRETS, tenant="bob"), {})
    alice, bob = zygotic.zygote_of("alice"), zygotic.zygote_of("bob")
    assert alice is not None and bob is not None and alice is not bob
    # Then each namespace has a zygote, so a hash seed, of its own (one namespace's
    # containers share their zygote's)
    assert other["hash"] != first["hash"] == second["hash"]
    # And random is re-seeded in every forked container
    assert len({first["random"], second["random"], other["random"]}) == 3


async def test_a_container_for_no_known_namespace_is_not_forked(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given a default Python kind container any namespace may take later (a stem cell)
    container = await zygotic.create(zygotic.zygote_kind, 256)
    # Then no zygote forked it: bubblewrap started a fresh interpreter (its monitor is
    # in the container's cgroup, with init and the runtime)
    assert zygotic.zygote is None
    assert container.cgroup is not None and len(container.cgroup.pids()) == 3


async def test_at_the_limit_an_idle_zygote_makes_room(tmp_path: Path, anyio_backend: str) -> None:
    # Given a factory that keeps at most one zygote, whose namespace has no container left
    factory = ProcessContainerFactory(tmp_path / "containers", "https://api", zygotes=1)
    try:
        await (await python(factory, PROBE, tenant="alice")).destroy()
        alice = factory.zygote_of("alice")
        assert alice is not None
        # When another namespace needs one
        busy = await python(factory, PROBE, tenant="bob")
        # Then alice's zygote was closed for bob's
        assert factory.zygote_of("alice") is None and not alice.alive
        assert factory.zygote_of("bob") is not None
        # And while bob's container lives, a third namespace starts without a zygote
        carol = await python(factory, PROBE, tenant="carol")
        assert factory.zygote_of("carol") is None and carol.cgroup is not None
        assert len(carol.cgroup.pids()) == 3 and busy.cgroup is not None
    finally:
        await factory.close()


async def test_a_started_spares_first_connection_is_made_while_it_waits(
    zygotic: ProcessContainerFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given started spares, each with a connection to its listening socket made ahead
    await python(zygotic, PROBE)
    zygote = running_zygote(zygotic)
    await zygote.filled()
    assert zygote.spares == 2 and all(spare.connection is not None for spare in zygote._spares)
    connects: list[str] = []
    connect = UnixHttpClient._connect

    async def counted(client: UnixHttpClient, deadline: float | None) -> Any:
        connects.append(client._path)
        return await connect(client, deadline)

    monkeypatch.setattr(UnixHttpClient, "_connect", counted)
    # When a container takes one, is initialized and runs twice
    container = await python(zygotic, PROBE)
    for _ in range(2):
        assert (await result(container, {}))["pid"] == 1
    # Then its requests went over that connection: none was opened on their path
    assert connects == []
    # And a container whose runtime is forked on the spot (a zygote without spares)
    # connects on its first request
    spotty = ProcessContainerFactory(tmp_path / "spot", "https://api", zygote_spares=0)
    try:
        spot = await python(spotty, PROBE)
        assert (await result(spot, {}))["pid"] == 1
        assert connects == [str(spot.directory / "proxy.sock")]
    finally:
        await spotty.close()
