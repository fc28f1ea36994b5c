"""Control groups for containers: memory, pids and CPU limits, freezing, killing them all.

One interface over both kernel layouts (v1: one hierarchy per controller, the same
relative path in each; v2: one unified hierarchy); which one this host has, and where a
factory's cgroups live, is :mod:`squall.sandbox.cgrouptree`'s.

Limits written per container (:class:`Limits`):

- memory: v2 ``memory.max`` plus ``memory.swap.max = 0``; v1 ``memory.limit_in_bytes``
  plus ``memory.memsw.limit_in_bytes`` with the same value (no swap beyond the limit).
  Files a container writes to its tmpfs count against the same limit (shmem is charged
  to the cgroup that wrote it). v2 also sets ``memory.oom.group``: an OOM kill takes the
  whole container down at once.
- pids: ``pids.max`` (threads count too), so a fork bomb stops at the limit.
- CPU: v1 ``cpu.shares``; v2 ``cpu.weight`` converted from the same share value.

:meth:`Cgroup.memory_used` reads the memory the container uses now that the kernel cannot
reclaim: the usage (v1 ``memory.usage_in_bytes``, v2 ``memory.current``) less the page
cache that is not shared memory (``memory.stat``: v2 ``file - shmem``, v1
``total_cache - total_shmem``; the kernel's cgroup-v1/v2 memory docs). Page cache is
dropped before the kernel would kill anything; tmpfs files and shared memory (shmem) are
in the cache figures too but cannot be dropped, so they count, as do anonymous memory and
the kernel memory charged to the cgroup. A v1 kernel without ``total_shmem`` has only
the inactive file cache subtracted. The pool's MEMORY GUARD, :mod:`squall.invoker.memguard`,
retires containers near their limit by it.

Guarantees:

- :meth:`Cgroup.kill` sends SIGKILL to every process in the cgroup, including frozen ones
  (v2 ``cgroup.kill``; otherwise freeze, wait until the freezer reports ``FROZEN``, kill
  each member, thaw — a frozen cgroup cannot fork, so the members read once it is frozen
  are all of them, and frozen v1 tasks only die once thawed).
- :meth:`Cgroup.remove` / :meth:`Cgroup.aremove` kill whatever is left, wait (polling,
  bounded) until the cgroup is empty and remove its directories; they are idempotent.
  The directories can only be removed once no task is left in the cgroup (the kernel
  refuses with ``EBUSY``), so a removed cgroup is the proof that every process of it is
  gone — whatever became of their pids.

All methods are synchronous file writes of a few bytes; they run on the event loop
thread; ``remove`` blocks (bounded) while killed processes exit, so it is for start-up,
and containers use ``aremove``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

#: Where the host's cgroup hierarchies are mounted.
CGROUP_ROOT = Path("/sys/fs/cgroup")

#: How long ``remove``/``prepare`` wait for killed processes to leave a cgroup.
EMPTY_TIMEOUT_SECONDS = 5.0
#: How long :meth:`Cgroup.kill` waits for a v1 freezer to report ``FROZEN``.
FREEZE_WAIT_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class Limits:
    """What one container may use. ``cpu_shares`` is on the v1 scale (1024 = default)."""

    memory_bytes: int
    pids: int
    cpu_shares: int

    @property
    def cpu_weight(self) -> int:
        """``cpu_shares`` on the v2 ``cpu.weight`` scale (the conversion runc uses)."""
        shares = min(max(self.cpu_shares, 2), 262144)
        return 1 + ((shares - 2) * 9999) // 262142


def write(path: Path, value: str) -> None:
    """Write ``value`` to the cgroup file ``path``."""
    # One write() of the whole value: cgroup files take one value per write call.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def _pids(procs: Path) -> set[int]:
    try:
        return {int(line) for line in procs.read_text().split()}
    except FileNotFoundError:
        return set()


def _counter(path: Path, key: str) -> int | None:
    """The value of ``key`` in a flat keyed file (``memory.events``, ``oom_control``)."""
    try:
        return _flat_keyed(path.read_text()).get(key)
    except FileNotFoundError:
        return None


def _flat_keyed(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        try:
            values[name] = int(value)
        except ValueError:
            continue
    return values


def memory_in_use(usage: Path, stat: Path, v1: bool) -> int | None:
    """Bytes in ``usage`` less the page cache the kernel can reclaim (``stat``'s file
    cache that is not shmem; see the module docstring); None when the cgroup is gone or
    has no memory controller. ``v1``: the files are a v1 memory controller's."""
    try:
        used = int(usage.read_text())
        stats = _flat_keyed(stat.read_text())
    except (FileNotFoundError, ValueError):
        return None
    # v1 ``total_``: the hierarchical figures (the same as the plain ones in a leaf).
    prefix = "total_" if v1 else ""
    cache = stats.get("total_cache" if v1 else "file")
    shmem = stats.get(prefix + "shmem")
    if cache is not None and shmem is not None:
        reclaimable = max(0, cache - shmem)
    else:  # an old v1 kernel: no shmem figure, only the inactive file cache is certain
        reclaimable = stats.get(prefix + "inactive_file", 0)
    return max(0, used - reclaimable)


