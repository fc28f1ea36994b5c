"""What the process sandbox's two start paths share (see :mod:`squall.sandbox.process`).

:class:`ProcessFactoryBase` declares the state of a
:class:`~squall.sandbox.process.ProcessContainerFactory` that the zygote's path
(:mod:`squall.sandbox.forking`) and the bubblewrap path (:mod:`squall.sandbox.sandboxstart`)
read, and holds what both use: a runtime's argv, binds and environment, and forgetting a
destroyed container. Every attribute declared here is set by the factory's constructor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from squall.errors import BadRequest, ContainerError
from squall.runtimes import SUPPORT_DIRS, family, proxy_path
from squall.runtimes import interpreter as runs_on
from squall.sandbox import launch
from squall.sandbox.bwrap import RUNTIME_ROOT, BwrapSandbox, interpreter_prefix
from squall.sandbox.cgrouptree import CgroupRoot
from squall.sandbox.container import ProcessContainer
from squall.sandbox.interpreters import Runtimes, cached_bytecode
from squall.sandbox.isolation import Isolation
from squall.sandbox.network import Lease, SandboxNetwork
from squall.sandbox.supervisor import Supervisor, UidRange
from squall.sandbox.zygotes import Zygotes

SOCKET_NAME = launch.SOCKET_NAME
#: Where a sandboxed runtime keeps the action's files (a tmpfs of its own).
SANDBOX_WORKDIR = "/tmp"
#: The default Python kind (:func:`zygote_kind`) when the manifest has none.
ZYGOTE_KIND = "python:3.13"
#: The oldest CPython that runs the zygote (``squall/runtimes/python/zygote.py`` and
#: ``zygote_container.py``; tested on 3.11 and 3.13).
ZYGOTE_MIN_PYTHON = (3, 11)
#: Where a sandbox sees its kind's library set (read-only).
SANDBOX_LIBRARIES = f"{RUNTIME_ROOT}/libraries"
#: Node.js options every Node.js runtime starts with. One V8 background thread instead of
#: Node's default four: each thread that runs V8's background jobs (concurrent marking,
#: parallel scavenges, optimizing compiles) touches a malloc arena and a stack of its
#: own, ~0.6 MiB of private memory apiece — 2 MiB of a no-op container's ~12 (measured:
#: ``bench/README.md``, "memory_at_concurrency.py"), in every warm container and stem
#: cell. The background jobs still run off the main thread, on one: a host's containers
#: share its few cores anyway. Heap sizes stay V8's own (an action gets its memory
#: limit's worth), and an action's code runs unchanged (``process.execArgv`` shows it).
#: Optimizing compiles run on the main thread (``--no-concurrent-recompilation``): a
#: compile on the worker kept ~0.8 MiB more private memory per runtime (2000 warm runs
#: of a no-op: 10.2 → 9.4 MiB anonymous), at no CPU cost measured; the price is that a
#: hot function's compile (a few ms, once) pauses that runtime's other runs in flight.
NODE_OPTIONS = ("--v8-pool-size=1", "--no-concurrent-recompilation")


def zygote_kind(runtimes: Runtimes) -> str:
    """The default Python kind of the manifest (``python:3.13``; ``python:3.11`` where
    3.13 is not installed, see :meth:`~squall.entities.manifest.Manifest.only`, or where
    an operator's manifest makes it the default): the kind stem cells and docs call the
    zygote's. Every kind of :func:`zygote_kinds` is forked, each from zygotes of its own."""
    try:
        return runtimes.manifest.resolve_kind("python")
    except BadRequest:
        return ZYGOTE_KIND


def zygote_kinds(runtimes: Runtimes) -> frozenset[str]:
    """The kinds whose isolated containers are forked from a zygote: every offered kind
    of the Python family whose interpreter runs the zygote (CPython
    :data:`ZYGOTE_MIN_PYTHON` or later). A zygote runs its kind's interpreter and library
    set; other kinds start through bubblewrap."""
    kinds = set()
    for kind, found in runtimes.interpreters.items():
        try:
            version = tuple(int(part) for part in found.version.split(".")[:2])
        except ValueError:  # not a CPython version: not one to fork
            continue
        if family(kind) == "python" and version >= ZYGOTE_MIN_PYTHON:
            kinds.add(kind)
    return frozenset(kinds)


@dataclass(frozen=True)
class Confinement:
    """An isolating factory's parts: settings, command builder, parent cgroup, the
    supervisor that spawns every sandbox, and the sandboxes' host uids."""

    isolation: Isolation
    sandbox: BwrapSandbox
    cgroups: CgroupRoot
    supervisor: Supervisor
    uids: UidRange | None


class ProcessFactoryBase:
    """The factory's state both start paths read, and what they share; the factory's
    constructor sets every attribute (all its methods run on the event loop's thread)."""

    workdir: Path
    api_host: str
    runtimes: Runtimes
    zygote_kind: str
    zygote_kinds: frozenset[str]
    network: SandboxNetwork | None
    _max_response_bytes: int
    _log_cap_bytes: int
    _start_timeout: float
    _path: str
    _containers: dict[str, ProcessContainer]
    _zygotes: Zygotes
    _zygote_spares: int
    _network_default: bool
    _leases: dict[str, Lease]
    #: Host uid of each container started through bubblewrap (given back on destroy).
    _uids: dict[str, int]
    _detaching: set[asyncio.Task[None]]
    _confinement: Confinement | None

    # -- one container -----------------------------------------------------------------

    def _forget(self, container: ProcessContainer) -> None:
        self._containers.pop(container.id, None)
        self._zygotes.released(container.id)
        uid = self._uids.pop(container.id, None)
        uids = self._confinement.uids if self._confinement is not None else None
        if uid is not None and uids is not None:
            uids.give_back(uid)  # its processes are all gone
        self._forget_lease(container.id)

    def _forget_lease(self, container_id: str) -> None:
        """Detach the link of a container that is gone (or never started), in the
        background."""
        lease = self._leases.pop(container_id, None)
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
        if runs_on(kind) == "nodejs":
            return [interpreter, *NODE_OPTIONS, str(script)], binds
        return [interpreter, str(script)], binds

    def _started_argv(self, kind: str) -> tuple[list[str], list[tuple[str, str]]]:
        """:meth:`_argv` as a container started from nothing runs it. The CPython proxy
        is imported, not run as a script: from its cached bytecode (compiled once per
        factory, see :func:`squall.sandbox.interpreters.cached_bytecode`) instead of
        compiled at every start. Its directory leaves ``sys.path`` and its module
        ``sys.modules`` again before it serves: an action sees the same ``sys.path``
        and modules as with the script. The zygote's start uses :meth:`_argv`."""
        argv, binds = self._argv(kind)
        if family(kind) != "python":
            return argv, binds
        script = Path(argv[-1])
        code = (
            f"import sys; sys.path.insert(0, {str(script.parent)!r}); "
            f"import {script.stem} as proxy; del sys.path[0], sys.modules[{script.stem!r}]; "
            "proxy.main()"
        )
        return [*argv[:-1], "-c", code], binds

    def _compile_proxies(self) -> None:
        """Compile the CPython proxy, and the modules beside it that it and the zygote
        import, once for each Python interpreter of the factory (at start-up: blocking,
        an interpreter start each time one is stale)."""
        modules = sorted(proxy_path("python").parent.glob("*.py"))
        for kind, found in self.runtimes.interpreters.items():
            if family(kind) == "python":
                for module in modules:
                    cached_bytecode(found.executable, found.version, module)

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
