"""What an isolated container can and cannot do, checked from inside real sandboxes.

Each test starts real runtimes in bubblewrap namespaces and cgroups (this machine has
them; with ``CI=true`` a host without them fails here rather than skipping) and has the
action probe its own limits.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from sandboxsupport import ForkBomb

from squall.errors import ContainerError
from squall.sandbox.isolation import DEFAULT_NOFILE, DEFAULT_PIDS_MAX, Isolation, confine
from squall.sandbox.process import ProcessContainer, ProcessContainerFactory

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024

# Tries a list of file operations and reports, per path, "ok" or the error's class name.
PROBE_FILES = """
import os
def main(args):
    out = {}
    for op, path in args["ops"]:
        try:
            if op == "read":
                with open(path, "rb") as f:
                    f.read(1)
            elif op == "list":
                os.listdir(path)
            else:
                with open(path, "w") as f:
                    f.write("x")
            out[op + " " + path] = "ok"
        except OSError as ex:
            out[op + " " + path] = type(ex).__name__
    return out
"""

PROBE_SELF = """
import os, resource, socket
def main(args):
    status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines())
    return {"uid": os.getuid(), "gid": os.getgid(), "caps": status["CapEff"].strip(),
            "no_new_privs": status["NoNewPrivs"].strip(), "pid": os.getpid(),
            "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            "hostname": socket.gethostname(), "processes": sorted(
                int(p) for p in os.listdir("/proc") if p.isdigit())}
"""

CONNECT = """
import socket
def main(args):
    try:
        socket.create_connection(("127.0.0.1", args["port"]), timeout=2).close()
        return {"connected": True}
    except OSError as ex:
        return {"connected": False, "error": type(ex).__name__}
