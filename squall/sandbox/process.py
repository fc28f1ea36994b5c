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
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from squall.config import Settings
from squall.errors import ContainerError
from squall.runtimes import SUPPORT_DIRS, family, proxy_path
from squall.runtimes import interpreter as runs_on
from squall.sandbox import launch
from squall.sandbox.bwrap import RUNTIME_ROOT, BwrapSandbox, interpreter_prefix, write_etc
from squall.sandbox.cgroups import Cgroup, CgroupRoot, Limits
from squall.sandbox.container import ProcessContainer, RuntimeProcess
from squall.sandbox.http import UnixHttpClient
from squall.sandbox.interpreters import Runtimes, for_settings
from squall.sandbox.isolation import Isolation, confine
from squall.sandbox.logs import LogCollector
from squall.sandbox.network import Lease, SandboxNetwork
from squall.sandbox.supervisor import Supervisor, UidRange
from squall.sandbox.zygote import DEFAULT_SPARES, ForkedRuntime, Zygote, script_path
from squall.sandbox.zygotes import DEFAULT_LIMIT as DEFAULT_ZYGOTES
from squall.sandbox.zygotes import Zygotes

log = logging.getLogger(__name__)

#: OpenWhisk's 1 MiB result limit plus room for the JSON around it.
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024 + 64 * 1024
#: Log text kept per activation until the invoker asks with its own limit (OpenWhisk's max).
DEFAULT_LOG_CAP_BYTES = 10 * 1024 * 1024
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
SOCKET_NAME = launch.SOCKET_NAME
#: Where a sandboxed runtime keeps the action's files (a tmpfs of its own).
SANDBOX_WORKDIR = "/tmp"
#: The kind whose isolated containers a zygote forks (see :mod:`squall.sandbox.zygote`).
ZYGOTE_KIND = "python:3.11"
#: Where a sandbox sees its kind's library set (read-only).
SANDBOX_LIBRARIES = f"{RUNTIME_ROOT}/libraries"
#: The supervisor's cgroup, below the factory's: where sandboxes are born (bubblewrap,
#: until the invoker moves it into its container's cgroup).
SUPERVISOR_CGROUP = "supervisor"
SUPERVISOR_LIMITS = Limits(memory_bytes=1024 * 1024 * 1024, pids=4096, cpu_shares=1024)

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "ProcessContainer", "ProcessContainerFactory"]


@dataclass(frozen=True)
class _Confinement:
    """An isolating factory's parts: settings, command builder, parent cgroup, the
    supervisor that spawns every sandbox, and the sandboxes' host uids."""

    isolation: Isolation
    sandbox: BwrapSandbox
    cgroups: CgroupRoot
    supervisor: Supervisor
    uids: UidRange | None


