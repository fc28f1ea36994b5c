"""Python containers forked from a warm interpreter: :class:`Zygote`, the invoker's side.

A ``python:3.11`` cold start through bubblewrap costs an interpreter start, its imports,
about twenty mounts and a cgroup move that waits for an RCU grace period. The zygote pays
these once: one sandboxed CPython per factory (``squall/runtimes/python/zygote.py``, which
documents the in-sandbox protocol and process tree) has imported the proxy, and forks each
container. Per container the invoker:

1. ahead of time, keeps ``spares`` containers forked and waiting before their runtime
   starts: each has its own user, mount, pid, ipc, uts and net namespaces, its one
   process (the runtime, pid 1 of its namespace) has been moved into a fresh cgroup of
   its own (the ~10 ms ``cgroup.procs`` write happens
   here, off the request path, in a worker thread), its open-files limit is the zygote's
   (set when the supervisor spawned it) and, when
   the factory has a network, its network namespace has its link out
   (:mod:`squall.sandbox.network`; another ~5-10 ms kept off the request path);
2. on ``create``, takes a spare (or makes one on the spot when a burst used them all),
   removes its link when the container must have no network, writes the cgroup's limits
   for the action's memory, and sends ``go`` with the
   runtime's descriptors (listening socket, ready and lifeline pipes, stdout, stderr):
   the runtime resizes its ``/tmp`` and ``/dev/shm`` if needed, drops every capability
   and signals readiness like a started one.

The container is then a :class:`~squall.sandbox.container.ProcessContainer` like any
other: same socket, logs, cgroup (memory limit, OOM report, pids, freezing), ``destroy``
(SIGKILL to its pid 1, the runtime, through a pidfd takes the pid namespace down, then
the cgroup is killed and removed). The invoker learns that pid through
``SCM_CREDENTIALS``: the kernel translates it into the invoker's pid namespace.

Guarantees:

- Containment is the bubblewrap sandbox's (see :mod:`squall.sandbox.bwrap`): nothing the
  action does runs before its cgroup has its limits; it is uid 65534 without capabilities
  and with no_new_privs, in a user namespace of its own that may not create another; its
  ``/tmp`` is private and capped; it sees no ``$SQUALL_HOME``, no other container and no
  host network (only its own link, under the egress rules); on the host it runs as the
  zygote's unprivileged uid. Differences: the read-only root is the zygote's (the same
  view), and every container shares the zygote's Python hash seed — which is why a
  zygote forks the containers of one namespace only (:mod:`squall.sandbox.zygotes`).
- Lifetime: the zygote dies with the invoker (it lives in the supervisor's pid namespace,
  :mod:`squall.sandbox.supervisor`; also ``--die-with-parent`` and its control socket's
  EOF); a container's pid namespace is nested in the zygote sandbox's, whose init exits
  with the zygote: the kernel then kills every pid namespace below it. Spares die on
  ``close``, or when the invoker drops their socket.
- ``close`` kills the spares and the zygote and removes their cgroups; idempotent.

Everything runs on the event loop thread except the cgroup moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from squall.errors import ContainerError
from squall.sandbox import launch
from squall.sandbox.bwrap import BwrapSandbox
from squall.sandbox.cgroups import Cgroup, Limits
from squall.sandbox.cgrouptree import CgroupRoot
from squall.sandbox.forkedruntime import ForkedRuntime
from squall.sandbox.isolation import Isolation, SandboxInit, confine
from squall.sandbox.logs import LogCollector
from squall.sandbox.network import Lease, SandboxNetwork
from squall.sandbox.supervisor import Supervisor

log = logging.getLogger(__name__)

SCRIPT = "zygote.py"
#: The zygote's own cgroup: generous, it runs no action.
ZYGOTE_LIMITS = Limits(memory_bytes=1024 * 1024 * 1024, pids=4096, cpu_shares=1024)
DEFAULT_SPARES = 2
#: Descriptor names sent with ``go``, in order (the runtime gets ``__OW_<NAME>_FD``).
GO_FDS = ("listen", "ready", "lifeline", "stdout", "stderr")
_CREDS = struct.calcsize("3i")


@dataclass
class _Spare:
    """A forked container waiting for ``go``: its socket, its pid 1's pid, pidfd, cgroup, and
    its network link if it has one."""

    sock: socket.socket
    pid: int
    pidfd: int
    cgroup: Cgroup
    lease: Lease | None = None

    def discard(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        os.close(self.pidfd)
        self.sock.close()


class Zygote:
    """One sandboxed CPython zygote and its spare containers; see the module docstring.

    ``python`` is the resolved interpreter, ``binds`` what its sandbox needs beyond the
    system directories (its prefix, the proxy directory at ``script``'s parent), ``cgroups``
    the factory's parent cgroup.
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
        spares: int = DEFAULT_SPARES,
        network: SandboxNetwork | None = None,
        spare_network: bool = True,
        supervisor: Supervisor,
        uid: int | None = None,
    ) -> None:
        self._supervisor = supervisor
        #: The host uid of the zygote and of every container it forks.
        self.uid = uid
        self._network = network
        #: Whether spares are forked with a link (what most containers will want).
        self._spare_network = spare_network
        self._argv = argv
        self._binds = binds
        self._sandbox = sandbox
        self._isolation = isolation
        self._cgroups = cgroups
        self._timeout = start_timeout
        self._spares_wanted = spares
        self._spares: deque[_Spare] = deque()
        self._refilling: asyncio.Task[None] | None = None
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

    async def start(self) -> None:
        """Start the zygote and wait until it is warm; ContainerError (with its stderr)
        if it cannot start. The first spares are forked in the background."""
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
        self.replenish()

    async def spawn(
        self, memory_mb: int, env: Mapping[str, str], fds: Mapping[str, int], network: bool
    ) -> tuple[SandboxInit, Cgroup, Lease | None]:
        """Start a runtime in a spare container; returns it (its pid namespace's init), its
        cgroup and network link
        (None without ``network``; the caller releases it when the container ends).

        ``fds`` names the runtime's descriptors (:data:`GO_FDS`); the caller keeps and
        closes its copies, and calls :meth:`replenish` once the runtime is ready (or
        failed). Raises ContainerError when the zygote is gone.
        """
        spare = self._spares.popleft() if self._spares else await self._fork(network)
        try:
            if spare.lease is not None and not network and self._network is not None:
                lease, spare.lease = spare.lease, None
                await self._network.detach(lease)
            elif spare.lease is None and network and self._network is not None:
                spare.lease = await self._network.attach(spare.pid)
            spare.cgroup.limit(self._isolation.limits(memory_mb))
            config = {
                "env": dict(env),
                "fds": list(GO_FDS),
                "tmp_bytes": self._isolation.tmp_bytes(memory_mb),
            }
            message = b"go" + orjson.dumps(config)
            socket.send_fds(spare.sock, [message], [fds[name] for name in GO_FDS])
        except BaseException:
            await self._discard(spare)
            raise
        finally:
            spare.sock.close()
        return SandboxInit(spare.pid, spare.pidfd), spare.cgroup, spare.lease

    async def _discard(self, spare: _Spare) -> None:
        spare.discard()
        await spare.cgroup.aremove()
        if spare.lease is not None and self._network is not None:
            await self._network.detach(spare.lease)

    async def close(self) -> None:
        """Kill the spares and the zygote, remove their cgroups. Idempotent."""
        self._closed = True
        if self._refilling is not None:
            self._refilling.cancel()
            with contextlib.suppress(asyncio.CancelledError, ContainerError):
                await self._refilling
            self._refilling = None
        while self._spares:
            await self._discard(self._spares.popleft())
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
        """Every process of the zygote and its spares (bubblewrap's, the zygote, the
        spares' runtimes)."""
        found = {self._process.get_pid()} if self._process is not None else set()
        groups = [self._cgroup, *(spare.cgroup for spare in self._spares)]
        return found.union(*(group.pids() for group in groups if group is not None))

    @property
    def spares(self) -> int:
        """How many forked containers wait to be taken."""
        return len(self._spares)

    async def filled(self) -> None:
        """Wait until the background forking of spares (if any) has finished."""
        if self._refilling is not None:
            await asyncio.shield(self._refilling)

    def replenish(self) -> None:
        """Fork spares in the background until there are ``spares`` again. Called once a
        taken spare's runtime is ready: forking meanwhile would compete with it for CPU."""
        if self._refilling is None or self._refilling.done():
            self._refilling = asyncio.ensure_future(self._keep_spares())

    # -- spares ------------------------------------------------------------------------

    async def _keep_spares(self) -> None:
        try:
            while self.alive and len(self._spares) < self._spares_wanted:
                spare = await self._fork(self._spare_network)
                if self._closed:
                    await self._discard(spare)
                    return
                self._spares.append(spare)
        except ContainerError as ex:
            log.warning("the Python zygote could not fork a spare container: %s", ex)

    async def _fork(self, network: bool = True) -> _Spare:
        """Fork one container and confine its pid 1 (its cgroup); with
        ``network`` and a factory network, give it its link out."""
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
            pid = await _receive_pid(ours, self._timeout)
            pidfd = os.pidfd_open(pid)  # it waits for "go": the pid is still its own
            cgroup = self._cgroups.create(secrets.token_hex(6), None)
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
        return _Spare(ours, pid, pidfd, cgroup, lease)


async def _receive_pid(sock: socket.socket, timeout: float) -> int:
    """Wait for a forked init's ``here`` and return its pid as this process sees it."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    arrived: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not arrived.done():
            arrived.set_result(None)

    loop.add_reader(sock, on_readable)
    try:
        async with asyncio.timeout(timeout):
            await arrived
        data, ancillary, _, _ = sock.recvmsg(64, socket.CMSG_SPACE(_CREDS))
    except (TimeoutError, OSError) as ex:
        raise ContainerError(f"a forked container did not report: {ex!r}") from ex
    finally:
        loop.remove_reader(sock)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = int(struct.unpack("3i", payload[:_CREDS])[0])
            if data == b"here" and pid > 0:
                return pid
    raise ContainerError("a forked container exited before it reported")


def script_path(proxy: Path) -> Path:
    """The zygote script next to the Python proxy."""
    return proxy.parent / SCRIPT
