"""The sandboxed CPython zygote itself: :class:`ZygoteProcess` starts it, forks
containers from it (each confined to a cgroup of its own, and given its link out) and
kills it.

:mod:`squall.sandbox.zygote` keeps the started spares it forks and hands them over;
``squall/runtimes/python/zygote.py`` documents the in-sandbox protocol and process tree.

Lifetime: the zygote dies with the invoker (it lives in the supervisor's pid namespace,
:mod:`squall.sandbox.supervisor`; also ``--die-with-parent`` and its control socket's
EOF); a container's pid namespace is nested in the zygote sandbox's, whose init exits
with the zygote: the kernel then kills every pid namespace below it.

Everything runs on the event loop thread except the cgroup moves (worker threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
from pathlib import Path

from squall.errors import ContainerError
from squall.sandbox import launch
from squall.sandbox.bwrap import BwrapSandbox
from squall.sandbox.cgroups import Cgroup, Limits
from squall.sandbox.cgrouptree import CgroupRoot
from squall.sandbox.forkedruntime import ForkedRuntime
from squall.sandbox.isolation import Isolation, SandboxInit, confine
from squall.sandbox.logs import LogCollector
from squall.sandbox.network import Lease, SandboxNetwork
from squall.sandbox.spare import Spare, receive_pid
from squall.sandbox.supervisor import Supervisor

SCRIPT = "zygote.py"
#: The zygote's own cgroup: generous, it runs no action.
ZYGOTE_LIMITS = Limits(memory_bytes=1024 * 1024 * 1024, pids=4096, cpu_shares=1024)
#: A spare's CPU weight until taken (v1 shares; the least there is): its start, rehearsal
#: and copy-on-write faults yield to the containers at work — the creates of a burst
#: above all — and use the CPU they leave. ``take`` writes the container's own weight.
SPARE_CPU_SHARES = 2


class ZygoteProcess:
    """One sandboxed CPython zygote: ``start``, ``fork``, ``close``.

    ``argv`` runs the zygote script, ``binds`` is what its sandbox needs beyond the
    system directories (its prefix, the proxy directory), ``cgroups`` the factory's
    parent cgroup.
    """

    def __init__(
        self,
        *,
        argv: list[str],
        binds: list[tuple[str, str]],
        sandbox: BwrapSandbox,
        isolation: Isolation,
        cgroups: CgroupRoot,
        start_timeout: float,
        network: SandboxNetwork | None,
        supervisor: Supervisor,
        uid: int | None,
    ) -> None:
        self._supervisor = supervisor
        self.uid = uid
        self._network = network
        self._argv = argv
        self._binds = binds
        self._sandbox = sandbox
        self._isolation = isolation
        self._cgroups = cgroups
        self._timeout = start_timeout
        self._control: socket.socket | None = None
        self._process: ForkedRuntime | None = None
        self._init: SandboxInit | None = None
        self._cgroup: Cgroup | None = None
        self._logs = LogCollector(64 * 1024)
        self._exited: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def alive(self) -> bool:
        return self._exited is not None and not self._exited.done() and not self._closed

    @property
    def pid(self) -> int | None:
        """The pid of bubblewrap's monitor of its sandbox (None before ``start``)."""
        return self._process.get_pid() if self._process is not None else None

    async def start(self) -> None:
        """Start the zygote and wait until it is warm; ContainerError (with its stderr)
        if it cannot start."""
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        self._cgroup = self._cgroups.create(f"zygote-{secrets.token_hex(4)}", ZYGOTE_LIMITS)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self._control = ours
        try:
            # Inherited as 3 (control socket), 4 (info), 5 (block): see Supervisor.spawn.
            argv = self._sandbox.zygote_command(
                self._argv, binds=self._binds, info_fd=4, block_fd=5
            )
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "__OW_ZYGOTE_FD": "3"}
            spawned = await self._supervisor.spawn(
                argv,
                env,
                stdout=out_w,
                stderr=err_w,
                fds=[theirs.fileno(), info_w, block_r],
                uid=self.uid,
                nofile=self._isolation.nofile,
            )
        except BaseException as ex:
            for fd in (info_r, block_w, out_r, err_r):
                os.close(fd)
            await self.close()
            if isinstance(ex, ContainerError):
                raise ContainerError(f"cannot start the Python zygote: {ex.message}") from ex
            raise
        finally:
            theirs.close()
            for fd in (info_w, block_r, out_w, err_w):
                os.close(fd)
        self._process = ForkedRuntime(spawned.pid, self._logs, self._exited, pidfd=spawned.pidfd)
        await self._process.attach("stdout", out_r)
        await self._process.attach("stderr", err_r)
        try:
            pid = self._process.get_pid()
            self._init = await confine(pid, info_r, block_w, self._cgroup, None, self._timeout)
            ours.setblocking(False)
            async with asyncio.timeout(self._timeout):
                ready = await loop.sock_recv(ours, 64)
            if ready != b"ready":
                raise ContainerError("it exited before it was ready")
        except (ContainerError, TimeoutError, OSError) as ex:
            await self._logs.wait_closed(1.0)
            reason = self._logs.text("stderr") or str(ex) or "it did not get ready in time"
            await self.close()
            raise ContainerError(f"the Python zygote did not start: {reason}") from ex

    async def fork(self, network: bool = True, background: bool = False) -> Spare:
        """Fork one container and confine its pid 1 (its cgroup); with
        ``network`` and a factory network, give it its link out. ``background``: a spare,
        whose cgroup gets the least CPU weight until it is taken (:data:`SPARE_CPU_SHARES`)."""
        if not self.alive or self._control is None:
            raise ContainerError("the Python zygote is not running")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        cgroup: Cgroup | None = None
        lease: Lease | None = None
        pidfd = -1
        try:
            try:
                socket.send_fds(self._control, [b"fork"], [theirs.fileno()])
            except OSError as ex:
                raise ContainerError(f"the Python zygote is gone: {ex}") from ex
            finally:
                theirs.close()
            pid = await receive_pid(ours, self._timeout)
            pidfd = os.pidfd_open(pid)  # it waits for "go": the pid is still its own
            cgroup = self._cgroups.create(secrets.token_hex(6), None)
            if background:
                with contextlib.suppress(OSError):  # then it waits with the default weight
                    cgroup.weigh(SPARE_CPU_SHARES)
            # In a worker thread: moving a process into a cgroup waits for an RCU grace
            # period. Its open-files limit is the zygote's (set when it was spawned).
            await asyncio.to_thread(cgroup.attach, pid)
            if network and self._network is not None:
                lease = await self._network.attach(pid)
            ours.send(b"confined")  # nothing of it was set up before it is in its cgroup
        except BaseException:
            ours.close()
            if pidfd >= 0:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                os.close(pidfd)
            if cgroup is not None:
                await cgroup.aremove()
            if lease is not None and self._network is not None:
                await self._network.detach(lease)
            raise
        return Spare(ours, pid, pidfd, cgroup, lease=lease)

    async def close(self) -> None:
        """Kill the zygote (its forked containers' pid namespaces go with it) and remove
        its cgroup. Idempotent."""
        self._closed = True
        if self._control is not None:
            self._control.close()  # EOF: the zygote exits
            self._control = None
        if self._init is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._init.pidfd, signal.SIGKILL)
        if self._process is not None and self._exited is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await asyncio.shield(self._exited)
            self._process.close()
            self._process = None
        if self._init is not None:
            await launch.reap_orphan(self._init.pidfd)
            os.close(self._init.pidfd)
            self._init = None
        if self._cgroup is not None:
            await self._cgroup.aremove()
            self._cgroup = None

    def pids(self) -> set[int]:
        """The zygote's processes (bubblewrap's and the zygote)."""
        found = {self._process.get_pid()} if self._process is not None else set()
        return found | (self._cgroup.pids() if self._cgroup is not None else set())


def script_path(proxy: Path) -> Path:
    """The zygote script next to the Python proxy."""
    return proxy.parent / SCRIPT
