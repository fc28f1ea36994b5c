"""The Docker backend: each container is a Docker container on the invoker's dockerd.

:class:`DockerContainerFactory` implements ``ContainerFactory`` on the Docker Engine API
(through ``aiodocker``). It runs the built-in kinds from Squall's runtime images
(:mod:`squall.sandbox.images`; a kind whose image dockerd lacks when the factory starts is
left to the process sandbox) and custom images (``blackbox`` actions, kind
``blackbox:<image>``, see :mod:`squall.sandbox.backends`) that speak OpenWhisk's action
protocol on port 8080.

Guarantees, beyond those of :mod:`squall.sandbox.contracts`:

- Network: every container is created with network mode ``none`` (no Docker network, no
  published port). The invoker talks to the runtime's ``127.0.0.1:8080`` through sockets
  made inside the container's network namespace (:mod:`squall.sandbox.netns`), so no
  port of the container is reachable from the host or a neighbour. A container created
  with ``network`` gets its link out from the invoker's :class:`SandboxNetwork` (the veth
  pair and the nftables table of the process sandbox, attached through the container's
  pid): its egress rules are exactly the process sandbox's.
- Limits: memory = the action's memory with no swap (``MemorySwap`` = ``Memory``), CPU
  shares proportional to memory, a pids limit, an open-files limit, all capabilities
  dropped and ``no-new-privileges``; the built-in runtime images run as ``nobody`` on a
  read-only root with a size-capped ``/tmp``. An out-of-memory kill (dockerd's
  ``OOMKilled``) is reported as ``RuntimeResponse.oom``.
- Logs: the factory attaches to the container's stdout and stderr before it starts and
  feeds them to a :class:`~squall.sandbox.logs.LogCollector` (the same sentinel split as
  the process sandbox; a custom image that writes no sentinels gets its lines when the
  log wait runs out).
- ``pause``/``resume`` freeze and thaw the container's cgroup directly (v1 freezer or v2
  ``cgroup.freeze``), synchronously, as the contract requires; ``destroy`` thaws first,
  then removes the container with ``force`` (SIGKILL to all its processes).
- Leftovers: every container carries the label :data:`OWNER_LABEL` naming the factory's
  directory; a new factory on the same directory (one at a time: it holds
  ``<workdir>/.docker.lock``) removes the containers a crashed predecessor left behind
  in :meth:`start`. Containers do not die with the invoker by themselves (dockerd owns
  them), so this clean-up is what bounds a crash's leftovers. A factory notes that it
  may leave containers (``<workdir>/.docker-containers``, made before its first one and
  removed by a :meth:`close` that removed them all), so that ``start`` connects to dockerd
  only when there may be leftovers or the backend runs the built-in kinds; otherwise the
  first ``create`` connects. An invoker that never runs a custom image then never loads
  the Docker client (aiodocker, aiohttp: ~8 MB of the server's memory). A directory last
  used by a Squall older than the mark has none: what a crash of that version left is
  removed by the first ``create`` (or by ``squall`` stopping that invoker cleanly first).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squall.errors import ContainerError
from squall.sandbox.contracts import ImageNotFound, image_of
from squall.sandbox.http import UnixHttpClient
from squall.sandbox.images import RUNTIME_IMAGES, present_images
from squall.sandbox.logs import LogCollector
from squall.sandbox.netns import NamespaceConnector
from squall.sandbox.network import SandboxNetwork

if TYPE_CHECKING:
    import aiodocker

    from squall.sandbox.dockercontainer import DockerContainer

log = logging.getLogger(__name__)

OWNER_LABEL = "org.squall.owner"
KIND_LABEL = "org.squall.kind"
RUNTIME_PORT = 8080
PIDS_LIMIT = 1024
NOFILE_LIMIT = 1024
TMP_SIZE = "size=256m,mode=1777"
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024 + 64 * 1024
DEFAULT_LOG_CAP_BYTES = 10 * 1024 * 1024
#: Between two connection attempts while a runtime starts.
READY_POLL_S = 0.01


class DockerContainerFactory:
    """Starts runtimes as Docker containers; implements ``ContainerFactory`` (see the
    module docstring for what it guarantees).

    ``workdir`` identifies the factory (its lock and its containers' owner label);
    ``docker_host`` the daemon's socket (``unix:///path``; empty: ``DOCKER_HOST`` or
    ``/var/run/docker.sock``). ``builtin``: whether it also runs the built-in kinds whose
    runtime image dockerd has when the factory starts (otherwise only ``blackbox:<image>``
    kinds; a kind whose image is missing is left to the process sandbox, saying so);
    ``images``: their tags by kind (default: :data:`.images.RUNTIME_IMAGES`). ``network``: the
    invoker's sandbox network, shared with the process sandbox (opened by whoever
    created it; this factory never closes it). ``api_host`` becomes ``__OW_API_HOST``.
    """

    def __init__(
        self,
        workdir: Path,
        api_host: str,
        *,
        docker_host: str = "",
        builtin: bool = False,
        images: Mapping[str, str] | None = None,
        network: SandboxNetwork | None = None,
        start_timeout: float = 30.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.api_host = api_host
        self.docker_host = docker_host
        self.builtin = builtin
        default = {k: i.tag for k, i in RUNTIME_IMAGES.items()}
        self._images = dict(images if images is not None else default)
        #: The built-in kinds this factory runs: those whose image dockerd had at start.
        self._builtin: dict[str, str] = {}
        self.network = network
        self._start_timeout = start_timeout
        self._max_response_bytes = max_response_bytes
        self._log_cap_bytes = log_cap_bytes
        self.owner = hashlib.sha256(str(self.workdir).encode()).hexdigest()[:16]
        self._containers: dict[str, DockerContainer] = {}
        self._docker: aiodocker.Docker | None = None
        self._started: asyncio.Task[None] | None = None
        self._closed = False
        self._lock: int | None = None
        #: How many leftovers of a previous invoker :meth:`start` removed.
        self.leftovers = 0
        #: Container creations dockerd may not have answered yet.
        self._creating = 0

    # -- life ----------------------------------------------------------------------------

    def supports(self, kind: str) -> bool:
        return image_of(kind) is not None or kind in self._builtin

    @property
    def containers(self) -> list[DockerContainer]:
        return list(self._containers.values())

    @property
    def connected(self) -> bool:
        """Whether this factory has connected to dockerd (and so loaded its client)."""
        return self._docker is not None

    @property
    def _marker(self) -> Path:
        """Exists while containers of this directory may exist (see the module docstring)."""
        return self.workdir / ".docker-containers"

    async def start(self) -> None:
        """Take the directory's lock; connect to dockerd and remove a predecessor's
        leftovers when there may be some (or the built-in kinds run here), else leave
        that to the first ``create``. Idempotent. ContainerError when another invoker
        holds the directory or dockerd, asked, does not answer."""
        self._lock_workdir()
        if self.builtin or self._marker.exists():
            await self._connected()

    async def _connected(self) -> None:
        """Connect to dockerd and remove a predecessor's leftovers, once."""
        if self._started is None or (self._started.done() and self._started.exception()):
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    def _lock_workdir(self) -> None:
        if self._lock is None:
            self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.workdir / ".docker.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as ex:
                os.close(fd)
                raise ContainerError(f"another invoker uses {self.workdir}") from ex
            self._lock = fd

    async def _start(self) -> None:
        import aiodocker  # here, not at import: see the module docstring
        from aiodocker.exceptions import DockerError

        self._lock_workdir()
        url = self.docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        if self._docker is None:
            self._docker = aiodocker.Docker(url=url)
        try:
            await self._docker.system.info()
        except Exception as ex:  # DockerError, or aiohttp's connection errors
            raise ContainerError(f"the Docker daemon does not answer at {url}: {ex}") from ex
        leftovers = await self._docker.containers.list(
            all=True, filters={"label": [f"{OWNER_LABEL}={self.owner}"]}
        )
        for handle in leftovers:
            with contextlib.suppress(DockerError):
                await handle.delete(force=True, v=True)
        self.leftovers = len(leftovers)
        if leftovers:
            log.info("removed %d Docker containers a previous invoker left", len(leftovers))
        if not self.builtin:
            return
        # Only the built-in kinds whose image is here: the others stay with the process
        # sandbox (a host whose images were never built runs them there, as it did before
        # Docker ran the built-in kinds), and the operator is told how to build them.
        self._builtin = await present_images(self._docker, self._images)

    async def close(self) -> None:
        """Destroy every container, then drop the daemon's connection. Idempotent."""
        self._closed = True
        await asyncio.gather(*(c.destroy() for c in list(self._containers.values())))
        if self._docker is not None and self._lock is not None and self._idle():
            # dockerd holds no container of this directory any more (a removal that
            # failed leaves one, and the mark; a creation still under way may add one,
            # and keeps it): nothing for a successor to clean.
            with contextlib.suppress(Exception):  # dockerd gone: the mark stays
                mine = {"label": [f"{OWNER_LABEL}={self.owner}"]}
                left = await self._docker.containers.list(all=True, filters=mine)
                if not left and self._idle():
                    self._marker.unlink(missing_ok=True)
        if self._docker is not None:
            await self._docker.close()
            self._docker = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _idle(self) -> bool:
        """No container of this factory lives or is being created."""
        return not self._creating and not self._containers

    def forget(self, container: DockerContainer) -> None:
        self._containers.pop(container.docker_id, None)

    # -- one container -------------------------------------------------------------------

    def _image(self, kind: str) -> str:
        image = image_of(kind) or self._builtin.get(kind)
        if image is None:
            raise ContainerError(f"the Docker backend cannot run kind {kind!r}")
        return image

    def _config(
        self, kind: str, image: str, memory_mb: int, env: Mapping[str, str], network: bool
    ) -> dict[str, Any]:
        api_host = self.api_host
        if network and self.network is not None:
            api_host = self.network.api_host(api_host.partition(":")[0]) or api_host
        values = {"__OW_API_HOST": api_host, **env}
        host: dict[str, Any] = {
            "NetworkMode": "none",
            "Memory": memory_mb * 1024 * 1024,
            "MemorySwap": memory_mb * 1024 * 1024,
            "CpuShares": max(2, memory_mb * 4),
            "PidsLimit": PIDS_LIMIT,
            "Ulimits": [{"Name": "nofile", "Soft": NOFILE_LIMIT, "Hard": NOFILE_LIMIT}],
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "Init": True,  # docker-init reaps the action's orphans and forwards signals
        }
        if image_of(kind) is None:  # Squall's own images need no writable root
            host["ReadonlyRootfs"] = True
            host["Tmpfs"] = {"/tmp": TMP_SIZE}
        if network and self.network is not None:
            host["Dns"] = [str(a) for a in self.network.policy.resolvers if a.version == 4]
        return {
            "Image": image,
            "Env": [f"{k}={v}" for k, v in values.items()],
            "Labels": {OWNER_LABEL: self.owner, KIND_LABEL: kind},
            "AttachStdout": True,
            "AttachStderr": True,
            "HostConfig": host,
        }

    async def create(
        self,
        kind: str,
        memory_mb: int,
        env: Mapping[str, str] | None = None,
        *,
        network: bool = True,
        tenant: str | None = None,
        idle: bool = False,
    ) -> DockerContainer:
        """Create, attach to and start the container, connect its network, wait until its
        runtime accepts connections on port 8080. On any failure (cancellation included)
        the container is removed before ContainerError is raised. ``tenant`` changes
        nothing here: every container is a fresh process of its image, sharing no
        interpreter (and so no hash seed) with another. Neither does ``idle``: a
        container's CPU shares are set when dockerd creates it (changing them on take
        would be one more API call on the request's path)."""
        from aiodocker.exceptions import DockerError

        from squall.sandbox.dockercontainer import DockerContainer

        if self._closed:
            raise ContainerError("the container factory is closed")
        self._lock_workdir()
        await self._connected()
        docker = self._docker
        assert docker is not None
        image = self._image(kind)
        try:
            await docker.images.inspect(image)
        except DockerError as ex:
            if ex.status == 404:
                raise ImageNotFound(image) from ex
            raise ContainerError(f"cannot inspect the image '{image}': {ex}") from ex
        concurrent = int((env or {}).get("__OW_CONCURRENCY", "1")) > 1
        config = self._config(kind, image, memory_mb, env or {}, network)
        name = f"squall-{self.owner[:8]}-{secrets.token_hex(4)}"
        if self._closed:  # close() may be deciding about the mark: no new container
            raise ContainerError("the container factory is closed")
        self._marker.touch(mode=0o600)  # before dockerd may hold a container of ours
        self._creating += 1  # a close meanwhile keeps the mark (see close)
        try:
            handle = await docker.containers.create(config=config, name=name)
        except DockerError as ex:
            raise ContainerError(f"cannot create a container of '{image}': {ex}") from ex
        finally:
            self._creating -= 1
        logs = LogCollector(self._log_cap_bytes, split=not concurrent)
        container = DockerContainer(self, handle, kind, memory_mb, logs, self._max_response_bytes)
        self._containers[container.docker_id] = container
        try:
            await self._boot(container, network)
        except BaseException as ex:
            await container.destroy()
            if isinstance(ex, (ContainerError, asyncio.CancelledError)):
                raise
            raise ContainerError(f"the {kind} container did not start: {ex}") from ex
        return container

    async def _boot(self, container: DockerContainer, network: bool) -> None:
        from aiodocker.exceptions import DockerError

        attached = container._handle.attach(stdout=True, stderr=True, stdin=False, logs=False)
        stream = await attached.__aenter__()
        container.reader = asyncio.ensure_future(self._read_output(attached, stream, container))
        try:
            await container._handle.start()
        except DockerError as ex:
            raise ContainerError(f"cannot start the container: {ex.message}") from ex
        state = await container.state()
        container.pid = int(state.get("Pid") or 0)
        if not container.pid:
            raise ContainerError("the container exited at once")
        container.connector = NamespaceConnector(container.pid, RUNTIME_PORT)
        container.http = UnixHttpClient(
            f"container {container.id} port {RUNTIME_PORT}",
            max_response_bytes=self._max_response_bytes,
            opener=container.connector.connect,
        )
        if network and self.network is not None:
            container.lease = await self.network.attach(container.pid)
        await self._wait_listening(container)

    async def _wait_listening(self, container: DockerContainer) -> None:
        assert container.connector is not None
        try:
            async with asyncio.timeout(self._start_timeout):
                while True:
                    try:
                        _, writer = await container.connector.connect(1024)
                    except OSError:
                        if container.reader is not None and container.reader.done():
                            await container._logs.wait_closed(0.5)
                            reason = container._logs.text("stderr") or "it exited before listening"
                            raise ContainerError(f"the runtime did not start: {reason}") from None
                        await asyncio.sleep(READY_POLL_S)
                        continue
                    writer.close()
                    return
        except TimeoutError:
            waited = f"{self._start_timeout:.0f} s"
            raise ContainerError(
                f"the runtime did not listen on port {RUNTIME_PORT} within {waited}"
            ) from None

    @staticmethod
    async def _read_output(attached: Any, stream: Any, container: DockerContainer) -> None:
        """Feed the container's stdout and stderr to its log collector until they end."""
        logs = container._logs
        try:
            while True:
                message = await stream.read_out()
                if message is None:
                    break
                logs.feed("stderr" if message.stream == 2 else "stdout", bytes(message.data))
        except Exception as ex:  # the daemon dropped the attachment: the logs end here
            log.debug("container %s: output stream ended: %s", container.id, ex)
        finally:
            logs.eof("stdout")
            logs.eof("stderr")
            logs.process_exited()
            with contextlib.suppress(Exception):
                await attached.__aexit__(None, None, None)