def cgroup_directory(pid: int, controller: str | None) -> Path | None:
    """The directory of ``pid``'s cgroup for ``controller`` (a v1 hierarchy's name, such
    as ``memory`` or ``freezer``), or its v2 cgroup for None; None when ``pid`` is gone
    or :func:`directory_in` finds none."""
    try:
        return directory_in(Path(f"/proc/{pid}/cgroup").read_text(), controller)
    except OSError:
        return None


def directory_in(proc_cgroup: str, controller: str | None) -> Path | None:
    """The directory a ``/proc/<pid>/cgroup`` text names for ``controller`` (as
    :func:`cgroup_directory`); None when it names none, or when the path leads outside
    :data:`CGROUP_ROOT` (an invoker in its own cgroup namespace reads paths relative to
    its namespace's root, such as ``/../..``: not where the files are)."""
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controller is None and line.startswith("0::"):
            root = CGROUP_ROOT
        elif controller is not None and controller in controllers.split(","):
            root = CGROUP_ROOT / controller
        else:
            continue
        directory = Path(os.path.normpath(f"{root}/{path.lstrip('/')}"))
        if directory != root and root not in directory.parents:
            return None
        return directory
    return None


def memory_reader(pid: int) -> tuple[Path, Path, bool] | None:
    """Where the memory use of ``pid``'s cgroup is read (the arguments of
    :func:`memory_in_use`): for a cgroup this module did not make (a Docker container's)."""
    d = cgroup_directory(pid, "memory")
    if d is not None:
        return d / "memory.usage_in_bytes", d / "memory.stat", True
    d = cgroup_directory(pid, None)
    if d is not None:
        return d / "memory.current", d / "memory.stat", False
    return None


class Cgroup(ABC):
    """The cgroup of one container (the same relative path in every hierarchy used)."""

    def __init__(self, name: str, directories: list[Path]) -> None:
        self.name = name
        self.directories = directories
        self._removed = False

    @property
    def procs_files(self) -> list[Path]:
        """Where a pid is written to join this cgroup (one file per hierarchy)."""
        return [d / "cgroup.procs" for d in self.directories]

    def attach(self, pid: int) -> None:
        """Move process ``pid`` (not its existing children) into this cgroup."""
        for procs in self.procs_files:
            write(procs, str(pid))

    def pids(self) -> set[int]:
        """The processes currently in the cgroup (as seen from the invoker)."""
        return set().union(*(_pids(p) for p in self.procs_files))

    @abstractmethod
    def limit(self, limits: Limits) -> None:
        """Write the limits; called once, before any process joins."""

    def weigh(self, cpu_shares: int) -> None:
        """Write only the CPU weight (``cpu_shares`` on the v1 scale; nothing without a
        cpu controller): how much of a contended CPU its processes get against their
        siblings'. ``limit`` writes it again."""
        path = self._weight_path()
        if path is not None:
            write(path, self._weight_value(cpu_shares))

    def open_weight(self) -> int | None:
        """Its CPU weight file opened for :meth:`weigh_through` (None without a cpu
        controller): the file's path walk (0.03-0.06 ms after a quiet moment, half of
        a ``weigh``) done ahead, off the path that later writes the weight. The caller
        closes it; OSError when the cgroup is gone."""
        path = self._weight_path()
        return None if path is None else os.open(path, os.O_WRONLY | os.O_CLOEXEC)

    def weigh_through(self, fd: int, cpu_shares: int) -> None:
        """:meth:`weigh` through a descriptor from :meth:`open_weight`."""
        os.write(fd, self._weight_value(cpu_shares).encode("ascii"))

    @abstractmethod
    def _weight_path(self) -> Path | None:
        """The CPU weight file (None without a cpu controller)."""

    @abstractmethod
    def _weight_value(self, cpu_shares: int) -> str:
        """What the CPU weight file takes for ``cpu_shares`` (on the v1 scale)."""

    @abstractmethod
    def freeze(self) -> None:
        """Stop every process of the cgroup until ``thaw`` (asynchronous in the kernel)."""

    @abstractmethod
    def thaw(self) -> None:
        """Let a frozen cgroup run again."""

    @abstractmethod
    def oom_kills(self) -> int:
        """How many processes the kernel killed because the cgroup hit its memory limit."""

    @abstractmethod
    def memory_used(self) -> int | None:
        """Bytes of memory its processes use now, reclaimable file cache excluded (see
        the module docstring); None once removed."""

    @abstractmethod
    def frozen(self) -> bool:
        """Whether every process of the cgroup is frozen now (freezing has completed)."""

    def kill(self) -> None:
        """SIGKILL every process of the cgroup, frozen ones included (see module doc).

        Waits (at most :data:`FREEZE_WAIT_SECONDS`) for the freezer to finish: until then
        a member may still fork, and its child would be missed. After that bound (a task
        stuck in the kernel) it kills what it sees; :meth:`try_remove` comes back for the
        rest."""
        self.freeze()
        try:
            deadline = time.monotonic() + FREEZE_WAIT_SECONDS
            while not self.frozen() and time.monotonic() < deadline:
                time.sleep(0.0005)
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self.thaw()

    def try_remove(self) -> bool:
        """One step of removal: SIGKILL what is left, or remove the directories once the
        cgroup is empty. True when the cgroup is gone; idempotent."""
        if self._removed:
            return True
        if self.pids():
            self.kill()
            return False
        for directory in self.directories:
            try:
                directory.rmdir()
            except FileNotFoundError:
                continue
            except OSError:  # EBUSY: a killed task is still being torn down
                return False
        self._removed = True
        return True

    def remove(self, timeout: float = EMPTY_TIMEOUT_SECONDS) -> bool:
        """Kill what is left, wait until empty, remove the directories (blocking; for
        start-up clean-up). False when processes were still there after ``timeout``: the
        directories are then left for the next ``CgroupRoot.prepare``."""
        deadline = time.monotonic() + timeout
        while not self.try_remove():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)  # the kernel finishes the killed tasks' exit asynchronously
        return True

    async def aremove(self, timeout: float = EMPTY_TIMEOUT_SECONDS) -> bool:
        """``remove`` for the event loop: waits without blocking it."""
        deadline = time.monotonic() + timeout
        while not self.try_remove():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True


