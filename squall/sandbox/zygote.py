"""Python containers forked from a warm interpreter: :class:`Zygote`, the invoker's side.

A Python cold start through bubblewrap costs an interpreter start, its imports,
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
   the request path). Each is made ready for a container size — the size of the take
   it replaces: its cgroup's memory and pids limits are written (its CPU weight stays
   the least until taken) and its ``/tmp`` and ``/dev/shm`` are mounted with that size.
   It was sent ``go`` with the runtime's descriptors (a listening
   socket in a directory of its own under ``spares`` in the factory's workdir, beside
   its pid file; ready and lifeline pipes, stdout, stderr), and its proxy wrote its
   ready byte: it listens, but serves nothing and still holds its capabilities until it
   is taken; the invoker then watches its exit and output and connects to its socket
   (the container's first connection, waiting in the backlog: :meth:`Spare.watch`).
   The forking of spares starts
   shortly after the last create took its runtime, not to compete with the taken
   containers' first requests (postponed while a burst's creates wait: a spare forked
   then would serve none of them), with up to :data:`REFILL_PARALLEL` in flight;
2. on ``create``, takes a started spare — the oldest one ready for the container's size,
   else the oldest — (or forks and starts one on the spot when a burst used them all),
   removes its link when the container must have no network, writes the cgroup's CPU
   weight (one write, through the file opened while the spare waited: ``Spare.fit``;
   all its limits, ~0.3 ms, for a spare of another size), renames the spare's
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
- Lifetime: the zygote process (:mod:`squall.sandbox.zygoteprocess`) dies with the
  invoker, and every container's pid namespace with it. Spares die on ``close``, or
  when the invoker drops their socket.
- ``close`` kills the spares and the zygote and removes their cgroups; idempotent.

Here: the spares (their refill, in the background) and the hand-over. The zygote
process itself — its start, the forks and its end — is :mod:`squall.sandbox.zygoteprocess`.

Everything runs on the event loop thread except the cgroup moves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

import orjson

from squall.errors import ContainerError
from squall.sandbox.bwrap import BwrapSandbox
from squall.sandbox.cgroups import Limits
from squall.sandbox.cgrouptree import CgroupRoot
from squall.sandbox.isolation import Isolation
from squall.sandbox.network import SandboxNetwork
from squall.sandbox.spare import Spare
from squall.sandbox.sparedemand import REFILL_PARALLEL, SpareDemand, SpareSchedule
from squall.sandbox.supervisor import Supervisor
from squall.sandbox.zygoteprocess import SPARE_CPU_SHARES, ZygoteProcess

log = logging.getLogger(__name__)

DEFAULT_SPARES = 2
#: The memory a spare is started for (OpenWhisk's default) before any take: its /tmp size
#: and the memory and pids limits of its cgroup, changed on ``take`` for a container of
#: another size. Later spares are started for the size of the take they replace.
SPARE_MEMORY_MB = 256
#: The sizes of the last takes kept, each for the spare that replaces the one taken.
SIZES_KEPT = 64
#: The directory of the factory's workdir where spares' directories wait (named like no
#: container's: a leftover of a dead invoker is cleaned like a container's directory).
SPARES_DIRECTORY = "spares"


class Zygote:
    """One sandboxed CPython zygote and its spare containers; see the module docstring.

    ``argv``, ``binds``, ``sandbox``, ``cgroups`` and ``supervisor`` start the zygote
    process (:class:`~squall.sandbox.zygoteprocess.ZygoteProcess`); ``workdir`` is where
    spares' directories wait, ``environment`` a spare's environment with or without a
    network.
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
        log_cap_bytes: int | None = None,
    ) -> None:
        #: Where spares' directories (their listening sockets) are made.
        self._workdir = workdir
        #: A runtime's environment with or without a network, before ``take`` gives its own.
        self._environment = environment
        #: The host uid of the zygote and of every container it forks (the factory gives
        #: it back after ``close``).
        self.uid = uid
        self._network = network
        #: Whether spares are forked with a link (what most containers will want).
        self._spare_network = spare_network
        self._isolation = isolation
        self._timeout = start_timeout
        #: A started spare's output is read into a log collector of this size ahead of
        #: its take (None: its taker attaches the pipes).
        self._log_cap_bytes = log_cap_bytes
        self._process = ZygoteProcess(
            argv=argv,
            binds=binds,
            sandbox=sandbox,
            isolation=isolation,
            cgroups=cgroups,
            start_timeout=start_timeout,
            network=network,
            supervisor=supervisor,
            uid=uid,
        )
        #: How many spares to keep (``spares``, more after a burst) and when to refill.
        self._schedule = SpareSchedule(SpareDemand(spares), self.replenish, self._shrink)
        self._spares: deque[Spare] = deque()
        #: The memory sizes the next spares are started for: a spare replaces the one a
        #: take used and is made ready for the same size (its cgroup's memory and pids
        #: limits and its /tmp), so that taking it for that size writes only its CPU weight
        #: and remounts nothing. The oldest first; when none is noted (spares grown after
        #: a burst's forks on the spot), the last take's size.
        self._sizes: deque[int] = deque(maxlen=SIZES_KEPT)
        self._last_size = SPARE_MEMORY_MB
        #: The refill's workers (at most REFILL_PARALLEL) and the forks they have going.
        self._refilling: set[asyncio.Task[None]] = set()
        self._forking = 0
        #: Spares beyond the wanted count being killed (awaited, never cancelled, on close).
        self._discarding: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def alive(self) -> bool:
        return self._process.alive and not self._closed

    async def start(self) -> None:
        """Start the zygote and wait until it is warm; ContainerError (with its stderr)
        if it cannot start. The first spares are forked in the background."""
        await self._process.start()
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
        self._last_size = memory_mb
        try:
            while True:
                spare = await self._take_spare(memory_mb)
                if spare is not None:
                    self._sizes.append(memory_mb)  # for the spare that replaces it
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
                spare = await self._process.fork(network)
                spare.fit(self._isolation.limits(memory_mb))
                os.mkdir(directory, 0o700)
                self._go(spare, network, memory_mb, directory)
            if spare.lease is not None and not network and self._network is not None:
                lease, spare.lease = spare.lease, None
                await self._network.detach(lease)
            elif spare.lease is None and network and self._network is not None:
                spare.lease = await self._network.attach(spare.pid)
            spare.fit(self._isolation.limits(memory_mb))
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
            if not fresh:  # woken on another CPU than this loop's: it takes while we go on
                spare.keep_off_this_cpu()
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

    async def _take_spare(self, memory_mb: int) -> Spare | None:
        """The oldest started spare still alive made ready for ``memory_mb``, else the
        oldest one still alive, if any."""
        while self._spares:
            ready = (s for s in self._spares if s.memory_mb == memory_mb)
            spare = next(ready, self._spares[0])
            self._spares.remove(spare)
            if spare.alive():
                return spare
            await self._discard(spare)
        return None

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
        spare.memory_mb = memory_mb

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
        await self._process.close()

    def pids(self) -> set[int]:
        """Every process of the zygote and its spares (bubblewrap's, the zygote, the
        spares' runtimes)."""
        return self._process.pids().union(*(spare.cgroup.pids() for spare in self._spares))

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
                    spare = await self._process.fork(self._spare_network, background=True)
                    try:
                        size = self._sizes.popleft() if self._sizes else self._last_size
                        # Its cgroup's memory and pids limits for that size, before its
                        # runtime starts; a waiting spare's CPU weight stays the least
                        # (told apart from a container's by that: invoker_bench B6).
                        limits = self._isolation.limits(size)
                        spare.limit_ahead(
                            Limits(limits.memory_bytes, limits.pids, SPARE_CPU_SHARES)
                        )
                        self._go(spare, self._spare_network, size)
                        await spare.ready(self._timeout)
                        if self._log_cap_bytes is not None:
                            await spare.watch(self._log_cap_bytes)
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