class ProcessContainerFactory:
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

    ``zygote``: isolated ``python:3.11`` containers created for a ``tenant`` are forked
    from that tenant's warm zygote (:mod:`squall.sandbox.zygote`; one per namespace, at
    most ``zygotes`` at a time, see :mod:`squall.sandbox.zygotes`; each started on its
    tenant's first such ``create``, keeping ``zygote_spares`` containers forked ahead)
    instead of started through bubblewrap; if a zygote cannot start or dies, a warning
    says why and they are started as usual. Without isolation there is no zygote: plain
    processes start as they always did.

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
        self._confinement: _Confinement | None = None
        try:
            #: How many leftovers of a previous invoker were cleaned up at start.
            self.leftovers = self._clean_leftovers()
            self._confinement = None if self.isolation is None else self._confine(self.isolation)
            if self.network is not None and self.network.block is None:
                self.network.open()
        except BaseException:
            if self._confinement is not None:
                self._confinement.supervisor.close()
            os.close(self._lock)
            raise

    def supports(self, kind: str) -> bool:
        """Whether ``kind`` is offered here (its interpreter was found at start-up)."""
        return self.runtimes.get(kind) is not None

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
    ) -> ProcessContainer:
        """Start a runtime for ``kind`` and return once it listens; see the contract.
        ``network``: give it a link out (when the factory has a network). ``tenant``: the
        namespace it will serve, if known — only then may it be forked from a zygote, that
        tenant's own (:mod:`squall.sandbox.zygotes`)."""
        if self._closed:
            raise ContainerError("the container factory is closed")
        if not self.supports(kind):
            raise ContainerError(f"kind {kind!r} is not supported by the process sandbox")
        container_id = secrets.token_hex(6)
        directory = self.workdir / container_id
        directory.mkdir(mode=0o700)
        try:
            net = self.network if network else None
            zygote = await self._zygotes.for_tenant(tenant) if kind == ZYGOTE_KIND else None
            if zygote is not None:
                self._zygotes.holds(container_id, zygote)  # never evicted while it forks
                container = await self._fork(
                    zygote, container_id, memory_mb, directory, env, net is not None
                )
            else:
                container = await self._start(
                    container_id, kind, memory_mb, directory, env or {}, net
                )
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

    def _confine(self, isolation: Isolation) -> _Confinement:
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
        supervisor = Supervisor(str(self.workdir), home.procs_files, sources)
        try:
            supervisor.start()
        except BaseException:
            home.remove(timeout=1.0)
            raise
        sandbox = BwrapSandbox(
            isolation.bwrap, etc, network=network is not None, etc_bind=supervisor.staged(str(etc))
        )
        self._supervisor_cgroup = home
        return _Confinement(isolation, sandbox, cgroups, supervisor, isolation.uids())

    # -- the zygote --------------------------------------------------------------------

    @property
    def zygote(self) -> Zygote | None:
        """The most recently used running zygote, if any (see :meth:`zygote_of`)."""
        return self._zygotes.latest

    def zygote_of(self, tenant: str) -> Zygote | None:
        """The zygote of ``tenant``, if it runs (started on its first ``python:3.11``
        create)."""
        return self._zygotes.get(tenant)

    async def _start_zygote(self, tenant: str) -> Zygote | None:
        """A new zygote for ``tenant`` (None, with a warning, when it cannot start)."""
        confinement = self._confinement
        assert confinement is not None
        argv, binds = self._argv(ZYGOTE_KIND)
        argv[-1] = str(script_path(Path(argv[-1])))
        zygote = Zygote(
            argv=argv,
            binds=binds,
            sandbox=confinement.sandbox,
            isolation=confinement.isolation,
            cgroups=confinement.cgroups,
            start_timeout=self._start_timeout,
            spares=self._zygote_spares,
            network=self.network,
            spare_network=self._network_default,
            supervisor=confinement.supervisor,
            uid=confinement.uids.take() if confinement.uids is not None else None,
        )
        try:
            await zygote.start()
        except ContainerError as ex:
            log.warning("%s; python:3.11 containers start as usual", ex.message)
            self._close_zygote_uid(zygote)
            return None
        log.info("started a Python zygote for namespace %s", tenant)
        return zygote

    def _close_zygote_uid(self, zygote: Zygote) -> None:
        """Give a closed zygote's uid back (its processes and containers are gone)."""
        uids = self._confinement.uids if self._confinement is not None else None
        if zygote.uid is not None and uids is not None:
            uids.give_back(zygote.uid)
            zygote.uid = None

    async def _fork(
        self,
        zygote: Zygote,
        container_id: str,
        memory_mb: int,
        directory: Path,
        env: Mapping[str, str] | None,
        network: bool,
    ) -> ProcessContainer:
        """A python:3.11 container forked by the zygote (see :mod:`squall.sandbox.zygote`)."""
        loop = asyncio.get_running_loop()
        logs = LogCollector(self._log_cap_bytes)
        exited: asyncio.Future[None] = loop.create_future()
        theirs: dict[str, int] = {}
        ours: dict[str, int] = {}
        try:
            theirs["listen"] = launch.listen(directory).detach()
            ours["ready"], theirs["ready"] = os.pipe()
            theirs["lifeline"], ours["lifeline"] = os.pipe()
            ours["stdout"], theirs["stdout"] = os.pipe()
            ours["stderr"], theirs["stderr"] = os.pipe()
            environment = self._environment(ZYGOTE_KIND, directory, env or {}, {}, network)
            sandbox, cgroup, lease = await zygote.spawn(memory_mb, environment, theirs, network)
        except BaseException:
            for fd in ours.values():
                os.close(fd)
            zygote.replenish()
            raise
        finally:
            for fd in theirs.values():  # the runtime holds the only copies now
                os.close(fd)
        runtime = ForkedRuntime(sandbox.pid, logs, exited)
        for stream in ("stdout", "stderr"):
            await runtime.attach(stream, ours.pop(stream))
        container = ProcessContainer(
            container_id=container_id,
            kind=ZYGOTE_KIND,
            memory_mb=memory_mb,
            directory=directory,
            transport=runtime,
            logs=logs,
            exited=exited,
            http=UnixHttpClient(
                directory / SOCKET_NAME, max_response_bytes=self._max_response_bytes
            ),
            lifeline=ours.pop("lifeline"),
            cgroup=cgroup,
            on_destroyed=self._forget,
        )
        container.sandbox = sandbox
        if lease is not None:
            self._leases[container_id] = lease
        ready_r = ours.pop("ready")
        try:
            launch.write_pid_file(directory, container.pid)
            ready = await launch.wait_ready(ready_r, self._start_timeout)
        except BaseException:
            await container.destroy()
            raise
        finally:
            os.close(ready_r)
            zygote.replenish()
        if not ready:
            await logs.wait_closed(1.0)
            await container.destroy()
            reason = logs.text("stderr") or "it exited or hung before listening"
            raise ContainerError(f"the forked python:3.11 runtime did not start: {reason}")
        return container

    # -- one container -----------------------------------------------------------------

    def _forget(self, container: ProcessContainer) -> None:
        self._containers.pop(container.id, None)
        self._zygotes.released(container.id)
        uid = self._uids.pop(container.id, None)
        uids = self._confinement.uids if self._confinement is not None else None
        if uid is not None and uids is not None:
            uids.give_back(uid)  # its processes are all gone
        lease = self._leases.pop(container.id, None)
        if lease is not None and self.network is not None:
            # Its namespace is gone with its processes, and the link with it; removing it
            # explicitly makes sure the address is free before it is handed out again.
            task = asyncio.ensure_future(self.network.detach(lease))
            self._detaching.add(task)
            task.add_done_callback(self._detaching.discard)

    def _binds(self, kind: str) -> list[tuple[str, str]]:
        """The (host source, sandbox target) directories a sandbox of ``kind`` binds."""
        found = self.runtimes.get(kind)
        if found is None:
            raise ContainerError(f"no interpreter found for kind {kind!r}")
        binds: list[tuple[str, str]] = []
        prefix = interpreter_prefix(found.executable)
        if prefix is not None:
            binds.append((prefix, prefix))
        script = proxy_path(kind)
        binds.append((str(script.parent), f"{RUNTIME_ROOT}/{family(kind)}"))
        # Proxy code shared with another family, where the proxy looks for it.
        binds += [(str(d), f"{RUNTIME_ROOT}/{d.name}") for d in SUPPORT_DIRS.get(family(kind), ())]
        if found.libraries is not None:
            binds.append((str(found.libraries), SANDBOX_LIBRARIES))
        return binds

    def _argv(self, kind: str) -> tuple[list[str], list[tuple[str, str]]]:
        """The runtime's argv as seen where it runs, and the binds it needs in a sandbox
        (their sources as the supervisor stages them)."""
        found = self.runtimes.get(kind)
        if found is None:
            raise ContainerError(f"no interpreter found for kind {kind!r}")
        interpreter = found.executable  # resolved: what the sandbox binds
        script = proxy_path(kind)
        binds: list[tuple[str, str]] = []
        if self._confinement is not None:
            staged = self._confinement.supervisor.staged
            binds = [(staged(source), target) for source, target in self._binds(kind)]
            script = Path(f"{RUNTIME_ROOT}/{family(kind)}") / script.name
        if runs_on(kind) == "python":
            return [interpreter, "-I", "-S", str(script)], binds
        return [interpreter, str(script)], binds

    def _environment(
        self,
        kind: str,
        directory: Path,
        env: Mapping[str, str],
        fds: Mapping[str, int],
        network: bool,
    ) -> dict[str, str]:
        # Explicit and minimal: nothing of the invoker's own environment leaks in.
        workdir = SANDBOX_WORKDIR if self._confinement is not None else str(directory)
        base = {"PATH": self._path, "HOME": workdir, "LANG": "C.UTF-8"}
        api_host = self.api_host
        if network and self.network is not None:
            api_host = self.network.api_host(self.api_host.partition(":")[0]) or api_host
        fixed = {"__OW_API_HOST": api_host, "__OW_WORKDIR": workdir}
        found = self.runtimes.get(kind)
        if found is not None and found.libraries is not None:
            inside = SANDBOX_LIBRARIES if self._confinement is not None else str(found.libraries)
            # Node.js reads NODE_PATH once at start; the Python proxy pops its variable.
            name = "NODE_PATH" if runs_on(kind) == "nodejs" else "__OW_LIBRARIES"
            fixed[name] = inside
        fixed.update({f"__OW_{name}_FD": str(fd) for name, fd in fds.items()})
        return {**base, **env, **fixed}

    async def _start(
        self,
        container_id: str,
        kind: str,
        memory_mb: int,
        directory: Path,
        env: Mapping[str, str],
        network: SandboxNetwork | None,
    ) -> ProcessContainer:
        loop = asyncio.get_running_loop()
        # Node.js with concurrency > 1 writes no sentinels; the Python proxy always does.
        concurrent = int(env.get("__OW_CONCURRENCY", "1") or "1") > 1
        logs = LogCollector(self._log_cap_bytes, split=not concurrent or family(kind) != "nodejs")
        exited: asyncio.Future[None] = loop.create_future()
        argv, binds = self._argv(kind)
        confinement = self._confinement
        cgroup = None
        uid = None
        if confinement is not None:
            limits = confinement.isolation.limits(memory_mb)
            cgroup = confinement.cgroups.create(container_id, limits)
            uid = confinement.uids.take() if confinement.uids is not None else None
        # Descriptors the child inherits (in this order: 3, 4, ... in a sandbox), and the
        # parent's ends it keeps.
        child_fds: list[int] = []
        keep: dict[str, int] = {}
        transport: RuntimeProcess
        try:
            listener = launch.listen(directory)
            child_fds.append(listener.detach())
            keep["ready"], ready_w = os.pipe()
            lifeline_r, keep["lifeline"] = os.pipe()
            child_fds += [ready_w, lifeline_r]
            fds = {"LISTEN": child_fds[0], "READY": ready_w, "LIFELINE": lifeline_r}
            if confinement is None:
                environment = self._environment(kind, directory, env, fds, network is not None)
                try:
                    transport, _ = await loop.subprocess_exec(
                        lambda: launch.RuntimeProtocol(logs, exited),
                        *argv,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                        env=environment,
                        cwd=directory,
                        start_new_session=True,
                        pass_fds=child_fds,
                    )
                except OSError as ex:
                    raise ContainerError(f"cannot start the {kind} runtime: {ex}") from ex
            else:
                keep["info"], info_w = os.pipe()
                block_r, keep["block"] = os.pipe()
                child_fds += [info_w, block_r]
                inside = {name: 3 + child_fds.index(fd) for name, fd in fds.items()}
                environment = self._environment(kind, directory, env, inside, network is not None)
                argv = confinement.sandbox.command(
                    argv,
                    binds=binds,
                    tmp_bytes=confinement.isolation.tmp_bytes(memory_mb),
                    info_fd=3 + child_fds.index(info_w),
                    block_fd=3 + child_fds.index(block_r),
                )
                transport = await self._spawn(
                    confinement, argv, environment, child_fds, uid, logs, exited
                )
        except BaseException:
            for fd in keep.values():
                os.close(fd)
            if cgroup is not None:
                cgroup.remove(timeout=0)
            if uid is not None and confinement is not None and confinement.uids is not None:
                confinement.uids.give_back(uid)
            raise
        finally:
            for fd in child_fds:  # the child holds the only copies now (EOF = it died)
                os.close(fd)
        if uid is not None:
            self._uids[container_id] = uid
        container = ProcessContainer(
            container_id=container_id,
            kind=kind,
            memory_mb=memory_mb,
            directory=directory,
            transport=transport,
            logs=logs,
            exited=exited,
            http=UnixHttpClient(
                directory / SOCKET_NAME, max_response_bytes=self._max_response_bytes
            ),
            lifeline=keep.pop("lifeline"),
            cgroup=cgroup,
            on_destroyed=self._forget,
        )
        ready_r = keep.pop("ready")
        try:
            launch.write_pid_file(directory, container.pid)
            if confinement is not None and cgroup is not None:

                async def connect(pid: int) -> None:
                    if network is not None:
                        self._leases[container_id] = await network.attach(pid)

                try:
                    container.sandbox = await confine(
                        container.pid,
                        keep.pop("info"),
                        keep.pop("block"),
                        cgroup,
                        None,  # set when it was spawned
                        self._start_timeout,
                        connect,
                    )
                except ContainerError as ex:
                    await logs.wait_closed(1.0)  # bubblewrap's last words say why
                    said = logs.text("stderr").strip()
                    reason = f"{ex.message} ({said})" if said else ex.message
                    raise ContainerError(f"the {kind} runtime did not start: {reason}") from ex
            ready = await launch.wait_ready(ready_r, self._start_timeout)
        except BaseException:
            await container.destroy()  # before the block pipe closes and lets it run
            for fd in keep.values():
                os.close(fd)
            raise
        finally:
            os.close(ready_r)
        if not ready:
            await logs.wait_closed(1.0)
            await container.destroy()
            reason = logs.text("stderr") or "it exited or hung before listening"
            raise ContainerError(f"the {kind} runtime did not start: {reason}")
        return container

    async def _spawn(
        self,
        confinement: _Confinement,
        argv: list[str],
        environment: Mapping[str, str],
        fds: list[int],
        uid: int | None,
        logs: LogCollector,
        exited: asyncio.Future[None],
    ) -> ForkedRuntime:
        """Start a sandbox through the supervisor; its output goes to ``logs``."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            spawned = await confinement.supervisor.spawn(
                argv,
                environment,
                stdout=out_w,
                stderr=err_w,
                fds=fds,
                uid=uid,
                nofile=confinement.isolation.nofile,
            )
        except ContainerError as ex:
            os.close(out_w)
            os.close(err_w)
            os.close(out_r)
            os.set_blocking(err_r, False)
            try:  # its last words say why, if it wrote them already
                reason = os.read(err_r, 4096).decode(errors="replace").strip()
            except BlockingIOError:
                reason = ""
            finally:
                os.close(err_r)
            raise ContainerError(f"{ex.message}: {reason}" if reason else ex.message) from ex
        except BaseException:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            raise
        os.close(out_w)
        os.close(err_w)
        runtime = ForkedRuntime(spawned.pid, logs, exited, pidfd=spawned.pidfd)
        await runtime.attach("stdout", out_r)
        await runtime.attach("stderr", err_r)
        return runtime