class CgroupV1(Cgroup):
    def __init__(self, name: str, controllers: dict[str, Path]) -> None:
        super().__init__(name, list(controllers.values()))
        self._controllers = controllers

    def limit(self, limits: Limits) -> None:
        memory = self._controllers["memory"]
        write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
        memsw = memory / "memory.memsw.limit_in_bytes"
        if memsw.exists():  # absent when the kernel does not account swap
            write(memsw, str(limits.memory_bytes))
        with contextlib.suppress(OSError):
            write(memory / "memory.swappiness", "0")
        write(self._controllers["pids"] / "pids.max", str(limits.pids))
        self.weigh(limits.cpu_shares)

    def _weight_path(self) -> Path | None:
        cpu = self._controllers.get("cpu")
        return None if cpu is None else cpu / "cpu.shares"

    def _weight_value(self, cpu_shares: int) -> str:
        return str(max(2, cpu_shares))

    def freeze(self) -> None:
        write(self._controllers["freezer"] / "freezer.state", "FROZEN")

    def thaw(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            write(self._controllers["freezer"] / "freezer.state", "THAWED")

    def frozen(self) -> bool:
        try:
            state = (self._controllers["freezer"] / "freezer.state").read_text().strip()
        except FileNotFoundError:
            return True  # removed: nothing left to freeze
        return state == "FROZEN"

    def memory_used(self) -> int | None:
        memory = self._controllers["memory"]
        return memory_in_use(memory / "memory.usage_in_bytes", memory / "memory.stat", True)

    def oom_kills(self) -> int:
        memory = self._controllers["memory"]
        kills = _counter(memory / "memory.oom_control", "oom_kill")
        if kills is not None:
            return kills
        # Kernels before 4.13 do not count kills: hitting the memory+swap limit is the
        # condition that makes the OOM killer act, so it stands in for a kill.
        failed = memory / "memory.memsw.failcnt"
        return 1 if failed.exists() and int(failed.read_text()) > 0 else 0


class CgroupV2(Cgroup):
    def __init__(self, name: str, directory: Path, cpu: bool) -> None:
        super().__init__(name, [directory])
        self._dir = directory
        self._cpu = cpu

    def limit(self, limits: Limits) -> None:
        write(self._dir / "memory.max", str(limits.memory_bytes))
        if (self._dir / "memory.swap.max").exists():
            write(self._dir / "memory.swap.max", "0")
        with contextlib.suppress(OSError):
            write(self._dir / "memory.oom.group", "1")
        write(self._dir / "pids.max", str(limits.pids))
        self.weigh(limits.cpu_shares)

    def _weight_path(self) -> Path | None:
        return self._dir / "cpu.weight" if self._cpu else None

    def _weight_value(self, cpu_shares: int) -> str:
        return str(Limits(0, 0, cpu_shares).cpu_weight)

    def freeze(self) -> None:
        write(self._dir / "cgroup.freeze", "1")

    def thaw(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            write(self._dir / "cgroup.freeze", "0")

    def frozen(self) -> bool:
        return _counter(self._dir / "cgroup.events", "frozen") == 1

    def oom_kills(self) -> int:
        return _counter(self._dir / "memory.events", "oom_kill") or 0

    def memory_used(self) -> int | None:
        return memory_in_use(self._dir / "memory.current", self._dir / "memory.stat", False)

    def kill(self) -> None:
        try:
            write(self._dir / "cgroup.kill", "1")  # Linux 5.14+: kills frozen tasks too
        except FileNotFoundError:
            super().kill()
