"""A container forked by a Python zygote, from its fork until it is taken: :class:`Spare`
(:mod:`squall.sandbox.zygote` makes and takes them), and :func:`receive_pid`, how the
invoker learns its pid.

Event loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import select
import shutil
import signal
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from squall.errors import ContainerError
from squall.sandbox import launch
from squall.sandbox.cgroups import Cgroup, Limits
from squall.sandbox.forkedruntime import ForkedRuntime
from squall.sandbox.http import MAX_HEAD_BYTES
from squall.sandbox.logs import LogCollector
from squall.sandbox.network import Lease

log = logging.getLogger(__name__)

_CREDS = struct.calcsize("3i")
#: The CPU the calling thread runs on (glibc's, through the vDSO: ~0.1 µs).
#: ``PyDLL``: the call keeps the GIL (a few hundred ns), so the event loop's thread gives
#: no other thread a chance to take it here. None on a libc without it: nothing is done.
_sched_getcpu = getattr(ctypes.PyDLL(None), "sched_getcpu", None)
#: Descriptor names sent with ``go``, in order (the runtime gets ``__OW_<NAME>_FD``).
GO_FDS = ("listen", "ready", "lifeline", "stdout", "stderr")
#: A connection to a runtime, as :class:`~squall.sandbox.http.UnixHttpClient` uses them.
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Spare:
    """A forked container: its socket to the runtime (until ``take``), its pid 1's pid,
    pidfd, cgroup, the limits written there, its network link if it has one, and once
    started (``go``) its directory — the listening socket and the pid file a container's
    directory holds, so that taking it is one rename — and the invoker's ends of its
    pipes (``lifeline``, and ``stdout``, ``stderr`` until :meth:`watch` reads them: the
    taker owns them), and once watched a connection to its listening socket made ahead
    (``connection``: the container's first request's, the taker's to own)."""

    sock: socket.socket
    pid: int
    pidfd: int
    cgroup: Cgroup
    limits: Limits | None = None
    lease: Lease | None = None
    #: Its directory until a container takes it (None then: the container's own).
    directory: Path | None = None
    #: The container size its runtime was started for (its /tmp size; ``go``).
    memory_mb: int | None = None
    #: Once :meth:`watch`\ ed: its exit watched and its output read into ``logs`` (the
    #: container's from its take on), ``exited`` resolved when it exits.
    runtime: ForkedRuntime | None = None
    logs: LogCollector | None = None
    exited: asyncio.Future[None] | None = None
    connection: Stream | None = None
    fds: dict[str, int] = field(default_factory=dict)
    #: Once started: the CPUs its runtime may run on (None: unknown, or only one).
    cpus: frozenset[int] | None = None
    #: Its cgroup's CPU weight file, opened with its limits written ahead: its take writes
    #: the container's weight without the file's path walk (None: not opened, or used).
    weight_fd: int | None = None

    def fit(self, limits: Limits) -> None:
        """Give its cgroup a container's ``limits``: only the CPU weight when the memory
        and pids limits were written ahead (:meth:`limit_ahead`), nothing when all were."""
        ahead = self.limits
        weight_fd, self.weight_fd = self.weight_fd, None  # used once, at the take
        try:
            if limits == ahead:
                return
            if ahead is not None and (ahead.memory_bytes, ahead.pids) == (
                limits.memory_bytes,
                limits.pids,
            ):  # memory and pids written ahead
                if weight_fd is not None:
                    self.cgroup.weigh_through(weight_fd, limits.cpu_shares)
                else:
                    self.cgroup.weigh(limits.cpu_shares)
            else:
                self.cgroup.limit(limits)
        finally:
            if weight_fd is not None:
                os.close(weight_fd)
        self.limits = limits

    def limit_ahead(self, limits: Limits) -> None:
        """Write a waiting spare's ``limits`` (a container size's memory and pids, the
        waiting CPU weight) before its runtime starts; without them (an error, logged)
        its take writes them all."""
        if self.weight_fd is not None:  # written ahead again: the file is opened again
            os.close(self.weight_fd)
            self.weight_fd = None
        try:
            self.cgroup.limit(limits)
            self.weight_fd = self.cgroup.open_weight()
        except OSError as ex:
            log.warning("a Python spare's limits could not be written ahead: %s", ex)
            return
        self.limits = limits

    def go(self, directory: Path, env: dict[str, str], tmp_bytes: int) -> None:
        """Start its runtime: a listening socket and the pid file in ``directory`` (an
        empty one, owned from now on), its pipes (the invoker's ends in :attr:`fds`),
        ``go`` with the spare's environment ``env`` and /tmp size. Its readiness is
        :meth:`ready`'s to wait for."""
        theirs: dict[str, int] = {}
        self.directory = directory
        try:
            theirs["listen"] = launch.listen(directory).detach()
            # Written here, ahead of a take for a started spare (a file's creation is
            # 0.3-0.5 ms on ext4 after a quiet moment), read by a later invoker's cleanup.
            launch.write_pid_file(directory, self.pid)
            self.fds["ready"], theirs["ready"] = os.pipe()
            theirs["lifeline"], self.fds["lifeline"] = os.pipe()
            self.fds["stdout"], theirs["stdout"] = os.pipe()
            self.fds["stderr"], theirs["stderr"] = os.pipe()
            config = {"env": env, "fds": list(GO_FDS), "tmp_bytes": tmp_bytes}
            message = b"go" + orjson.dumps(config)
            socket.send_fds(self.sock, [message], [theirs[fd] for fd in GO_FDS])
        finally:
            for fd in theirs.values():  # the runtime holds the only copies now
                os.close(fd)

    async def ready(self, timeout: float) -> None:
        """Wait for a started runtime's ready byte; ContainerError with its last words."""
        ready_r = self.fds.pop("ready")
        try:
            ready = await launch.wait_ready(ready_r, timeout)
        finally:
            os.close(ready_r)
        if ready:
            with contextlib.suppress(OSError):  # it died since: its take finds out
                cpus = frozenset(os.sched_getaffinity(self.pid))
                self.cpus = cpus if len(cpus) > 1 else None
        if not ready:
            said = b""
            os.set_blocking(self.fds["stderr"], False)
            with contextlib.suppress(OSError):
                said = os.read(self.fds["stderr"], 4096)
            reason = said.decode(errors="replace").strip() or "it exited or hung before listening"
            raise ContainerError(f"the forked Python runtime did not start: {reason}")

    async def watch(self, log_cap_bytes: int) -> None:
        """Watch a started runtime ahead of its take: its exit, and its stdout and stderr
        read into a log collector of ``log_cap_bytes``; and connect to it
        (:attr:`connection`) — what a create and the container's first request would do
        on the request path otherwise (two pipe transports and a connection, each a loop
        iteration). Whatever it writes before its take reaches the container's logs, as it
        would when its pipes were read from the take on. ContainerError when it cannot be
        reached (it died since its ready byte)."""
        loop = asyncio.get_running_loop()
        self.logs = LogCollector(log_cap_bytes)
        self.exited = loop.create_future()
        self.runtime = ForkedRuntime(self.pid, self.logs, self.exited)
        for stream in ("stdout", "stderr"):
            await self.runtime.attach(stream, self.fds.pop(stream))
        # The container's first connection, made now: it waits in the listening socket's
        # backlog (the runtime accepts it once taken; the directory's rename on a take
        # leaves it connected). A create would otherwise connect on the request path: a
        # socket, a connect and a loop iteration for the stream's transport (0.14-0.76 ms
        # before /init, bench/README.md "cold_timeline.py").
        assert self.directory is not None
        try:
            self.connection = await open_stream(self.directory, MAX_HEAD_BYTES)
        except OSError as ex:  # it died since its ready byte: the refill logs and goes on
            raise ContainerError(f"the forked Python runtime cannot be reached: {ex}") from ex

    def keep_off_this_cpu(self) -> None:
        """Before a started spare's ``take``: let its runtime's main thread run on any of
        its CPUs but the one the calling thread (the invoker's loop) runs on; the runtime
        gives itself back the CPUs it had at ``go`` first thing on ``take``.

        Why: the kernel wakes the runtime on the CPU it last ran on when that one is
        idle, else mostly on the waker's, unless its cheap look finds another CPU idle
        at that instant — and the runtime last ran where the invoker's ``go`` woke it,
        so its take queued it on the invoker's busy CPU in about half the cold starts
        over the API on a 2-vCPU VM (an eventfd's wake-up, not "sync", changed nothing:
        ``bench/README.md``, branch zygwake). There the runtime's take work
        (capabilities, environment, ``accept``, ~0.3 ms) waited for the invoker's own
        work on the cold start (its started point, the ``/init`` write, ~0.35 ms)
        instead of running beside it. One ``sched_setaffinity`` of a (usually sleeping)
        thread, ~1 µs; nothing when the runtime may run on one CPU only, or when the
        call is refused (an invoker without CAP_SYS_NICE over another uid's spare) or
        finds it gone (its take finds out).

        The pid is checked after the call: the spare's parent (the zygote) may have
        reaped a runtime that died since the take checked it, and a pid reused since
        then (a fresh spare's) would otherwise keep the narrowed mask; a pidfd still
        unreadable after the call proves the call reached the spare itself."""
        if self.cpus is None or _sched_getcpu is None:
            return
        cpu = _sched_getcpu()
        if cpu in self.cpus:
            with contextlib.suppress(OSError):
                before = os.sched_getaffinity(self.pid)
                os.sched_setaffinity(self.pid, self.cpus - {cpu})
                if not self.alive():  # the pid may be another process's now: undo
                    os.sched_setaffinity(self.pid, before)

    def alive(self) -> bool:
        """Whether its runtime still runs (a pidfd turns readable when it exits)."""
        # poll, not select: an invoker with a few hundred containers has descriptors past
        # select's 1024, and a spare's pidfd among them.
        watch = select.poll()
        watch.register(self.pidfd, select.POLLIN)
        return not watch.poll(0)

    def discard(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        os.close(self.pidfd)
        self.sock.close()
        if self.runtime is not None:
            self.runtime.close()  # its pipes (attached ones) and its exit watcher
            self.runtime = None
        if self.connection is not None:
            self.connection[1].close()
            self.connection = None
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        if self.weight_fd is not None:
            os.close(self.weight_fd)
            self.weight_fd = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


async def open_stream(directory: Path, limit: int, name: str = launch.SOCKET_NAME) -> Stream:
    """A connection to the runtime listening at ``directory/name`` (any path length: a
    long one through a descriptor of the directory, as :func:`launch.listen` binds it)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        launch.at_path(sock.connect, directory, name)
        # A Unix socket's connect completes at once while the backlog has room, whether
        # or not the runtime accepts yet; the stream's transport takes a loop iteration.
        return await asyncio.open_unix_connection(sock=sock, limit=limit)
    except BaseException:
        sock.close()
        raise


async def receive_pid(sock: socket.socket, timeout: float) -> int:
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
