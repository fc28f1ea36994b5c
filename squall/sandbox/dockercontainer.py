"""One container of the Docker backend: :class:`DockerContainer`, made and owned by
:class:`~squall.sandbox.docker.DockerContainerFactory` (whose docstring states the
guarantees). It talks to its runtime over the socket the factory connected through the
container's network namespace, freezes and thaws its cgroup directly, and tears itself
down once (concurrent ``destroy`` callers share the teardown). Runs on the event loop
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiodocker
import orjson
from aiodocker.exceptions import DockerError

from squall.errors import ContainerError
from squall.sandbox.cgroups import cgroup_directory, memory_in_use, memory_reader
from squall.sandbox.contracts import LogResult, RuntimeResponse
from squall.sandbox.http import ConnectionLost, ProtocolError, UnixHttpClient
from squall.sandbox.logs import LogCollector
from squall.sandbox.netns import NamespaceConnector
from squall.sandbox.network import Lease

if TYPE_CHECKING:
    from squall.sandbox.docker import DockerContainerFactory


def _cgroup_freeze_file(pid: int) -> tuple[Path, str, str] | None:
    """(file, frozen value, thawed value) of the freezer of ``pid``'s cgroup."""
    d = cgroup_directory(pid, "freezer")
    if d is not None:
        return d / "freezer.state", "FROZEN", "THAWED"
    d = cgroup_directory(pid, None)
    if d is not None:
        return d / "cgroup.freeze", "1", "0"
    return None


class DockerContainer:
    """One Docker container running a runtime; implements ``Container``."""

    def __init__(
        self,
        factory: DockerContainerFactory,
        handle: aiodocker.containers.DockerContainer,
        kind: str,
        memory_mb: int,
        logs: LogCollector,
        max_response_bytes: int,
    ) -> None:
        self._factory = factory
        self._handle = handle
        self._kind = kind
        self._memory_mb = memory_mb
        self._logs = logs
        self._max_response_bytes = max_response_bytes
        self.pid = 0
        self.lease: Lease | None = None
        self.connector: NamespaceConnector | None = None
        self.http: UnixHttpClient | None = None
        self.reader: asyncio.Task[None] | None = None
        self._destroying: asyncio.Task[None] | None = None
        #: Where its cgroup's memory use is read, found once (its cgroup never changes).
        self._memory_files: tuple[Path, Path, bool] | None = None

    @property
    def id(self) -> str:
        return str(self._handle.id)[:12]

    @property
    def docker_id(self) -> str:
        return str(self._handle.id)

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def memory_mb(self) -> int:
        return self._memory_mb

    async def initialize(self, payload: Mapping[str, Any], timeout: float) -> RuntimeResponse:
        return await self._request("/init", {"value": dict(payload)}, timeout)

    async def run(self, payload: Mapping[str, Any], timeout: float) -> RuntimeResponse:
        return await self._request("/run", dict(payload), timeout)

    async def logs(self, limit_bytes: int, wait: float) -> LogResult:
        return await self._logs.collect(limit_bytes, wait)

    def memory_used(self) -> int | None:
        """Bytes the container's cgroup uses now (what ``docker stats`` shows), read from
        the cgroup files directly: the stats API costs a request to dockerd."""
        if self._destroying is not None or not self.pid:
            return None
        if self._memory_files is None:
            self._memory_files = memory_reader(self.pid)
            if self._memory_files is None:
                return None
        return memory_in_use(*self._memory_files)

    def pause(self) -> None:
        self._check_alive()
        self._freeze(True)

    def resume(self) -> None:
        self._check_alive()
        self._freeze(False)

    async def destroy(self) -> None:
        """Thaw, kill and remove the container, release its link. Idempotent; concurrent
        callers wait for the same teardown, which a cancelled caller does not stop."""
        if self._destroying is None:
            self._destroying = asyncio.ensure_future(self._teardown())
        await asyncio.shield(self._destroying)

    async def state(self) -> dict[str, Any]:
        """dockerd's ``State`` of the container ({} when it is gone)."""
        try:
            shown = await self._handle.show()
        except DockerError:
            return {}
        return dict(shown.get("State") or {})

    async def _request(
        self, target: str, message: dict[str, Any], timeout: float
    ) -> RuntimeResponse:
        self._check_alive()
        assert self.http is not None  # set before the factory hands the container out
        body = orjson.dumps(message)
        try:
            answer = await self.http.post(target, body, timeout)
        except TimeoutError:
            return RuntimeResponse(0, b"", timed_out=True)
        except (ConnectionLost, ProtocolError):
            state = await self._settled_state()
            exited = not state.get("Running", False)
            return RuntimeResponse(0, b"", exited=exited, oom=bool(state.get("OOMKilled")))
        finally:
            self._logs.expect_activation()
        return RuntimeResponse(
            answer.status, answer.body, truncated=answer.truncated, full_size=answer.full_size
        )

    async def _settled_state(self) -> dict[str, Any]:
        """The state after a lost connection: a dying runtime may still show as running
        for a moment, so wait briefly for its exit to be recorded."""
        state = await self.state()
        for _ in range(50):
            if not state.get("Running", False):
                break
            await asyncio.sleep(0.02)
            state = await self.state()
        return state

    def _check_alive(self) -> None:
        if self._destroying is not None:
            raise ContainerError(f"container {self.id} was destroyed")

    def _freeze(self, frozen: bool) -> None:
        found = _cgroup_freeze_file(self.pid)
        if found is None:
            raise ContainerError(f"container {self.id} has no freezer cgroup")
        path, on, off = found
        with contextlib.suppress(FileNotFoundError):  # it died: nothing left to freeze
            path.write_text(on if frozen else off)

    async def _teardown(self) -> None:
        if self.pid:
            with contextlib.suppress(ContainerError, OSError):
                self._freeze(False)  # frozen tasks would not die before they are thawed
        with contextlib.suppress(DockerError):
            await self._handle.delete(force=True, v=True)
        if self.lease is not None and self._factory.network is not None:
            await self._factory.network.detach(self.lease)
        if self.connector is not None:
            self.connector.close()
        if self.http is not None:
            await self.http.aclose()
        if self.reader is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.reader), 1.0)
            self.reader.cancel()
        self._factory.forget(self)
