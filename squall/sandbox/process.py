"""The process sandbox: each container is a runtime proxy running as a child process.

:class:`ProcessContainerFactory` starts ``node proxy.js`` or ``python proxy.py`` in a
directory of its own under the factory's work directory, as the leader of a new process
group (session), with a minimal explicit environment. The proxy listens on a Unix socket
in that directory; :class:`ProcessContainer` talks to it with the OpenWhisk runtime
protocol through :class:`~squall.sandbox.http.UnixHttpClient`, and reads its stdout and
stderr continuously into a :class:`~squall.sandbox.logs.LogCollector`.

Isolation (namespaces with bubblewrap, cgroup memory limits) is not applied here yet: the
command is built by :meth:`ProcessContainerFactory._command` so that a wrapper can be put
in front of it, and the socket directory is the only path the host side needs to share.

Guarantees, beyond those of :mod:`squall.sandbox.contracts`:

- Readiness is signalled by the proxy writing one byte to an inherited pipe
  (``__OW_READY_FD``): ``create`` returns as soon as the proxy listens, without polling.
- ``create`` either returns a listening container or raises ``ContainerError`` after
  killing the process group and removing the directory, also when cancelled.
- ``destroy`` sends SIGKILL to the whole process group (processes the action spawned
  die too, unless they left the group with ``setsid``), waits until the child was reaped
  (no zombies), closes the pipes and connections and removes the directory.
- The runtime holds the read end of a *lifeline* pipe whose write end only the container
  holds (``__OW_LIFELINE_FD``): when the invoker process dies, even by SIGKILL, the kernel
  closes it and the runtime kills its own process group. As a second line, the runtime's
  pid (= its process group id) is ``ProcessContainer.pid`` and is written to
  ``<container dir>/pid``, so leftovers can still be found and killed.
- A container started with ``__OW_CONCURRENCY`` > 1 in its environment runs activations
  concurrently; its runtime writes no sentinels and ``logs`` returns what arrived so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from squall.errors import ContainerError
from squall.runtimes import family, proxy_path
from squall.sandbox.contracts import LogResult, RuntimeResponse
from squall.sandbox.http import ConnectionLost, ProtocolError, UnixHttpClient
from squall.sandbox.logs import LogCollector

#: OpenWhisk's 1 MiB result limit plus room for the JSON around it.
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024 + 64 * 1024
#: Log text kept per activation until the invoker asks with its own limit (OpenWhisk's max).
DEFAULT_LOG_CAP_BYTES = 10 * 1024 * 1024
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
KINDS = ("nodejs:20", "python:3.11")
SOCKET_NAME = "proxy.sock"
#: How long ``destroy`` waits for the killed runtime to be reaped.
REAP_TIMEOUT_SECONDS = 5.0


class _RuntimeProtocol(asyncio.SubprocessProtocol):
    """Feeds the runtime's pipes into the log collector and notes its exit (loop thread)."""

    def __init__(self, logs: LogCollector, exited: asyncio.Future[None]) -> None:
        self._logs = logs
        self._exited = exited

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._logs.feed("stdout" if fd == 1 else "stderr", data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in (1, 2):
            self._logs.eof("stdout" if fd == 1 else "stderr")

    def process_exited(self) -> None:
        self._logs.process_exited()
        if not self._exited.done():
            self._exited.set_result(None)


class ProcessContainer:
    """One runtime process; implements :class:`squall.sandbox.contracts.Container`.

    Created only by :meth:`ProcessContainerFactory.create`. ``initialize``/``run`` may be
    called from several tasks at once (each request gets its own connection); whether the
    runtime overlaps them depends on its concurrency setting.
    """

    def __init__(
        self,
        *,
        container_id: str,
        kind: str,
        memory_mb: int,
        directory: Path,
        transport: asyncio.SubprocessTransport,
        logs: LogCollector,
        exited: asyncio.Future[None],
        http: UnixHttpClient,
        lifeline: int,
        on_destroyed: Callable[[ProcessContainer], None],
    ) -> None:
        self._id = container_id
        self._kind = kind
        self._memory_mb = memory_mb
        self.directory = directory
        self._transport = transport
        self._logs = logs
        self._exited = exited
        self._http = http
        self._lifeline = lifeline  # write end; the runtime kills its group when it closes
        self._on_destroyed = on_destroyed
        self._destroying: asyncio.Task[None] | None = None
        #: Also the process group id: the runtime leads its own session.
        self.pid: int = transport.get_pid()

    @property
    def id(self) -> str:
        return self._id

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def memory_mb(self) -> int:
        return self._memory_mb

    @property
    def exited(self) -> bool:
        """Whether the runtime process has exited (it was reaped)."""
        return self._exited.done()

    async def initialize(self, payload: Mapping[str, Any], timeout: float) -> RuntimeResponse:
        """POST /init with ``{"value": payload}``; see the contract."""
        return await self._request("/init", {"value": dict(payload)}, timeout)

    async def run(self, payload: Mapping[str, Any], timeout: float) -> RuntimeResponse:
        """POST /run with ``payload``; see the contract."""
        return await self._request("/run", dict(payload), timeout)

    async def logs(self, limit_bytes: int, wait: float) -> LogResult:
        """The lines of the activations answered since the last call; see the contract."""
        return await self._logs.collect(limit_bytes, wait)

    def pause(self) -> None:
        """Stop every process of the container (SIGSTOP to the group) until ``resume``."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a paused container (SIGCONT to the group)."""
        self._signal_group(signal.SIGCONT)

    async def destroy(self) -> None:
        """Kill the process group, reap the runtime, free its files. Idempotent.

        Concurrent callers all wait for the same teardown, which runs to its end even if a
        caller is cancelled.
        """
        if self._destroying is None:
            self._destroying = asyncio.ensure_future(self._teardown())
        await asyncio.shield(self._destroying)

    async def _request(
        self, target: str, message: dict[str, Any], timeout: float
    ) -> RuntimeResponse:
        if self._destroying is not None:
            raise ContainerError(f"container {self._id} was destroyed")
        body = orjson.dumps(message)
        try:
            async with asyncio.timeout(timeout):
                answer = await self._http.post(target, body)
        except TimeoutError:
            return RuntimeResponse(0, b"", timed_out=True)
        except ConnectionLost:
            return RuntimeResponse(0, b"", exited=True)
        except ProtocolError:
            return RuntimeResponse(0, b"", exited=self.exited)
        finally:
            # Whatever the outcome, this request's output ends an activation in the logs: an
            # answered one with both sentinels (written before the answer); a crashed or
            # timed-out one with whatever it printed, which logs() returns when its wait
            # runs out or the process is gone.
            self._logs.expect_activation()
        return RuntimeResponse(
            answer.status, answer.body, truncated=answer.truncated, full_size=answer.full_size
        )

    def _signal_group(self, signum: int) -> None:
        if self._destroying is not None:
            raise ContainerError(f"container {self._id} was destroyed")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    async def _teardown(self) -> None:
        # SIGKILL reaches stopped (paused) processes too. The group outlives its leader
        # while children of the action are alive, so this also works after a crash.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        try:
            async with asyncio.timeout(REAP_TIMEOUT_SECONDS):
                await asyncio.shield(self._exited)
        except TimeoutError:
            pass  # not reaped yet: the loop's child watcher still reaps it when it goes
        os.close(self._lifeline)
        self._transport.close()
        await self._http.aclose()
        await asyncio.to_thread(shutil.rmtree, self.directory, True)
        self._on_destroyed(self)


class ProcessContainerFactory:
    """Starts runtime proxies as child processes; implements ``ContainerFactory``.

    ``workdir`` holds one directory per container. ``api_host`` becomes ``__OW_API_HOST``.
    ``node`` and ``python`` name the interpreters (looked up on the invoker's ``PATH``);
    ``python`` runs ``python:3.11`` actions with ``-I -S`` (standard library only).
    ``max_response_bytes`` caps a runtime's answer, ``log_cap_bytes`` the log text held per
    activation before the first ``logs`` call, ``start_timeout`` how long a runtime may
    take to listen, and ``path`` is the ``PATH`` the runtime sees.
    """

    def __init__(
        self,
        workdir: Path,
        api_host: str,
        *,
        node: str = "node",
        python: str = sys.executable,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES,
        start_timeout: float = 10.0,
        path: str = DEFAULT_PATH,
    ) -> None:
        # Resolved: proxies compare the socket's directory with their (real) cwd.
        self.workdir = Path(workdir).resolve()
        self.api_host = api_host
        self._interpreters = {"nodejs": node, "python": python}
        self._max_response_bytes = max_response_bytes
        self._log_cap_bytes = log_cap_bytes
        self._start_timeout = start_timeout
        self._path = path
        self._containers: dict[str, ProcessContainer] = {}
        self._closed = False

    def supports(self, kind: str) -> bool:
        """Whether ``kind`` is known and its interpreter can be found."""
        return kind in KINDS and self._interpreter(kind) is not None

    @property
    def containers(self) -> list[ProcessContainer]:
        """The containers created and not destroyed yet."""
        return list(self._containers.values())

    async def create(
        self, kind: str, memory_mb: int, env: Mapping[str, str] | None = None
    ) -> ProcessContainer:
        """Start a runtime for ``kind`` and return once it listens; see the contract."""
        if self._closed:
            raise ContainerError("the container factory is closed")
        if not self.supports(kind):
            raise ContainerError(f"kind {kind!r} is not supported by the process sandbox")
        container_id = secrets.token_hex(6)
        directory = self.workdir / container_id
        directory.mkdir(mode=0o700, parents=True)
        try:
            container = await self._start(container_id, kind, memory_mb, directory, env or {})
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise
        self._containers[container_id] = container
        return container

    async def close(self) -> None:
        """Destroy every container this factory created. Idempotent."""
        self._closed = True
        await asyncio.gather(*(c.destroy() for c in list(self._containers.values())))

    def _forget(self, container: ProcessContainer) -> None:
        self._containers.pop(container.id, None)

    def _interpreter(self, kind: str) -> str | None:
        return shutil.which(self._interpreters.get(family(kind), ""))

    def _command(self, kind: str) -> list[str]:
        """The argv that starts the runtime; the place to wrap it in a namespace sandbox."""
        interpreter = self._interpreter(kind)
        if interpreter is None:
            raise ContainerError(f"no interpreter found for kind {kind!r}")
        script = str(proxy_path(kind))
        if family(kind) == "python":
            return [interpreter, "-I", "-S", script]
        return [interpreter, script]

    def _environment(
        self, directory: Path, env: Mapping[str, str], ready_fd: int, lifeline_fd: int
    ) -> dict[str, str]:
        # Explicit and minimal: nothing of the invoker's own environment leaks in.
        base = {"PATH": self._path, "HOME": str(directory), "LANG": "C.UTF-8"}
        fixed = {
            "__OW_API_HOST": self.api_host,
            "__OW_SOCKET": str(directory / SOCKET_NAME),
            "__OW_WORKDIR": str(directory),
            "__OW_READY_FD": str(ready_fd),
            "__OW_LIFELINE_FD": str(lifeline_fd),
        }
        return {**base, **env, **fixed}

    async def _start(
        self, container_id: str, kind: str, memory_mb: int, directory: Path, env: Mapping[str, str]
    ) -> ProcessContainer:
        loop = asyncio.get_running_loop()
        # Node.js with concurrency > 1 writes no sentinels; the Python proxy always does.
        concurrent = int(env.get("__OW_CONCURRENCY", "1") or "1") > 1
        logs = LogCollector(self._log_cap_bytes, split=not concurrent or family(kind) != "nodejs")
        exited: asyncio.Future[None] = loop.create_future()
        http = UnixHttpClient(directory / SOCKET_NAME, max_response_bytes=self._max_response_bytes)
        ready_read, ready_write = os.pipe()
        lifeline_read, lifeline_write = os.pipe()
        try:
            try:
                transport, _ = await loop.subprocess_exec(
                    lambda: _RuntimeProtocol(logs, exited),
                    *self._command(kind),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=self._environment(directory, env, ready_write, lifeline_read),
                    cwd=directory,
                    start_new_session=True,
                    pass_fds=(ready_write, lifeline_read),
                )
            except BaseException as ex:
                os.close(lifeline_write)
                await http.aclose()
                if isinstance(ex, OSError):
                    raise ContainerError(f"cannot start the {kind} runtime: {ex}") from ex
                raise
            finally:
                os.close(ready_write)  # the child holds the only write end: EOF = it died
                os.close(lifeline_read)
            container = ProcessContainer(
                container_id=container_id,
                kind=kind,
                memory_mb=memory_mb,
                directory=directory,
                transport=transport,
                logs=logs,
                exited=exited,
                http=http,
                lifeline=lifeline_write,
                on_destroyed=self._forget,
            )
            try:
                (directory / "pid").write_text(f"{container.pid}\n")
                ready = await _wait_ready(ready_read, self._start_timeout)
            except BaseException:
                await container.destroy()
                raise
        finally:
            os.close(ready_read)
        if not ready:
            await logs.wait_closed(1.0)  # its last words on stderr explain the failure
            await container.destroy()
            reason = logs.text("stderr") or "it exited or hung before listening"
            raise ContainerError(f"the {kind} runtime did not start: {reason}")
        return container


async def _wait_ready(fd: int, timeout: float) -> bool:
    """Wait for the proxy's readiness byte on pipe ``fd``; False on EOF or timeout."""
    loop = asyncio.get_running_loop()
    signalled: asyncio.Future[bool] = loop.create_future()

    def on_readable() -> None:
        try:
            data = os.read(fd, 1)
        except BlockingIOError:
            return
        if not signalled.done():
            signalled.set_result(bool(data))

    os.set_blocking(fd, False)
    loop.add_reader(fd, on_readable)
    try:
        async with asyncio.timeout(timeout):
            return await signalled
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
