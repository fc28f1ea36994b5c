"""What isolating a container takes: namespaces (bubblewrap), cgroups, resource limits.

:meth:`Isolation.detect` checks that this host can isolate containers — bubblewrap is
installed and can create namespaces, and a cgroup hierarchy with the memory, pids and
freezer controllers is there — and raises :class:`squall.errors.ContainerError` with a
message saying what to install or configure otherwise. The invoker refuses to start on that
error unless its operator explicitly chose ``--unsafe-no-isolation``.

:func:`confine` is the start-up handshake of one sandbox: bubblewrap reports the pid of
the sandbox's first process on ``--info-fd`` and then, when the invoker has more to do
before the runtime runs (a network link to attach), waits on ``--block-fd``; in between
the invoker makes sure both bubblewrap processes are in the container's cgroup — a
bubblewrap the supervisor spawned into that cgroup was born there (its launcher joined it
before the exec, without the ~10 ms RCU grace period a move by another process waits
for; see :func:`squall.sandbox.pid1.join_targets`), anything not inside yet is moved while it
waits (one that did not wait is refused instead: a move would come too late) — and their
open-files limit was set when the supervisor spawned bubblewrap (``nofile`` sets it here
otherwise), so every process of the container inherits both before the runtime (or
anything the action starts) exists. Bubblewrap runs in the supervisor's pid namespace and
reports its child's pid as seen there; :func:`confine` finds it as the invoker sees it.

The pieces stay separate (``bwrap.py`` builds command lines, ``cgroups.py`` manages cgroups,
``confine`` joins them to one process) so that another way of creating processes — e.g. a
zygote that forks warm interpreters — can put its children into the same namespaces and
cgroups: what a container's processes must join is :attr:`squall.sandbox.cgroups.Cgroup.
procs_files`, and the limits are :meth:`Isolation.limits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from squall.config import default_user_memory_mb
from squall.errors import ContainerError
from squall.sandbox import bwrap as bw
from squall.sandbox import cgrouptree
from squall.sandbox.cgroups import Cgroup, Limits
from squall.sandbox.cgrouptree import Hierarchy
from squall.sandbox.supervisor import DEFAULT_UIDS, UidRange

MIB = 1024 * 1024
#: Processes and threads per container: a Node.js runtime uses about a dozen threads; a
#: fork bomb stops here.
DEFAULT_PIDS_MAX = 128
#: Open files per process of a container (soft and hard limit).
DEFAULT_NOFILE = 1024
#: OpenWhisk's total CPU shares, divided among containers in proportion to their memory.
TOTAL_CPU_SHARES = 1024

UNAVAILABLE = (
    "This host cannot isolate actions: {reason}. Squall runs every action in its own "
    "namespaces (bubblewrap: apt-get install bubblewrap) and cgroups (cgroup v1 memory, "
    "pids and freezer controllers, or cgroup v2 with memory and pids; writable, e.g. as "
    "root). For development on a machine without them, start with --unsafe-no-isolation: "
    "actions then run as plain processes that can see and change everything the invoker can."
)


@dataclass(frozen=True)
class Isolation:
    """How a process factory isolates its containers (see the module docstring).

    ``cgroup_root``: where in the cgroup hierarchy the
    factories' cgroups go. ``tmp_mb``: size of ``/tmp`` (and ``/dev/shm``) per container,
    None for the container's memory limit — tmpfs pages count against that limit anyway.
    ``user_memory_mb``: the invoker's capacity; a container's CPU shares are
    ``TOTAL_CPU_SHARES * memory / user_memory_mb`` as in OpenWhisk.
    """

    bwrap: str
    hierarchy: Hierarchy
    cgroup_root: str = "squall"
    pids_max: int = DEFAULT_PIDS_MAX
    nofile: int = DEFAULT_NOFILE
    tmp_mb: int | None = None
    user_memory_mb: int = 0
    #: The host uids sandboxes run as (``/etc/subuid``'s ``squall`` entry, or a default).
    uid_base: int = DEFAULT_UIDS[0]
    uid_count: int = DEFAULT_UIDS[1]
    #: False: sandboxes run as the invoker's uid (root) on the host, as before unprivileged
    #: uids existed — for hosts that forbid unprivileged user namespaces, and to measure
    #: what the unprivileged uid costs (``bench/sandbox_uid.py``).
    unprivileged: bool = True

    @classmethod
    def detect(
        cls,
        *,
        cgroup_root: str = "squall",
        pids_max: int = DEFAULT_PIDS_MAX,
        nofile: int = DEFAULT_NOFILE,
        tmp_mb: int | None = None,
        user_memory_mb: int | None = None,
        bwrap: str = "bwrap",
    ) -> Isolation:
        """Check the host and return the settings; ContainerError (with the message the
        operator needs) when namespaces or cgroups are not available."""
        found = bw.find_bwrap(bwrap)
        if found is None:
            raise ContainerError(UNAVAILABLE.format(reason="bubblewrap (bwrap) is not installed"))
        uids = UidRange.detect()
        failure = bw.probe(found) or bw.probe(found, uids.base)
        if failure is not None:
            raise ContainerError(UNAVAILABLE.format(reason=failure))
        try:
            hierarchy = cgrouptree.detect()
        except ContainerError as ex:
            raise ContainerError(UNAVAILABLE.format(reason=ex.message)) from ex
        return cls(
            uid_base=uids.base,
            uid_count=uids.count,
            bwrap=found,
            hierarchy=hierarchy,
            cgroup_root=cgroup_root,
            pids_max=pids_max,
            nofile=nofile,
            tmp_mb=tmp_mb,
            user_memory_mb=user_memory_mb or default_user_memory_mb(),
        )

    def limits(self, memory_mb: int) -> Limits:
        """The cgroup limits of a container with ``memory_mb`` of memory."""
        shares = TOTAL_CPU_SHARES * memory_mb // max(1, self.user_memory_mb)
        return Limits(memory_mb * MIB, self.pids_max, max(2, shares))

    def uids(self) -> UidRange | None:
        """A fresh allocator of the sandboxes' host uids (one per factory); None when
        sandboxes are not given unprivileged uids."""
        return UidRange(self.uid_base, self.uid_count) if self.unprivileged else None

    def tmp_bytes(self, memory_mb: int) -> int:
        return (self.tmp_mb if self.tmp_mb is not None else memory_mb) * MIB


@dataclass(frozen=True)
class SandboxInit:
    """The first process inside a sandbox (init of its pid namespace).

    Held through a pidfd, so that signalling and reaping it can never reach another
    process that reused its pid.
    """

    pid: int
    pidfd: int


async def confine(
    launcher_pid: int,
    info_fd: int,
    block_fd: int | None,
    cgroup: Cgroup,
    nofile: int | None,
    timeout: float,
    setup: Callable[[int], Awaitable[object]] | None = None,
) -> SandboxInit:
    """Finish the start of a sandbox (see the module docstring); returns its first process.

    ``launcher_pid`` is bubblewrap's monitor process (the invoker's child), ``info_fd`` the
    read end of its ``--info-fd`` pipe and ``block_fd`` the write end of its
    ``--block-fd`` pipe. Both are closed here. ``setup``, if given, is awaited with the
    sandbox's pid while it still waits (e.g. to give its network namespace a link out), so
    the runtime finds it done. Raises ContainerError when bubblewrap did not report a pid
    within ``timeout`` or the process could not be confined or set up; the caller then
    destroys the container. The caller owns the returned pidfd.

    Without ``block_fd`` (and so without ``setup``) bubblewrap did not wait: it was born in
    ``cgroup`` with its limits set (:meth:`Supervisor.spawn
    <squall.sandbox.supervisor.Supervisor.spawn>` joined it before the exec), and this
    only checks that both processes are inside — a move now would come after the runtime
    started, so one that is not inside is an error, never moved.
    """
    sandbox_pid: int | None = None
    pidfd: int | None = None
    try:
        try:
            async with asyncio.timeout(timeout):
                info = await _read_to_eof(info_fd)
            reported = int(orjson.loads(info)["child-pid"])
            sandbox_pid = _as_seen_here(launcher_pid, reported)
            # It waits on the block pipe, alive: this pid is still that process. Without a
            # block pipe it runs on, and only its monitor reaps it: it may have exited and
            # been reaped, and its pid reused, since the monitor's children were read.
            pidfd = os.pidfd_open(sandbox_pid)
        except (TimeoutError, ValueError, KeyError, TypeError, OSError) as ex:
            raise ContainerError(f"the sandbox did not report its pid: {ex!r}") from ex
        if block_fd is None and not _still_child(launcher_pid, sandbox_pid):
            # Still the monitor's child after pidfd_open: the pidfd is that process (its
            # pid cannot be another's while the monitor has not reaped it). Not listed:
            # it ended, and the pid may be someone else's now: never signalled.
            gone, sandbox_pid = sandbox_pid, None
            raise ContainerError(f"the sandbox's first process {gone} exited as it started")
        if block_fd is None:
            # Born inside: reading the cgroups' member lists is quick (no move, no grace
            # period), and the sandbox goes on meanwhile.
            outside = [
                pid
                for pid in (launcher_pid, sandbox_pid)
                if not all(_inside(procs, pid) for procs in cgroup.procs_files)
            ]
            if outside:
                raise ContainerError(f"the sandbox's processes {outside} are not in its cgroup")
            return SandboxInit(sandbox_pid, pidfd)
        try:
            # In a worker thread: moving a process into a cgroup may wait for an RCU grace
            # period (about 10 ms here), which must not stall the event loop.
            await asyncio.to_thread(_attach, cgroup, (launcher_pid, sandbox_pid), nofile)
        except OSError as ex:
            raise ContainerError(f"cannot confine the sandbox: {ex}") from ex
        if setup is not None:
            await setup(sandbox_pid)
    except BaseException:
        # Closing the block pipe unblocks the sandbox (EOF), and its first process does
        # not die with its parent yet: kill it before the pipe closes, or it would go on
        # to start the runtime outside the cgroup.
        _kill_launch(launcher_pid, sandbox_pid)
        if pidfd is not None:
            os.close(pidfd)
        raise
    else:
        os.write(block_fd, b"go")
        return SandboxInit(sandbox_pid, pidfd)
    finally:
        os.close(info_fd)
        if block_fd is not None:
            os.close(block_fd)


def _as_seen_here(launcher_pid: int, reported: int) -> int:
    """The sandbox's first process in the invoker's pid namespace: bubblewrap reports it
    in its own (the supervisor's), where it is the monitor's only child."""
    children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
    if len(children) != 1:
        raise ValueError(f"bubblewrap has {len(children)} children, not its sandbox {reported}")
    return int(children[0])


def _still_child(launcher_pid: int, pid: int) -> bool:
    """Whether ``pid`` is (still) a child of bubblewrap's monitor ``launcher_pid``."""
    try:
        children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text()
    except OSError:
        return False
    return str(pid) in children.split()


def _attach(cgroup: Cgroup, pids: tuple[int, int], nofile: int | None) -> None:
    # The monitor first: it is the parent, and whatever it forks from now on is born
    # inside. The sandbox's first process has not forked yet (it waits on the block
    # pipe), so the whole tree of the container starts confined. A process already in
    # every hierarchy's cgroup (born there) is not moved again: the move would only wait
    # for the kernel's grace period.
    for pid in pids:
        if not all(_inside(procs, pid) for procs in cgroup.procs_files):
            cgroup.attach(pid)
        if nofile is not None:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (nofile, nofile))


def _inside(procs: Path, pid: int) -> bool:
    """Whether ``pid`` is listed in the ``cgroup.procs`` file ``procs``."""
    try:
        return str(pid) in procs.read_text().split()
    except OSError:
        return False


def _kill_launch(launcher_pid: int, sandbox_pid: int | None) -> None:
    """SIGKILL a half-started sandbox: its first process (the monitor's children) first."""
    victims = {sandbox_pid} if sandbox_pid is not None else set()
    with contextlib.suppress(OSError, ValueError):
        children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text()
        victims.update(int(pid) for pid in children.split())
    for pid in (*victims, launcher_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def _read_to_eof(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    data = bytearray()

    def on_readable() -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError as ex:
            if not done.done():
                done.set_exception(ex)
            return
        if chunk:
            data.extend(chunk)
        elif not done.done():
            done.set_result(None)

    os.set_blocking(fd, False)
    loop.add_reader(fd, on_readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return bytes(data)
