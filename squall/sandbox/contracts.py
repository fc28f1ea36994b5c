"""The ContainerFactory / Container seam: where an action's code actually runs.

A *container* is one runtime process (Node.js or CPython proxy) that speaks the OpenWhisk
runtime protocol: ``POST /init`` once, then ``POST /run`` per activation. The invoker only
sees these contracts; the process sandbox (default) and, later, Docker implement them.

Guarantees every implementation gives (checked by ``tests/contract``-style suites):

- ``ContainerFactory.create`` returns a container whose runtime is already listening, or
  raises :class:`squall.errors.ContainerError`; it never leaves a half-started process.
- ``Container.initialize`` / ``Container.run`` never raise for anything the *action* does:
  a crash, a hang past ``timeout`` or a malformed answer come back as a
  :class:`RuntimeResponse` with ``status`` / ``timed_out`` / ``exited`` set. They raise
  ``ContainerError`` only when the container was already destroyed.
- ``Container.logs`` returns the lines written for the activation that just ended, each
  stamped with the time the invoker read it, stopping at the runtime's sentinel line on
  both stdout and stderr (or when ``wait`` runs out, e.g. after a crash). At most
  ``limit_bytes`` bytes of log text are kept; anything past that is dropped as it arrives
  and ``truncated`` is set.
- ``Container.destroy`` is idempotent, kills every process of the container and frees its
  files; after it, ``initialize`` and ``run`` raise ``ContainerError``.
- A container is used by one task at a time unless the action's concurrency limit is > 1
  (Node.js); the implementation serializes nothing itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from squall.errors import ContainerError

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"

#: A header of a ``/run`` written together with its ``/init`` (:class:`InitAndRun`): the
#: action's time limit in ms, from which the runtime computes the run's ``deadline`` when
#: the run starts (OpenWhisk's ``__OW_DEADLINE``), so /init's time does not shorten it.
DEADLINE_AFTER_HEADER = "X-Squall-Deadline-After-Ms"

#: Another header of that ``/run``: a ``CLOCK_MONOTONIC`` instant in ns (one clock for
#: the invoker and every runtime of the host) by which its ``/init`` must have answered.
#: The runtime checks it when the run would start, after it sent the ``/init`` answer: if
#: it has passed, the ``/run`` answers :data:`INIT_LATE_STATUS` and runs nothing, because
#: the invoker may have recorded an init timeout and be destroying the container.
INIT_DEADLINE_HEADER = "X-Squall-Init-Deadline-Ns"

#: A refused ``/run`` (see :data:`INIT_DEADLINE_HEADER`): 408 Request Timeout.
INIT_LATE_STATUS = 408

#: The kind of a container running a custom image: ``blackbox:<image>`` (the pool keys
#: warm containers by kind, so two images never share one). Only a factory that runs
#: images (the Docker backend) ``supports`` such kinds.
IMAGE_KIND_PREFIX = "blackbox:"


def image_kind(image: str) -> str:
    """The container kind of a custom ``image``."""
    return IMAGE_KIND_PREFIX + image


def image_of(kind: str) -> str | None:
    """The image of an image kind (``blackbox:<image>``), None for other kinds."""
    if kind.startswith(IMAGE_KIND_PREFIX) and len(kind) > len(IMAGE_KIND_PREFIX):
        return kind[len(IMAGE_KIND_PREFIX) :]
    return None


class ImageNotFound(ContainerError):
    """``create`` of an image kind whose image the factory does not have (a developer
    error: the operator has to load or build it first)."""

    def __init__(self, image: str) -> None:
        super().__init__(
            f"the image '{image}' is not present on this invoker's Docker daemon "
            "(load or build it there first)"
        )
        self.image = image


@dataclass(frozen=True, slots=True)
class RuntimeResponse:
    """What the runtime answered to /init or /run.

    ``status`` is the HTTP status (0 when there was no answer), ``body`` the raw bytes.
    ``timed_out`` means the deadline passed first; ``exited`` means the process died or
    closed the connection before answering; ``oom`` (with ``exited``) that the kernel
    killed it because the container reached its memory limit. ``truncated`` means the body
    was cut at the factory's maximum response size.
    """

    status: int
    body: bytes
    timed_out: bool = False
    exited: bool = False
    truncated: bool = False
    full_size: int = 0
    oom: bool = False


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of action output; ``time_ns`` is wall-clock epoch nanoseconds."""

    time_ns: int
    stream: str  # "stdout" | "stderr"
    text: str


@dataclass(slots=True)
class LogResult:
    lines: list[LogLine] = field(default_factory=list)
    truncated: bool = False


