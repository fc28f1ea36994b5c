"""One runtime process of the process sandbox: :class:`ProcessContainer`.

Created only by :class:`squall.sandbox.process.ProcessContainerFactory`, which documents
the guarantees. Everything here runs on the event loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Protocol

import orjson

from squall.errors import ContainerError
from squall.sandbox import launch
from squall.sandbox.cgroups import Cgroup
from squall.sandbox.contracts import (
    DEADLINE_AFTER_HEADER,
    INIT_DEADLINE_HEADER,
    INIT_LATE_STATUS,
    LogResult,
    RuntimeResponse,
)
from squall.sandbox.http import (
    ConnectionLost,
    HttpError,
    HttpResponse,
    Pipeline,
    ProtocolError,
    UnixHttpClient,
)
from squall.sandbox.isolation import SandboxInit
from squall.sandbox.logs import LogCollector

#: How long ``destroy`` waits for the killed runtime to be reaped.
REAP_TIMEOUT_SECONDS = 5.0
#: How long ``destroy`` waits for the container's cgroup to be empty before it gives up
#: and raises (a task stuck in the kernel); the cgroup is then left for the next factory.
EMPTY_TIMEOUT_SECONDS = 30.0
#: How much sooner than the invoker's timer a pipelined /init's bound falls (at most a
#: tenth of the time limit): clock rounding only (libuv's clock has 1 ms steps), since the
#: timer reads what arrived before it calls a timeout; see ``initialize_and_run``.
INIT_BOUND_MARGIN_S = 0.002


class RuntimeProcess(Protocol):
    """What a container needs of the process it was started as: an
    ``asyncio.SubprocessTransport``, or a zygote's forked runtime."""

    def get_pid(self) -> int | None: ...

    def close(self) -> None: ...


