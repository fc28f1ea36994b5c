"""The process sandbox: each container is a runtime proxy in a sandbox of its own.

:class:`ProcessContainerFactory` starts ``node proxy.js`` or ``python proxy.py`` — inside
bubblewrap namespaces and a cgroup of its own (:mod:`squall.sandbox.isolation`), or, only
when the operator chose so, as a plain child process — with a minimal explicit
environment. The invoker creates the runtime's listening Unix socket in the container's
directory and the runtime inherits it; :class:`ProcessContainer` talks to it with the
OpenWhisk runtime protocol through :class:`~squall.sandbox.http.UnixHttpClient`, and reads
its stdout and stderr continuously into a :class:`~squall.sandbox.logs.LogCollector`.

Guarantees, beyond those of :mod:`squall.sandbox.contracts`:

- Readiness is signalled by the proxy writing one byte to an inherited pipe
  (``__OW_READY_FD``): ``create`` returns as soon as the proxy listens, without polling.
- ``create`` either returns a listening container or raises ``ContainerError`` after
  killing its processes and removing its directory and cgroup, also when cancelled.
- ``destroy`` kills every process of the container — the sandbox's first process (which
  takes its whole pid namespace along), the process group, then anything left in the
  cgroup, paused containers included — waits until the runtime was reaped (no zombies),
  closes the pipes and connections and removes the directory and the cgroup.
- Every sandbox process lives in the supervisor's pid namespace, whose pid 1 dies with
  the invoker without a race (:mod:`squall.sandbox.pid1`): the kernel then kills them all.
- The runtime holds the read end of a *lifeline* pipe whose write end only the container
  holds (``__OW_LIFELINE_FD``): when the invoker process dies, even by SIGKILL, the runtime
  exits; a sandbox also dies with its parent (``--die-with-parent``). As a further line,
  ``<container dir>/pid`` records the pid and start time of each runtime, and a new
  factory on the same directory kills recorded processes and leftover cgroups first.
- One factory per directory: the factory holds an exclusive lock on ``<workdir>/.lock``
  (released by the kernel if the invoker dies), so start-up clean-up never touches the
  containers of a live invoker.
- A container started with ``__OW_CONCURRENCY`` > 1 in its environment runs activations
  concurrently; its runtime writes no sentinels and ``logs`` returns what arrived so far.

The factory's life (lock, leftovers, confinement, create, close) is here; its two start
paths are :mod:`squall.sandbox.sandboxstart` (bubblewrap through the supervisor, or a plain
process) and :mod:`squall.sandbox.forking` (forked by a zygote), on what
:mod:`squall.sandbox.processbase` shares (argv, binds, environment, forgetting a container).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from squall.config import Settings
from squall.errors import ContainerError
from squall.sandbox import launch
from squall.sandbox.bwrap import BwrapSandbox, write_etc
from squall.sandbox.cgroups import Cgroup, Limits
from squall.sandbox.container import ProcessContainer
from squall.sandbox.forking import ZygoteStarts
from squall.sandbox.interpreters import Runtimes, for_settings
from squall.sandbox.isolation import Isolation
from squall.sandbox.network import Lease, SandboxNetwork
from squall.sandbox.processbase import Confinement, zygote_kind, zygote_kinds
from squall.sandbox.sandboxstart import SandboxStarts
from squall.sandbox.supervisor import Supervisor
from squall.sandbox.zygote import DEFAULT_SPARES
from squall.sandbox.zygotes import DEFAULT_LIMIT as DEFAULT_ZYGOTES
from squall.sandbox.zygotes import Zygotes

#: OpenWhisk's 1 MiB result limit plus room for the JSON around it.
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024 + 64 * 1024
#: Log text kept per activation until the invoker asks with its own limit (OpenWhisk's max).
DEFAULT_LOG_CAP_BYTES = 10 * 1024 * 1024
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
#: The supervisor's cgroup, below the factory's: where sandboxes are born (bubblewrap,
#: until the invoker moves it into its container's cgroup).
SUPERVISOR_CGROUP = "supervisor"
SUPERVISOR_LIMITS = Limits(memory_bytes=1024 * 1024 * 1024, pids=4096, cpu_shares=1024)
#: Network namespaces kept prepared (with their links) for true cold starts.
PREPARED_NETWORKS = 2

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "ProcessContainer", "ProcessContainerFactory"]


class ProcessContainerFactory(ZygoteStarts, SandboxStarts):
    """Starts runtime proxies as isolated child processes; implements ``ContainerFactory``.

    Isolation (``isolation``: the default ``"auto"`` runs :meth:`Isolation.detect` and
    raises ``ContainerError`` when the host cannot isolate; ``None`` turns it off, for
    development only). Each isolated container:

    - runs in its own user, pid, mount, ipc, uts and network namespaces as an unprivileged
      user without capabilities; with ``network`` (a :class:`SandboxNetwork`, opened here
      and closed by :meth:`close`) a container created with ``network=True`` gets a link
      out under that network's egress rules, otherwise only a loopback device;
    - sees read-only only what its runtime needs (system directories, its interpreter, its
      proxy, a minimal ``/etc``) and a private writable ``/tmp`` capped in size — never
      ``$SQUALL_HOME``, the store, other containers' files, ``/root``, ``/home`` or
      ``/etc/shadow``; the action's files live in that ``/tmp``, so it cannot fill a disk;
    - is in a cgroup of its own before the runtime starts: memory limited to the action's
      memory (no swap), a pids limit (fork bombs stop there), an open-files limit, CPU
      shares proportional to memory; an out-of-memory kill is reported as
      ``RuntimeResponse.oom``; ``pause`` freezes the cgroup.

    ``workdir`` holds one directory per container (socket and pid file, never visible
    inside a sandbox). ``api_host`` becomes ``__OW_API_HOST`` — for a container with a
    network, the address the network gives the API instead (the one platform port it may
    reach). ``runtimes`` says which
    kinds run and with what (:mod:`squall.sandbox.interpreters`; default: the manifest and
    runtimes cache the ``SQUALL_*`` settings name, checked against this host). A kind's
    library set is bound read-only at ``/opt/squall/libraries`` and found after the
    action's own modules: on ``NODE_PATH`` for Node.js (which resolves an action's
    ``node_modules`` first), appended to ``sys.path`` by the Python proxy (after the
    action's zip and virtualenv). Python proxies run with ``-I -S`` (no site-packages of
    the host). ``max_response_bytes`` caps a runtime's answer, ``log_cap_bytes`` the log
    text held per activation before the first ``logs`` call, ``start_timeout`` how long a
    runtime may take to listen, ``path`` is the ``PATH`` the runtime sees.

    ``network_default``: whether most containers will have a network (the invoker's
    default): the zygote's spares are prepared that way.

    ``zygote``: isolated containers of a Python kind (``python:3.13``, ``python:3.11``:
    every one of :func:`~squall.sandbox.processbase.zygote_kinds`) created for a
    ``tenant`` are forked from that tenant's warm zygote of that kind, running the kind's
    interpreter (:mod:`squall.sandbox.zygote`; one per namespace and kind, at most
    ``zygotes`` of all kinds at a time, see :mod:`squall.sandbox.zygotes`; each started on
    its tenant's first such ``create``, keeping ``zygote_spares`` containers forked
    ahead) instead of started through bubblewrap; if a zygote cannot start or dies, a
    warning says why and that kind's containers are started as usual. Without isolation
    there is no zygote: plain processes start as they always did.

    Every sandbox is started by the factory's supervisor (:mod:`squall.sandbox.
    supervisor`), as an unprivileged host uid: one per container started through
    bubblewrap, one per zygote for the containers it forks. When the invoker dies, by
    SIGKILL too and at whatever moment, every sandbox dies with it.

    The constructor takes the directory's lock and cleans up what a crashed predecessor
    left (processes, directories, cgroups); it raises ``ContainerError`` when another
    live factory holds the directory or the cgroups cannot be set up.
    """

    def __init__(
        self,
        workdir: Path,
        api_host: str,
        *,
        isolation: Isolation | Literal["auto"] | None = "auto",
        runtimes: Runtimes | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES,
        start_timeout: float = 10.0,
        path: str = DEFAULT_PATH,
        zygote: bool = True,
        zygote_spares: int = DEFAULT_SPARES,
        zygotes: int = DEFAULT_ZYGOTES,
        network: SandboxNetwork | None = None,
        network_default: bool = True,
    ) -> None:
        # Resolved: the lock, the leftovers and the cgroup's name belong to the real path.
        self.workdir = Path(workdir).resolve()
        self.api_host = api_host
        self.isolation = Isolation.detect() if isolation == "auto" else isolation
        self.runtimes = runtimes if runtimes is not None else for_settings(Settings.from_env())
        #: The default Python kind (see ``zygote`` above), the one stem cells are of.
        self.zygote_kind = zygote_kind(self.runtimes)
        #: The kinds zygotes fork: every offered Python kind whose interpreter runs one.
        self.zygote_kinds = zygote_kinds(self.runtimes)
        self._max_response_bytes = max_response_bytes
        self._log_cap_bytes = log_cap_bytes
        self._start_timeout = start_timeout
        self._path = path
        self._containers: dict[str, ProcessContainer] = {}
        self._zygotes = Zygotes(self._start_zygote, self._close_zygote_uid, zygotes)
        self._zygotes.enabled = zygote and isolation is not None
        self._closed = False
        self._zygote_spares = zygote_spares
        # Without isolation, processes share the host's network anyway.
        self.network = network if self.isolation is not None else None
        self._network_default = network_default
        self._leases: dict[str, Lease] = {}
        #: Host uid of each container started through bubblewrap (given back on destroy).
        self._uids: dict[str, int] = {}
        self._supervisor_cgroup: Cgroup | None = None
        self._detaching: set[asyncio.Task[None]] = set()
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = self._take_lock()
        self._confinement: Confinement | None = None
        try:
            #: How many leftovers of a previous invoker were cleaned up at start.
            self.leftovers = self._clean_leftovers()
            self._confinement = None if self.isolation is None else self._confine(self.isolation)
            self._compile_proxies()
            if self.network is not None and self.network.block is None:
                self.network.open()
            if self.network is not None and self._confinement is not None and network_default:
                # Namespaces with their links made ahead, for sandboxes started through
                # bubblewrap (see squall.sandbox.network): the link off the start's path.
                self.network.keep_prepared(PREPARED_NETWORKS)
        except BaseException:
            if self._confinement is not None:
                self._confinement.supervisor.close()
            os.close(self._lock)
            raise

    def supports(self, kind: str) -> bool:
        """Whether ``kind`` is offered here (its interpreter was found at start-up)."""
        return self.runtimes.get(kind) is not None

    def forks(self, kind: str, tenant: str | None) -> bool:
        """Whether a ``create`` of ``kind`` for ``tenant`` now would be forked from the
        tenant's running zygote (a container of ~3 MiB, one process) rather than started
        through bubblewrap. The pool then leaves stem cells to others."""
        if kind not in self.zygote_kinds or tenant is None or not self._zygotes.enabled:
            return False
        zygote = self._zygotes.get(tenant, kind)
        return zygote is not None and zygote.alive

    @property
    def supervisor(self) -> Supervisor | None:
        """The supervisor that spawns this factory's sandboxes (None without isolation)."""
        return self._confinement.supervisor if self._confinement is not None else None

    @property
    def containers(self) -> list[ProcessContainer]:
        """The containers created and not destroyed yet."""
        return list(self._containers.values())

    async def create(
        self,
        kind: str,
        memory_mb: int,
        env: Mapping[str, str] | None = None,
        *,
        network: bool = True,
        tenant: str | None = None,
        idle: bool = False,
    ) -> ProcessContainer:
        """Start a runtime for ``kind`` and return once it listens; see the contract.
        ``network``: give it a link out (when the factory has a network). ``tenant``: the
        namespace it will serve, if known — only then may it be forked from a zygote, that
        tenant's own (:mod:`squall.sandbox.zygotes`). ``idle`` (a stem cell): its cgroup
        is made with the least CPU weight, and its first ``initialize`` writes its own
        (a forked container is never idle: it is made for a request)."""
        if self._closed:
            raise ContainerError("the container factory is closed")
        if not self.supports(kind):
            raise ContainerError(f"kind {kind!r} is not supported by the process sandbox")
        container_id = secrets.token_hex(6)
        directory = self.workdir / container_id
        try:
            net = self.network if network else None
            forked = kind in self.zygote_kinds
            zygote = await self._zygotes.for_tenant(tenant, kind) if forked else None
            if zygote is not None:
                self._zygotes.holds(container_id, zygote)  # never evicted while it forks
                # The zygote makes the directory (a started spare's, renamed: no mkdir).
                container = await self._fork(
                    zygote, kind, container_id, memory_mb, directory, env, net is not None
                )
            else:
                directory.mkdir(mode=0o700)
                try:
                    container = await self._start(
                        container_id, kind, memory_mb, directory, env or {}, net, idle
                    )
                finally:
                    if net is not None:
                        net.replenish()  # after the start: the refill does not compete
        except BaseException:
            self._zygotes.released(container_id)
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise
        self._containers[container_id] = container
        return container

    async def close(self) -> None:
        """Destroy every container this factory created, release the directory.
        Idempotent."""
        if self._closed and self._lock < 0:
            return
        self._closed = True
        await asyncio.gather(*(c.destroy() for c in list(self._containers.values())))
        await self._zygotes.close()
        if self._detaching:
            await asyncio.gather(*self._detaching, return_exceptions=True)
        if self.network is not None:
            await asyncio.to_thread(self.network.close)
        if self._confinement is not None:
            # Everything it spawned dies with its pid 1; nothing should be left by now.
            await asyncio.to_thread(self._confinement.supervisor.close)
            if self._supervisor_cgroup is not None:
                await self._supervisor_cgroup.aremove()
            self._confinement.cgroups.remove()
        if self._lock >= 0:
            os.close(self._lock)  # releases the flock
            self._lock = -1

    # -- start-up ----------------------------------------------------------------------

    def _take_lock(self) -> int:
        fd = os.open(self.workdir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ContainerError(f"another invoker is using {self.workdir}") from None
        return fd

    def _clean_leftovers(self) -> int:
        """Kill the runtimes a previous invoker on this directory left, drop their files."""
        found = 0
        for entry in self.workdir.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            launch.kill_leftover(entry)
            shutil.rmtree(entry, ignore_errors=True)
            found += 1
        return found

    def _confine(self, isolation: Isolation) -> Confinement:
        launch.become_subreaper()  # see launch.reap_orphan
        etc = self.workdir / ".etc"
        network = self.network
        write_etc(etc, None if network is None else network.resolv_conf())
        # One parent cgroup per work directory: stale children are this directory's.
        instance = hashlib.sha256(str(self.workdir).encode()).hexdigest()[:16]
        cgroups = isolation.hierarchy.root(f"{isolation.cgroup_root}/{instance}")
        self.leftovers += cgroups.prepare()
        # Every directory a sandbox binds, reachable by the sandboxes' unprivileged uids
        # through the supervisor's stage (see squall.sandbox.supervisor).
        sources = [str(etc)]
        for kind in self.runtimes.interpreters:
            sources += [source for source, _ in self._binds(kind)]
        home = cgroups.create(SUPERVISOR_CGROUP, SUPERVISOR_LIMITS)
        # Its containers' cgroups are the children of ``cgroups``: a frozen one is thawed
        # (and so dies) when the invoker dies, not only at the next invoker's start.
        supervisor = Supervisor(str(self.workdir), home.procs_files, sources, cgroups.directories)
        try:
            supervisor.start()
        except BaseException:
            home.remove(timeout=1.0)
            raise
        sandbox = BwrapSandbox(
            isolation.bwrap, etc, network=network is not None, etc_bind=supervisor.staged(str(etc))
        )
        self._supervisor_cgroup = home
        return Confinement(isolation, sandbox, cgroups, supervisor, isolation.uids())