class Container(Protocol):
    """One runtime process of one kind; see the module docstring for guarantees."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def memory_mb(self) -> int: ...

    async def initialize(self, payload: Mapping[str, Any], timeout: float) -> RuntimeResponse:
        """POST /init with ``{"value": payload}``; ``timeout`` in seconds."""
        ...

    async def run(self, payload: Mapping[str, Any], timeout: float) -> RuntimeResponse:
        """POST /run with ``payload`` (already shaped: value, activation_id, ...)."""
        ...

    async def logs(self, limit_bytes: int, wait: float) -> LogResult:
        """The log lines of the activation that just ended (see module docstring)."""
        ...

    def pause(self) -> None:
        """Stop every process of the container until ``resume`` (it keeps its memory).
        Raises ContainerError after ``destroy``; ``destroy`` works on a paused container."""
        ...

    def resume(self) -> None:
        """Let a paused container run again; a no-op on one that is not paused."""
        ...

    def memory_used(self) -> int | None:
        """Bytes of memory the container uses now (its cgroup's use, reclaimable file
        cache excluded); None when the factory cannot tell (no cgroup) or it is gone.
        A few small file reads: cheap, but not for every run (the pool's MEMORY GUARD)."""
        ...

    async def destroy(self) -> None:
        """Kill every process of the container and free its files. Idempotent."""
        ...


@runtime_checkable
class InitAndRun(Protocol):
    """An optional capability of a container whose runtime takes ``/init`` and the first
    ``/run`` written together (HTTP pipelining on one connection; the Python and Node.js
    proxies): a cold start is then one exchange instead of two. ``pipelines`` says whether
    this one's runtime does (a factory may make containers of several runtimes).

    ``initialize_and_run`` writes both requests at once, the ``/run`` carrying
    :data:`DEADLINE_AFTER_HEADER` (``timeout`` in ms): the runtime's deadline counts from
    the run's start, as OpenWhisk's; and :data:`INIT_DEADLINE_HEADER` (a bound a little
    shorter than ``timeout`` from the write): a ``/run`` the runtime refused because its
    ``/init`` answered too late comes back as timed out. ``initialized`` is called with
    the ``/init`` answer as soon as it arrives and says whether it succeeded: if not, the
    ``/run``'s answer is not read (the runtime answers a ``/run`` after a failed ``/init``
    with 403 and runs nothing) and None is returned in its place. Each answer has
    ``timeout`` seconds from its request's start (the ``/run``'s from the ``/init`` answer).
    Same errors and log segments as ``initialize`` then ``run``."""

    pipelines: bool

    async def initialize_and_run(
        self,
        init_payload: Mapping[str, Any],
        run_payload: Mapping[str, Any],
        timeout: float,
        initialized: Callable[[RuntimeResponse], bool],
    ) -> tuple[RuntimeResponse, RuntimeResponse | None]: ...


class ContainerFactory(Protocol):
    """Creates containers; owns their lifetime as a group.

    Isolation every factory gives its containers (an implementation may only drop it when
    its operator explicitly asked for an unsafe development mode):

    - a container's processes cannot see or signal the invoker's or another container's
      processes, files or IPC, and cannot read the invoker's state (its home directory,
      store, credentials) or host secrets such as ``/etc/shadow``;
    - the file system a container can write is private to it and bounded in size; what it
      writes dies with it;
    - no network beyond the container's own loopback, unless the factory has an egress
      policy and the container was created with ``network``: then it reaches what the
      policy allows and never the host, the platform's ports other than its API, or the
      denied ranges (see :mod:`squall.sandbox.egress`);
    - memory is limited to the ``memory_mb`` asked for (no swap beyond it), and so are the
      number of processes, open files and the CPU share, so one container cannot starve
      the host or its neighbours; a container killed for exceeding its memory answers with
      ``RuntimeResponse.oom``;
    - every process a container starts is killed when it is destroyed, and when the
      invoker dies.
    """

    async def create(
        self,
        kind: str,
        memory_mb: int,
        env: Mapping[str, str] | None = None,
        *,
        network: bool = True,
        tenant: str | None = None,
        idle: bool = False,
    ) -> Container:
        """Start a runtime for ``kind`` (e.g. ``nodejs:20``) and wait until it listens.
        ``network`` False: it has no network beyond its own loopback, whatever the
        factory's egress rules allow. ``tenant``: the namespace it will serve, when known
        (None: any may take it later); containers of different tenants never share
        per-process secrets such as a hash seed. ``idle``: started ahead of any request
        (a stem cell): where the factory can, its processes get the least CPU weight
        until its first ``initialize`` (which gives it its own again), so that its
        start and idle warm-up use only the CPU the containers at work leave; a factory
        that cannot starts it as any other."""
        ...

    def supports(self, kind: str) -> bool:
        """Whether this factory can start runtimes of ``kind``."""
        ...

    async def close(self) -> None:
        """Destroy every container this factory created. Idempotent."""
        ...