"""


def exists(pid: int) -> bool:
    """Whether ``pid`` exists at all (a zombie too)."""
    return os.path.exists(f"/proc/{pid}")


async def python(
    factory: ProcessContainerFactory, code: str, memory_mb: int = 256
) -> ProcessContainer:
    container = await factory.create("python:3.11", memory_mb)
    answer = await container.initialize({"code": textwrap.dedent(code)}, timeout=10)
    assert answer.status == 200, answer.body
    return container


async def result(container: ProcessContainer, value: Any, timeout: float = 10) -> Any:
    answer = await container.run({"value": value}, timeout=timeout)
    assert answer.status == 200, answer
    return json.loads(answer.body)


async def test_the_sandbox_sees_only_what_the_runtime_needs(
    factory: ProcessContainerFactory,
) -> None:
    # Given an isolated container, and the invoker's own files next to it
    container = await python(factory, PROBE_FILES)
    secret = factory.workdir.parent / "squall.db"
    secret.write_text("store")
    ops = [
        ["read", "/etc/shadow"],
        ["read", str(secret)],
        ["list", str(factory.workdir)],
        ["list", str(container.directory)],
        ["list", "/home"],
        ["list", "/root"],
        ["list", "/sys"],
        ["read", "/etc/passwd"],
        ["read", "/usr/bin/env"],
    ]
    # When the action tries to read them
    seen = await result(container, {"ops": ops})
    # Then host secrets, the invoker's state and the container's host directory do not
    # exist in there; system files do
    assert seen == {
        "read /etc/shadow": "FileNotFoundError",
        f"read {secret}": "FileNotFoundError",
        f"list {factory.workdir}": "FileNotFoundError",
        f"list {container.directory}": "FileNotFoundError",
        "list /home": "FileNotFoundError",
        "list /root": seen["list /root"],  # holds the interpreter's prefix when it lives there
        "list /sys": "FileNotFoundError",
        "read /etc/passwd": "ok",
        "read /usr/bin/env": "ok",
    }
    assert seen["list /root"] in ("ok", "FileNotFoundError")


async def test_only_tmp_is_writable_and_it_is_capped(factory: ProcessContainerFactory) -> None:
    # Given an isolated container with 128 MB of memory (so /tmp holds at most 128 MB)
    container = await python(factory, PROBE_FILES, memory_mb=128)
    targets = ["/x", "/etc/x", "/dev/x", "/usr/x", "/opt/squall/python/x", "/root/x"]
    targets += ["/etc/passwd", "/proc/sys/vm/swappiness", str(container.directory / "x")]
    # When the action writes everywhere
    seen = await result(
        container, {"ops": [["write", p] for p in [*targets, "/tmp/x", "/dev/shm/x"]]}
    )
    # Then only /tmp (and /dev/shm) accept it
    assert seen.pop("write /tmp/x") == "ok"
    assert seen.pop("write /dev/shm/x") == "ok"
    assert set(seen.values()) <= {"OSError", "PermissionError", "FileNotFoundError"}, seen
    # And /tmp is a tmpfs of the container's memory size
    fill = """
        import os
        def main(a):
            s = os.statvfs("/tmp")
            return {"bytes": s.f_blocks * s.f_frsize}
    """
    sized = await python(factory, fill, memory_mb=128)
    assert (await result(sized, {}))["bytes"] == 128 * MIB


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:20"])
async def test_the_runtime_runs_unprivileged_and_alone(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given an isolated container
    if kind == "python:3.11":
        container = await python(factory, PROBE_SELF)
        seen = await result(container, {})
        # When the action looks at itself, Then it is nobody, without capabilities, in its
        # own pid namespace (init, the runtime: nothing of the host), with its limits
        assert (seen["uid"], seen["gid"], seen["caps"]) == (65534, 65534, "0000000000000000")
        assert seen["no_new_privs"] == "1" and seen["hostname"] == "squall"
        assert seen["processes"] == [1, 2] and seen["pid"] == 2
        assert seen["nofile"] == [DEFAULT_NOFILE, DEFAULT_NOFILE]
    else:
        container = await factory.create(kind, 256)
        code = "function main() { return {uid: process.getuid(), pid: process.pid} }"
        assert (await container.initialize({"code": code}, timeout=10)).status == 200
        assert await result(container, {}) == {"uid": 65534, "pid": 2}
    # And its cgroup holds its limits
    assert container.cgroup is not None
    memory = container.cgroup.directories[0]
    assert (memory / "memory.limit_in_bytes").read_text().strip() == str(256 * MIB)
    assert (memory / "memory.memsw.limit_in_bytes").read_text().strip() == str(256 * MIB)
    pids = Path(str(memory).replace("/memory/", "/pids/"))
    assert (pids / "pids.max").read_text().strip() == str(DEFAULT_PIDS_MAX)


async def test_no_user_namespace_can_be_created_inside(factory: ProcessContainerFactory) -> None:
    # Given an isolated container, When the action tries to unshare a user namespace
    code = """
        import ctypes, os
        def main(a):
            libc = ctypes.CDLL(None, use_errno=True)
            rc = libc.unshare(0x10000000)  # CLONE_NEWUSER
            return {"rc": rc, "errno": ctypes.get_errno()}
    """
    container = await python(factory, code)
    # Then it is refused (bubblewrap's --disable-userns)
    seen = await result(container, {})
    assert seen["rc"] == -1 and seen["errno"] != 0


async def test_the_network_is_loopback_only(factory: ProcessContainerFactory) -> None:
    # Given a server listening on the host's loopback
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        container = await python(factory, CONNECT)
        # When an isolated action connects to it, Then the connection is refused: its
        # 127.0.0.1 is its own
        assert await result(container, {"port": port}) == {
            "connected": False,
            "error": "ConnectionRefusedError",
        }


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (
            "python:3.11",
            "def main(a):\n    hog = b'x' * (a['mb'] * 1024 * 1024)\n    return {'n': len(hog)}",
        ),
        (
            "nodejs:20",
            "function main(a) { const b = Buffer.alloc(a.mb * 1024 * 1024, 1);"
            " return {n: b.length} }",
        ),
    ],
)
async def test_a_memory_hog_is_killed_and_reported(
    factory: ProcessContainerFactory, kind: str, code: str
) -> None:
    # Given a container with 128 MB running an action that fills twice that
    container = await factory.create(kind, 128)
    assert (await container.initialize({"code": code}, timeout=10)).status == 200
    # When it runs
    answer = await container.run({"value": {"mb": 256}}, timeout=30)
    # Then the kernel killed it and the answer says so
    assert answer.exited and answer.oom and not answer.timed_out
    assert container.oom_killed
    await container.destroy()
    # And a container with the same limit that stays within it is fine
    small = await factory.create(kind, 128)
    assert (await small.initialize({"code": code}, timeout=10)).status == 200
    answer = await small.run({"value": {"mb": 16}}, timeout=30)
    assert json.loads(answer.body) == {"n": 16 * MIB} and not answer.oom


async def test_a_fork_bomb_stops_at_the_pids_limit(
    factory: ProcessContainerFactory, fork_bomb: ForkBomb
) -> None:
    # Given, When, Then: see the fixture (tests/unit/sandbox/conftest.py)
    await fork_bomb(factory)


async def test_a_second_init_is_refused_inside_the_sandbox(
    factory: ProcessContainerFactory,
) -> None:
    # Given an initialized isolated container
    container = await python(factory, "def main(a):\n    return {}")
    # When /init comes again, Then the runtime answers 403
    again = await container.initialize({"code": "def main(a):\n    return {'x': 1}"}, 10)
    assert (again.status, json.loads(again.body)) == (
        403,
        {"error": "Cannot initialize the action more than once."},
    )


async def test_a_host_without_bubblewrap_is_refused(anyio_backend: str) -> None:
    # Given no bubblewrap binary, When isolation is detected, Then the message says what
    # to install and how to run without isolation
    with pytest.raises(ContainerError) as refused:
        Isolation.detect(bwrap="/nonexistent/bwrap")
    assert "apt-get install bubblewrap" in refused.value.message
    assert "--unsafe-no-isolation" in refused.value.message


async def test_two_factories_cannot_share_a_directory(tmp_path: Path, anyio_backend: str) -> None:
    # Given a live factory on a directory
    first = ProcessContainerFactory(tmp_path, "https://api")
    try:
        # When a second one is made on it, Then it is refused
        with pytest.raises(ContainerError, match="another invoker"):
            ProcessContainerFactory(tmp_path, "https://api")
    finally:
        await first.close()
    # And once the first is closed, the directory is free
    await ProcessContainerFactory(tmp_path, "https://api").close()


async def test_without_isolation_runtimes_are_plain_processes(
    tmp_path: Path, anyio_backend: str
) -> None:
    # Given a factory explicitly without isolation
    factory = ProcessContainerFactory(tmp_path, "https://api", isolation=None)
    try:
        container = await python(factory, PROBE_FILES)
        # When the action looks at the host, Then it sees it (the unsafe mode's point)
        seen = await result(container, {"ops": [["list", str(tmp_path)]]})
        assert seen == {f"list {tmp_path}": "ok"}
        assert container.cgroup is None and container.sandbox_pid is None
    finally:
        await factory.close()


def host_uid(pid: int) -> int:
    """The real uid of ``pid`` on the host (``ps -o uid``'s column, from the same file)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


@pytest.mark.parametrize(
    ("kind", "tenant"), [("nodejs:20", None), ("python:3.11", None), ("python:3.13", "guest")]
)
async def test_root_inside_is_an_unprivileged_uid_on_the_host(
    factory: ProcessContainerFactory, kind: str, tenant: str | None
) -> None:
    # Given a container started through bubblewrap, or forked by a namespace's zygote
    container = await factory.create(kind, 256, tenant=tenant)
    assert container.cgroup is not None
    members = sorted(container.cgroup.pids())
    assert members
    # When the host looks at its processes' uids (what ps -o uid shows)
    uids = {host_uid(pid) for pid in members}
    # Then every one runs as one unprivileged uid of the sandboxes' range, not root
    isolation = factory.isolation
    assert isolation is not None
    assert len(uids) == 1, uids
    (uid,) = uids
    assert isolation.uid_base <= uid < isolation.uid_base + isolation.uid_count
    # And another container gets another one (a zygote's containers share its uid)
    other = await factory.create(kind, 256, tenant=tenant)
    assert other.cgroup is not None
    assert (host_uid(min(other.cgroup.pids())) == uid) == (tenant is not None)


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def members(procs_files: list[Path]) -> list[set[int]]:
    return [{int(pid) for pid in procs.read_text().split()} for procs in procs_files]


async def test_every_process_of_a_sandbox_is_in_its_cgroup_bubblewrap_included(
    factory: ProcessContainerFactory,
) -> None:
    # Given a container started through bubblewrap (no zygote for it: no tenant)
    container = await python(factory, "def main(args):\n    return {}\n")
    assert container.cgroup is not None and factory.supervisor is not None
    # When its processes are looked up: bubblewrap's monitor, the sandbox's init, the runtime
    monitor = container.pid
    (init,) = children(monitor)
    tree = {monitor, init, *children(init)}
    assert len(tree) == 3
    # Then every one of them is in every hierarchy of the container's cgroup
    for found in members(container.cgroup.procs_files):
        assert tree <= found
    await container.destroy()


async def test_a_spawn_that_cannot_join_its_cgroup_never_runs(
    factory: ProcessContainerFactory, tmp_path: Path
) -> None:
    # Given the supervisor, and a cgroup that does not exist
    supervisor = factory.supervisor
    assert supervisor is not None
    marker = tmp_path / "ran"
    missing = [Path("/sys/fs/cgroup/memory/squall-no-such-cgroup/cgroup.procs")]
    out_r, out_w = os.pipe()
    try:
        # When a process is spawned into it
        with pytest.raises(ContainerError):
            await supervisor.spawn(
                ["/bin/sh", "-c", f"touch {marker}"],
                {"PATH": "/usr/bin:/bin"},
                stdout=out_w,
                stderr=out_w,
                fds=[],
                uid=None,
                cgroup=missing,
            )
    finally:
        os.close(out_r)
        os.close(out_w)
    # Then the spawn fails and the command never ran
    assert not marker.exists()


async def test_a_spawned_process_is_born_in_the_cgroup_it_names(
    factory: ProcessContainerFactory,
) -> None:
    # Given a container's cgroup of the factory
    supervisor, confinement = factory.supervisor, factory._confinement
    assert supervisor is not None and confinement is not None
    cgroup = confinement.cgroups.create("born-inside", confinement.isolation.limits(64))
    read_r, write_w = os.pipe()
    try:
        # When the supervisor spawns a process into it, which waits on a pipe (given as
        # its descriptor 3: its stdin is /dev/null, where `read` would end it at once)
        spawned = await supervisor.spawn(
            ["/bin/sh", "-c", "read line <&3"],
            {"PATH": "/usr/bin:/bin"},
            stdout=write_w,
            stderr=write_w,
            fds=[read_r],
            uid=None,
            cgroup=cgroup.procs_files,
        )
        # Then it is in every hierarchy of that cgroup already, as the invoker gets its pid
        for found in members(cgroup.procs_files):
            assert spawned.pid in found
        os.kill(spawned.pid, 9)
        os.close(spawned.pidfd)
    finally:
        os.close(read_r)
        os.close(write_w)
        await cgroup.aremove()


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def running() -> list[list[str]]:
    """Every live process's command line (zombies have none)."""
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                lines.append(command_line(int(entry)))
    return lines


async def test_a_sandbox_born_confined_without_a_link_to_attach_is_not_held(
    factory: ProcessContainerFactory,
) -> None:
    # Given a factory without a network: bubblewrap is born in its container's cgroup and
    # makes a loopback-only network namespace itself, so the invoker has nothing to do
    # between its namespaces and the runtime
    # When a container starts through bubblewrap
    container = await python(factory, "def main(args):\n    return {'ok': True}\n")
    assert container.cgroup is not None
    # Then bubblewrap was not told to wait for the invoker on a block pipe
    argv = command_line(container.pid)
    assert "--info-fd" in argv and "--block-fd" not in argv
    # And it runs, with its three processes in every hierarchy of its cgroup
    answer = await container.run({"value": {}}, timeout=10)
    assert (answer.status, json.loads(answer.body)) == (200, {"ok": True})
    (init,) = children(container.pid)
    tree = {container.pid, init, *children(init)}
    for found in members(container.cgroup.procs_files):
        assert tree <= found
    await container.destroy()


async def test_a_sandbox_that_was_not_held_and_is_outside_its_cgroup_is_refused_and_killed(
    factory: ProcessContainerFactory, tmp_path: Path
) -> None:
    # Given a bubblewrap sandbox spawned without joining a container's cgroup (born in the
    # supervisor's) and without a block pipe, running a command that would go on forever
    supervisor, confinement = factory.supervisor, factory._confinement
    assert supervisor is not None and confinement is not None
    cgroup = confinement.cgroups.create("not-joined", confinement.isolation.limits(64))
    info_r, info_w = os.pipe()
    out_r, out_w = os.pipe()
    marker = f"squall-not-held-{os.getpid()}"
    argv = confinement.sandbox.command(
        ["/bin/sh", "-c", f"while :; do sleep 1; done # {marker}"],
        binds=[],
        tmp_bytes=MIB,
        info_fd=3,
        block_fd=None,
    )
    try:
        spawned = await supervisor.spawn(
            argv, {"PATH": "/usr/bin:/bin"}, stdout=out_w, stderr=out_w, fds=[info_w], uid=None
        )
        os.close(info_w)
        # When the invoker confines it without a block pipe
        with pytest.raises(ContainerError, match="not in its cgroup"):
            await confine(spawned.pid, info_r, None, cgroup, None, 10.0)
        # Then it is refused, never moved in after the fact, and killed, its sandbox too
        assert select.select([spawned.pidfd], [], [], 10.0)[0]  # bubblewrap exited
        assert members(cgroup.procs_files) == [set() for _ in cgroup.procs_files]
        for _ in range(200):  # reaped by the supervisor's pid 1: 10 s at most
            if not any(marker in " ".join(line) for line in running()):
                break
            await anyio.sleep(0.05)
        else:
            raise AssertionError("the sandbox outside its cgroup still runs")
        os.close(spawned.pidfd)
    finally:
        os.close(out_r)
        os.close(out_w)
        await cgroup.aremove()
