"""Python containers forked from a warm interpreter: :class:`Zygote`, the invoker's side.

A ``python:3.11`` cold start through bubblewrap costs an interpreter start, its imports,
about twenty mounts and a cgroup move that waits for an RCU grace period. The zygote pays
these once: one sandboxed CPython per factory (``squall/runtimes/python/zygote.py``, which
documents the in-sandbox protocol and process tree) has imported the proxy, and forks each
container. Per container the invoker:

1. ahead of time, keeps containers forked and *started* — ``spares`` of them, more for a
   while after a burst (:mod:`squall.sandbox.sparedemand`): each has its own
   user, mount, pid, ipc, uts and net namespaces, its one process (the runtime, pid 1 of
   its namespace) has been moved into a fresh cgroup of its own (the ~10 ms
   ``cgroup.procs`` write happens here, off the request path, in a worker thread), its
   open-files limit is the zygote's
   (set when the supervisor spawned it) and, when the factory has a network, its network
   namespace has its link out (:mod:`squall.sandbox.network`; another ~5-10 ms kept off
   the request path). It was sent ``go`` with the runtime's descriptors (a listening
   socket in a directory of its own under ``spares`` in the factory's workdir, beside
   its pid file; ready and lifeline pipes, stdout, stderr), and its proxy wrote its
   ready byte: it listens, but serves nothing and still holds its capabilities until it
   is taken. The forking of spares starts
   shortly after the last create took its runtime, not to compete with the taken
   containers' first requests (postponed while a burst's creates wait: a spare forked
   then would serve none of them), with up to :data:`REFILL_PARALLEL` in flight;
2. on ``create``, takes a started spare (or forks and starts one on the spot when a burst
   used them all), removes its link when the container must have no network, writes
   the cgroup's limits for the action's memory (~0.1 ms), renames the spare's
   directory (its listening socket, which keeps listening, and its pid file) to the
   container's and sends ``take`` with the container's environment and /tmp size: the
   runtime resizes its ``/tmp`` and ``/dev/shm`` if needed, drops every capability,
   takes that environment and serves what waits in its socket's backlog. ``create``
   returns without waiting for the runtime: a first request waits in the backlog until
   it serves.

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
import shutil
import signal
import socket
from collections import deque
from collections.abc import Callable, Mapping
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
from squall.sandbox.spare import Spare, receive_pid
from squall.sandbox.sparedemand import REFILL_PARALLEL, SpareDemand, SpareSchedule
from squall.sandbox.supervisor import Supervisor

log = logging.getLogger(__name__)

SCRIPT = "zygote.py"
#: The zygote's own cgroup: generous, it runs no action.
ZYGOTE_LIMITS = Limits(memory_bytes=1024 * 1024 * 1024, pids=4096, cpu_shares=1024)
DEFAULT_SPARES = 2
#: The memory a spare is started for (OpenWhisk's default): its /tmp size, changed on
#: ``take`` for a container of another size.
SPARE_MEMORY_MB = 256
#: A spare's CPU weight until taken (v1 shares; the least there is): its start, rehearsal
#: and copy-on-write faults yield to the containers at work — the creates of a burst
#: above all — and use the CPU they leave. ``take`` writes the container's own weight.
SPARE_CPU_SHARES = 2
#: The directory of the factory's workdir where spares' directories wait (named like no
#: container's: a leftover of a dead invoker is cleaned like a container's directory).
SPARES_DIRECTORY = "spares"


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
        workdir: Path,
        environment: Callable[[bool], dict[str, str]],
    ) -> None:
        self._supervisor = supervisor
        #: Where spares' directories (their listening sockets) are made.
        self._workdir = workdir
        #: A runtime's environment with or without a network, before ``take`` gives its own.
        self._environment = environment
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
        #: How many spares to keep (``spares``, more after a burst) and when to refill.
        self._schedule = SpareSchedule(SpareDemand(spares), self.replenish, self._shrink)
        self._spares: deque[Spare] = deque()
        #: The refill's workers (at most REFILL_PARALLEL) and the forks they have going.
        self._refilling: set[asyncio.Task[None]] = set()
        self._forking = 0
        #: Spares beyond the wanted count being killed (awaited, never cancelled, on close).
        self._discarding: set[asyncio.Task[None]] = set()
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

    async def take(
        self, memory_mb: int, env: Mapping[str, str], network: bool, directory: Path
    ) -> Spare:
        """A runtime for a container of ``memory_mb`` with the environment ``env``, serving
        on the listening socket now in ``directory`` (made here: it must not exist), with
        its pid file there: a started spare, or one forked on the spot when a burst used
        them all.

        Before it serves anything the runtime has the container's cgroup limits, /tmp size,
        environment and link (None without ``network``), and no capability. The caller
        owns what it returns: the runtime (its pid namespace's init: ``pid``, ``pidfd``),
        ``cgroup``, ``lease`` (released when the container ends) and the pipes in ``fds``
        (``lifeline``, ``stdout``, ``stderr``). Spares are forked again in the background
        shortly after. Raises ContainerError when the zygote is gone or a runtime forked on
        the spot does not start.
        """
        self._schedule.started()
        try:
            while True:
                spare = await self._take_spare()
                try:
                    return await self._hand_over(spare, memory_mb, env, network, directory)
                except OSError:
                    if spare is None:
                        raise
                    # A spare that died between its liveness check and ``take`` (its socket
                    # is gone): the next spare, or one forked now, takes its place. Its
                    # listening socket, if already renamed into ``directory``, goes too.
                    log.warning("a Python spare died as it was taken; taking another")
                    # Its directory, if already renamed to the container's, goes too.
                    shutil.rmtree(directory, ignore_errors=True)
        finally:
            self._schedule.ended()

    async def _hand_over(
        self,
        spare: Spare | None,
        memory_mb: int,
        env: Mapping[str, str],
        network: bool,
        directory: Path,
    ) -> Spare:
        """``take``'s work for one spare (None: fork one now)."""
        fresh = spare is None
        try:
            if spare is None:
                spare = await self._fork(network)
                self._limit(spare, memory_mb)
                os.mkdir(directory, 0o700)
                self._go(spare, network, memory_mb, directory)
            if spare.lease is not None and not network and self._network is not None:
                lease, spare.lease = spare.lease, None
                await self._network.detach(lease)
            elif spare.lease is None and network and self._network is not None:
                spare.lease = await self._network.attach(spare.pid)
            self._limit(spare, memory_mb)
            if not fresh:
                assert spare.directory is not None
                # The spare's directory becomes the container's: its listening socket's
                # inode keeps listening under the new name, its pid file is written. One
                # rename (~0.05 ms) instead of a mkdir, a file and a rename on the path
                # (0.6-0.9 ms on ext4 after a quiet moment, bench/README.md "coldapi");
                # the new name is free (replacing a directory costs 1-2 ms).
                os.rename(spare.directory, directory)
            spare.directory = None  # the container's directory goes with the container
            config = {"env": dict(env), "tmp_bytes": self._isolation.tmp_bytes(memory_mb)}
            spare.sock.send(b"take" + orjson.dumps(config))
            if fresh:
                await spare.ready(self._timeout)
        except BaseException:
            if spare is not None:
                await self._discard(spare)
            raise
        finally:
            if spare is not None:
                spare.sock.close()
        return spare

    async def _take_spare(self) -> Spare | None:
        """The oldest started spare still alive, if any."""
        while self._spares:
            spare = self._spares.popleft()
            if spare.alive():
                return spare
            await self._discard(spare)
        return None

    def _limit(self, spare: Spare, memory_mb: int) -> None:
        limits = self._isolation.limits(memory_mb)
        if limits != spare.limits:
            spare.cgroup.limit(limits)
            spare.limits = limits

    def _go(
        self, spare: Spare, network: bool, memory_mb: int, directory: Path | None = None
    ) -> None:
        """Start the runtime of a forked container in the container's empty ``directory``,
        else in a directory of its own among the spares' (renamed to the container's when
        taken)."""
        env, tmp_bytes = self._environment(network), self._isolation.tmp_bytes(memory_mb)
        if directory is None:
            spares = self._workdir / SPARES_DIRECTORY
            spares.mkdir(mode=0o700, exist_ok=True)
            directory = spares / secrets.token_hex(6)
            directory.mkdir(mode=0o700)
        spare.go(directory, env, tmp_bytes)  # the spare owns ``directory`` from here on

    async def _discard(self, spare: Spare) -> None:
        spare.discard()
        await spare.cgroup.aremove()
        if spare.lease is not None and self._network is not None:
            await self._network.detach(spare.lease)

    async def close(self) -> None:
        """Kill the spares and the zygote, remove their cgroups. Idempotent."""
        self._closed = True
        self._schedule.close()
        refilling, self._refilling = self._refilling, set()
        for task in refilling:
            task.cancel()
        await asyncio.gather(*refilling, *self._discarding, return_exceptions=True)
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
        """Wait until the background forking of spares (if any, or due soon) has finished."""
        if self._schedule.pending():
            self.replenish()
        while self._refilling:
            await asyncio.shield(asyncio.gather(*self._refilling, return_exceptions=True))

    def replenish(self) -> None:
        """Fork and start spares in the background until there are as many as wanted,
        up to :data:`REFILL_PARALLEL` at once."""
        if self._closed:
            return
        missing = self._schedule.demand.wanted - len(self._spares) - self._forking
        workers = min(REFILL_PARALLEL - len(self._refilling), missing)
        for _ in range(max(0, workers)):
            task = asyncio.ensure_future(self._keep_spares())
            self._refilling.add(task)
            task.add_done_callback(self._refilling.discard)

    def _shrink(self) -> None:
        """Drop the spares beyond the wanted count (it fell back after a burst), the
        oldest first."""
        if self._closed:
            return
        for _ in range(max(0, len(self._spares) - self._schedule.demand.wanted)):
            task = asyncio.ensure_future(self._discard(self._spares.popleft()))
            self._discarding.add(task)
            task.add_done_callback(self._discarding.discard)

    # -- spares ------------------------------------------------------------------------

    async def _keep_spares(self) -> None:
        """One refill worker: forks and starts spares while fewer are there or coming
        than wanted, and no burst is on."""
        try:
            demand = self._schedule.demand
            # A burst stops the refill: its creates fork their own, and a spare forked now
            # would only compete with them (it starts again once the burst is over).
            while (
                self.alive
                and not demand.bursting
                and len(self._spares) + self._forking < demand.wanted
            ):
                self._forking += 1
                try:
                    spare = await self._fork(self._spare_network, background=True)
                    try:
                        # No limits of its own until taken (its parent's apply): a spare's
                        # cgroup is told apart from a container's by that (invoker_bench B6).
                        self._go(spare, self._spare_network, SPARE_MEMORY_MB)
                        await spare.ready(self._timeout)
                    except BaseException:
                        await self._discard(spare)
                        raise
                finally:
                    self._forking -= 1
                if self._closed:
                    await self._discard(spare)
                    return
                self._spares.append(spare)
        except ContainerError as ex:
            log.warning("the Python zygote could not fork a spare container: %s", ex)

    async def _fork(self, network: bool = True, background: bool = False) -> Spare:
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


def script_path(proxy: Path) -> Path:
    """The zygote script next to the Python proxy."""
    return proxy.parent / SCRIPT