class ProcessContainer:
    """One runtime process; implements :class:`squall.sandbox.contracts.Container`.

    ``initialize``/``run`` may be called from several tasks at once (each request gets its
    own connection); whether the runtime overlaps them depends on its concurrency setting.
    ``pid`` is the process the invoker started (bubblewrap's monitor, or the runtime itself
    without isolation) and leads its own process group; ``sandbox_pid`` is the first
    process inside the sandbox (init of its pid namespace), None without isolation.
    """

    def __init__(
        self,
        *,
        container_id: str,
        kind: str,
        memory_mb: int,
        directory: Path,
        transport: RuntimeProcess,
        logs: LogCollector,
        exited: asyncio.Future[None],
        http: UnixHttpClient,
        lifeline: int,
        cgroup: Cgroup | None,
        on_destroyed: Callable[[ProcessContainer], None],
        pipelines: bool = False,
    ) -> None:
        self._id = container_id
        self._kind = kind
        self._memory_mb = memory_mb
        self.directory = directory
        self._transport = transport
        self._logs = logs
        self._exited = exited
        self._http = http
        self._lifeline = lifeline  # write end; the runtime exits when it closes
        self.cgroup = cgroup
        self._on_destroyed = on_destroyed
        self._destroying: asyncio.Task[None] | None = None
        pid = transport.get_pid()
        assert pid is not None  # a started process has one
        self.pid: int = pid
        #: Set by the factory once the sandbox is confined; None without isolation.
        self.sandbox: SandboxInit | None = None
        #: The CPU weight its first ``initialize`` writes (a container started idle).
        self._weight_on_initialize: int | None = None
        #: Whether its runtime takes /init and /run written together (``InitAndRun``):
        #: the factory knows which proxy it started.
        self.pipelines = pipelines

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
    def sandbox_pid(self) -> int | None:
        """The pid of the sandbox's first process (init of its pid namespace), if any."""
        return self.sandbox.pid if self.sandbox is not None else None

    @property
    def exited(self) -> bool:
        """Whether the started process has exited (it was reaped)."""
        return self._exited.done()

    @property
    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this container for want of memory."""
        return self.cgroup is not None and self.cgroup.oom_kills() > 0

    def memory_used(self) -> int | None:
        """Bytes its cgroup uses now (see the contract); None without isolation."""
        return self.cgroup.memory_used() if self.cgroup is not None else None

    def weigh_on_initialize(self, cpu_shares: int) -> None:
        """Have the first ``initialize`` write ``cpu_shares`` (v1 scale) as its cgroup's
        CPU weight: a container started idle (a stem cell) waits at the least one."""
        self._weight_on_initialize = cpu_shares

    async def initialize(self, payload: Mapping[str, Any], timeout: float) -> RuntimeResponse:
        """POST /init with ``{"value": payload}``; see the contract."""
        self._weigh_first()
        return await self._request("/init", {"value": dict(payload)}, timeout)

    async def initialize_and_run(
        self,
        init_payload: Mapping[str, Any],
        run_payload: Mapping[str, Any],
        timeout: float,
        initialized: Callable[[RuntimeResponse], bool],
    ) -> tuple[RuntimeResponse, RuntimeResponse | None]:
        """/init and the first /run in one write; see ``contracts.InitAndRun``.

        Why: a cold start's second exchange costs the runtime a wake-up (its poll, then
        the recv of the /run) and the invoker a loop iteration before it writes the /run;
        written together, the runtime finds the /run in its buffer when /init answered."""
        self._check_alive()
        self._weigh_first()
        init_body = orjson.dumps({"value": dict(init_payload)})
        run_body = orjson.dumps(dict(run_payload))
        # The runtime refuses the /run if its /init answered at or after ``bound``, an
        # instant on the host's CLOCK_MONOTONIC (one clock for every process: no time
        # namespace), which is also the clock of this loop's timers (asyncio's
        # time.monotonic; uvloop's libuv clock, never ahead of it). ``bound`` is
        # ``margin`` before our deadline, so it has passed when our timer fires. The
        # runtime checks when the run would start, after its /init answer was written into
        # this connection; so a run starts only if that answer was in our socket before
        # our timer fired, and the timer reads the socket before it calls a timeout
        # (``http._Connection._time_up``): a started run is never recorded as an init
        # timeout, however late this loop comes to it. Left: an /init answered within
        # ``margin`` of its limit gets a refused run (408), recorded as a run timeout.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        margin = min(INIT_BOUND_MARGIN_S, timeout / 10)
        bound = round((deadline - margin) * 1e9)
        after = {
            DEADLINE_AFTER_HEADER: str(max(0, round(timeout * 1000))),
            INIT_DEADLINE_HEADER: str(bound),
        }
        pipeline: Pipeline | None = None
        try:
            try:
                async with asyncio.timeout_at(deadline):  # a connection to make, if any
                    pipeline = await self._http.pipeline(
                        [("/init", init_body, {}), ("/run", run_body, after)]
                    )
                init = self._answer(await pipeline.next(deadline))
            except (TimeoutError, HttpError) as ex:
                init = self._failure(ex)
            finally:
                self._logs.expect_activation()
            if not initialized(init) or pipeline is None:
                return init, None
            try:
                run = self._answer(await pipeline.next(loop.time() + timeout))
                if run.status == INIT_LATE_STATUS:  # refused: nothing ran
                    run = RuntimeResponse(0, b"", timed_out=True)
            except (TimeoutError, HttpError) as ex:
                run = self._failure(ex)
            finally:
                self._logs.expect_activation()
            return init, run
        finally:
            if pipeline is not None:
                pipeline.close()  # an answer not read closes the connection

    def _weigh_first(self) -> None:
        shares, self._weight_on_initialize = self._weight_on_initialize, None
        if shares is not None and self.cgroup is not None:
            # One small write on the loop, before the request: the /init and every run
            # after it have the container's own weight. (Taken once: the pool hands a
            # stem cell to one request.)
            try:
                self.cgroup.weigh(shares)
            except OSError as ex:
                raise ContainerError(
                    f"container {self._id}: cannot set its CPU weight: {ex}"
                ) from ex

    def run(
        self, payload: Mapping[str, Any], timeout: float
    ) -> Coroutine[Any, Any, RuntimeResponse]:
        """POST /run with ``payload``; see the contract. The request's own coroutine, not
        one awaiting it: one frame less each time the run resumes (every warm invoke)."""
        return self._request("/run", dict(payload), timeout)

    async def logs(self, limit_bytes: int, wait: float) -> LogResult:
        """The lines of the activations answered since the last call; see the contract."""
        return await self._logs.collect(limit_bytes, wait)

    def pause(self) -> None:
        """Stop every process of the container until ``resume``: freeze its cgroup, or
        SIGSTOP its process group without isolation."""
        self._check_alive()
        if self.cgroup is not None:
            self.cgroup.freeze()
        else:
            self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a paused container."""
        self._check_alive()
        if self.cgroup is not None:
            self.cgroup.thaw()
        else:
            self._signal_group(signal.SIGCONT)

    async def destroy(self) -> None:
        """Kill every process, reap the runtime, free its files and cgroup. Idempotent.

        Returns only once every process of the container is gone: its cgroup was found
        empty and removed (a cgroup with a task left cannot be removed). Raises
        ``ContainerError`` if that did not happen within :data:`EMPTY_TIMEOUT_SECONDS`
        (everything else is freed all the same). Concurrent callers all wait for the same
        teardown, which runs to its end even if a caller is cancelled.
        """
        if self._destroying is None:
            self._destroying = asyncio.ensure_future(self._teardown())
        await asyncio.shield(self._destroying)

    async def _request(
        self, target: str, message: dict[str, Any], timeout: float
    ) -> RuntimeResponse:
        self._check_alive()
        body = orjson.dumps(message)
        try:
            answer = await self._http.post(target, body, timeout)
        except (TimeoutError, HttpError) as ex:
            return self._failure(ex)
        finally:
            # Whatever the outcome, this request's output ends an activation in the logs: an
            # answered one with both sentinels (written before the answer); a crashed or
            # timed-out one with whatever it printed, which logs() returns when its wait
            # runs out or the process is gone.
            self._logs.expect_activation()
        return self._answer(answer)

    @staticmethod
    def _answer(answer: HttpResponse) -> RuntimeResponse:
        return RuntimeResponse(
            answer.status, answer.body, truncated=answer.truncated, full_size=answer.full_size
        )

    def _failure(self, ex: TimeoutError | HttpError) -> RuntimeResponse:
        """What a request that got no (readable) answer comes back as."""
        if isinstance(ex, TimeoutError):
            return RuntimeResponse(0, b"", timed_out=True)
        if isinstance(ex, ConnectionLost):
            return RuntimeResponse(0, b"", exited=True, oom=self.oom_killed)
        assert isinstance(ex, ProtocolError)
        exited = self.exited
        return RuntimeResponse(0, b"", exited=exited, oom=exited and self.oom_killed)

    def _check_alive(self) -> None:
        if self._destroying is not None:
            raise ContainerError(f"container {self._id} was destroyed")

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    async def _teardown(self) -> None:
        if self.cgroup is not None:
            self.cgroup.thaw()  # frozen (v1) tasks would not die before they are thawed
        if self.sandbox is not None:
            # Killing the namespace's init kills everything in it, and that init reaps its
            # namespace before it dies; bubblewrap's monitor reaps the init and exits.
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.sandbox.pidfd, signal.SIGKILL)
        else:
            # SIGKILL reaches stopped (paused) processes too. The group outlives its leader
            # while children of the action are alive, so this also works after a crash.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        try:
            async with asyncio.timeout(REAP_TIMEOUT_SECONDS):
                await asyncio.shield(self._exited)
        except TimeoutError:
            # Not reaped yet, so its pid (= process group id) cannot have been reused.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        if self.sandbox is not None:
            await launch.reap_orphan(self.sandbox.pidfd)
            os.close(self.sandbox.pidfd)
        emptied = True
        if self.cgroup is not None:
            # Whatever is left (normally nothing: the pid namespace died with its init),
            # frozen or forking, until the cgroup is empty and removed.
            emptied = await self.cgroup.aremove(EMPTY_TIMEOUT_SECONDS)
        os.close(self._lifeline)
        self._transport.close()
        await self._http.aclose()
        await asyncio.to_thread(shutil.rmtree, self.directory, True)
        self._on_destroyed(self)
        if not emptied:
            raise ContainerError(
                f"container {self._id}: processes were still in its cgroup "
                f"{EMPTY_TIMEOUT_SECONDS:.0f} s after they were killed"
            )
