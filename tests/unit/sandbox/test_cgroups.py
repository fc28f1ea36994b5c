"""Cgroup detection, limits, freezing, killing and clean-up on this host's real cgroups."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _polling import until_blocking

from squall.errors import ContainerError
from squall.sandbox import cgrouptree
from squall.sandbox.cgroups import CgroupV2, Limits, cgroup_directory, directory_in
from squall.sandbox.cgrouptree import Hierarchy

V1_MOUNTS = """\
30 25 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
31 25 0:28 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory
32 25 0:29 / /sys/fs/cgroup/freezer rw,relatime shared:11 - cgroup cgroup rw,freezer
33 25 0:30 / /sys/fs/cgroup/pids rw,relatime shared:12 - cgroup cgroup rw,pids
"""


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "300"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def hierarchy() -> Hierarchy:
    return cgrouptree.detect()


@pytest.fixture
def root_name(hierarchy: Hierarchy) -> Iterator[str]:
    """A parent cgroup path of this test's own; its directories go away afterwards."""
    yield f"squall-test/{uuid.uuid4().hex[:8]}"
    for mount in hierarchy.mounts.values():
        with contextlib.suppress(OSError):
            (mount / "squall-test").rmdir()


def test_this_host_has_a_usable_hierarchy(hierarchy: Hierarchy) -> None:
    # Given this host, When cgroups are detected, Then memory and pids limits are possible
    if hierarchy.version == 1:
        assert {"memory", "pids", "freezer"} <= set(hierarchy.mounts)
        assert all((mount / "cgroup.procs").exists() for mount in hierarchy.mounts.values())
    else:
        controllers = (hierarchy.mounts["unified"] / "cgroup.controllers").read_text().split()
        assert {"memory", "pids"} <= set(controllers)


def test_a_pure_v2_host_is_detected(tmp_path: Path) -> None:
    # Given a unified hierarchy offering memory, pids and cpu
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    info = tmp_path / "mountinfo"
    info.write_text(f"30 25 0:26 / {tmp_path} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    # When detected, Then it is v2 with CPU weights
    assert cgrouptree.detect(info) == Hierarchy(2, {"unified": tmp_path}, cpu=True)


def test_a_hybrid_host_uses_its_v1_controllers(tmp_path: Path) -> None:
    # Given v1 controllers and an empty unified hierarchy next to them (this machine)
    (tmp_path / "cgroup.controllers").write_text("\n")
    info = tmp_path / "mountinfo"
    info.write_text(V1_MOUNTS + f"34 25 0:31 / {tmp_path} rw - cgroup2 cgroup2 rw\n")
    # When detected, Then v1 is used
    found = cgrouptree.detect(info)
    assert found.version == 1 and found.cpu
    assert found.mounts["memory"] == Path("/sys/fs/cgroup/memory")


def test_a_host_without_the_controllers_is_refused(tmp_path: Path) -> None:
    # Given only a cpu hierarchy, When detected, Then the error names what is missing
    info = tmp_path / "mountinfo"
    info.write_text(V1_MOUNTS.splitlines()[0] + "\n")
    with pytest.raises(ContainerError, match="memory, pids, freezer"):
        cgrouptree.detect(info)


def test_cpu_shares_convert_to_v2_weights() -> None:
    # The conversion runc uses: the v1 range 2..262144 onto v2's 1..10000
    weights = [Limits(0, 1, shares).cpu_weight for shares in (2, 1024, 262144, 1)]
    assert weights == [1, 39, 10000, 1]


def test_limits_are_written_and_removal_kills_members(
    hierarchy: Hierarchy, root_name: str, sleeper: subprocess.Popen[bytes]
) -> None:
    # Given a container cgroup with limits and a process in it
    root = hierarchy.root(root_name)
    root.prepare()
    try:
        group = root.create("c1", Limits(64 * 1024 * 1024, 16, 512))
        group.attach(sleeper.pid)
        assert group.pids() == {sleeper.pid}
        if hierarchy.version == 1:
            memory = hierarchy.mounts["memory"] / root_name / "c1"
            assert (memory / "memory.limit_in_bytes").read_text() == f"{64 * 1024 * 1024}\n"
            assert (hierarchy.mounts["pids"] / root_name / "c1" / "pids.max").read_text() == "16\n"
            assert (
                hierarchy.mounts["cpu"] / root_name / "c1" / "cpu.shares"
            ).read_text() == "512\n"
        # When it is frozen, Then its process stops; thawed, it runs again
        group.freeze()
        assert until_blocking(lambda: state(sleeper.pid) == "D")
        group.thaw()
        assert until_blocking(lambda: state(sleeper.pid) == "S")
        # When the cgroup is removed (while frozen), Then its process was killed first
        group.freeze()
        assert group.remove()
        assert sleeper.wait(5) == -9
        assert not any(d.exists() for d in group.directories)
        assert group.oom_kills() == 0 or hierarchy.version == 2
    finally:
        root.remove()


# Waits for a line on stdin, then forks children that fork, until pids.max stops them.
FORKER = """
import os, sys, time
sys.stdin.readline()
while True:
    try:
        if os.fork() == 0:
            continue  # the child forks too
    except OSError:
        time.sleep(0.001)
"""


def test_killing_a_forking_cgroup_leaves_it_empty(hierarchy: Hierarchy, root_name: str) -> None:
    # Given a cgroup whose processes keep forking, up to its pids limit
    root = hierarchy.root(root_name)
    root.prepare()
    forker = subprocess.Popen([sys.executable, "-c", FORKER], stdin=subprocess.PIPE)
    try:
        group = root.create("bomb", Limits(256 * 1024 * 1024, 48, 512))
        group.attach(forker.pid)
        assert forker.stdin is not None
        forker.stdin.write(b"go\n")
        forker.stdin.close()
        assert until_blocking(lambda: len(group.pids()) >= 40, timeout=30)
        # When it is removed (freeze, wait until frozen, kill, thaw; until empty)
        assert group.remove(timeout=30)
        # Then nothing is left in it: the kernel removed it, which it does only when empty
        assert not any(d.exists() for d in group.directories)
        assert forker.wait(5) == -9
    finally:
        forker.kill()
        forker.wait()
        root.remove()


def test_prepare_removes_what_a_crashed_invoker_left(
    hierarchy: Hierarchy, root_name: str, sleeper: subprocess.Popen[bytes]
) -> None:
    # Given a container cgroup with a live process, left behind
    root = hierarchy.root(root_name)
    root.prepare()
    try:
        root.create("left", Limits(64 * 1024 * 1024, 16, 512)).attach(sleeper.pid)
        # When a new parent is prepared at the same place
        cleaned = hierarchy.root(root_name).prepare()
        # Then the process was killed and the cgroup removed
        assert cleaned == 1
        assert sleeper.wait(5) == -9
        assert not any((d / "left").exists() for d in root.directories)
    finally:
        root.remove()


def test_v2_freeze_and_kill_on_the_unified_hierarchy(
    sleeper: subprocess.Popen[bytes], root_name: str
) -> None:
    # Given this host's cgroup v2 mount (without controllers on a hybrid host: freezing
    # and killing are core v2 features) and a process in a v2 cgroup of ours
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    unified = next(Path(m.split()[4]) for m in mounts if " - cgroup2 " in m)
    directory = unified / root_name / "c1"
    directory.mkdir(parents=True)
    group = CgroupV2("c1", directory, cpu=False)
    try:
        group.attach(sleeper.pid)
        # When frozen, Then it stops; thawed, it runs
        group.freeze()
        assert until_blocking(lambda: group.frozen() and state(sleeper.pid) in ("D", "S", "T"))
        group.thaw()
        assert until_blocking(lambda: not group.frozen())
        # When killed and removed, Then the process is gone and so is the directory
        assert group.remove()
        assert sleeper.wait(5) == -9
        assert not directory.exists()
    finally:
        for path in (directory, directory.parent, directory.parent.parent):
            with contextlib.suppress(OSError):
                path.rmdir()


# Writes SHMEM_MB to a tmpfs file and FILE_MB to a disk file, reads the disk file back
# twice (its cache pages turn active), prints "ready" and waits for stdin.
CACHES = """
import sys
shm, disk = sys.argv[1], sys.argv[2]
with open(shm, "wb") as f:
    f.write(b"s" * ({shmem} << 20))
with open(disk, "wb") as f:
    f.write(b"f" * ({file} << 20))
for _ in range(2):
    with open(disk, "rb") as f:
        while f.read(1 << 20):
            pass
print("ready", flush=True)
sys.stdin.readline()
"""
SHMEM_MB = 24
FILE_MB = 48


def test_memory_used_counts_tmpfs_but_not_page_cache(
    hierarchy: Hierarchy, root_name: str, tmp_path: Path
) -> None:
    # Given a container cgroup whose process wrote a tmpfs file and a disk file (page cache)
    root = hierarchy.root(root_name)
    root.prepare()
    shm = Path("/dev/shm") / f"squall-test-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.stdin.readline(); exec(sys.argv[3])",
            str(shm),
            str(tmp_path / "disk"),
            CACHES.format(shmem=SHMEM_MB, file=FILE_MB),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        group = root.create("c1", Limits(512 * 1024 * 1024, 64, 512))
        group.attach(process.pid)
        process.stdin.write(b"go\n")
        process.stdin.flush()
        assert process.stdout.readline() == b"ready\n"
        # When its memory use is read
        used = group.memory_used()
        # Then the tmpfs file counts (it cannot be reclaimed), the disk file's cache not
        assert used is not None
        mib = 1024 * 1024
        assert SHMEM_MB * mib <= used < (SHMEM_MB + FILE_MB // 2) * mib, used / mib
    finally:
        process.kill()
        process.communicate()  # closes its pipes
        shm.unlink(missing_ok=True)
        root.remove()


def test_a_cgroup_path_is_read_and_kept_under_the_cgroup_root() -> None:
    # Given /proc/<pid>/cgroup texts of a hybrid host, and of a cgroup namespace's member
    hybrid = "4:memory:/docker/abc\n6:freezer:/docker/abc\n0::/docker/abc\n"
    namespaced = "4:memory:/../../abc\n0::/../..\n"
    # Then each controller's directory is under its hierarchy, v2's under the root
    assert directory_in(hybrid, "memory") == Path("/sys/fs/cgroup/memory/docker/abc")
    assert directory_in(hybrid, "freezer") == Path("/sys/fs/cgroup/freezer/docker/abc")
    assert directory_in(hybrid, None) == Path("/sys/fs/cgroup/docker/abc")
    assert directory_in("0::/\n", None) == Path("/sys/fs/cgroup")
    assert directory_in(hybrid, "pids") is None
    # and a path leading outside the cgroup mounts is refused
    assert directory_in(namespaced, "memory") is None
    assert directory_in(namespaced, None) is None
    # And this process's own is found where the kernel has it
    own = cgroup_directory(os.getpid(), None)
    assert own is not None and own.is_relative_to("/sys/fs/cgroup")
