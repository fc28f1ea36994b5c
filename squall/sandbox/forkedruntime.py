"""The process of a container the invoker did not fork itself: :class:`ForkedRuntime`.

A runtime forked by a zygote (:mod:`squall.sandbox.zygote`) or a sandbox spawned by the
supervisor (:mod:`squall.sandbox.supervisor`) is not the invoker's child, so asyncio's
subprocess transport cannot watch it: its exit is watched through a pidfd and its stdout
and stderr through pipes the invoker holds. Runs on the event loop thread.
"""

from __future__ import annotations

import asyncio
import os

from squall.sandbox.logs import LogCollector


class ForkedRuntime:
    """A runtime the invoker did not fork itself (forked by a zygote, or spawned by the
    supervisor) as a container's process: its pipes and its exit.

    Feeds stdout and stderr into ``logs`` and resolves ``exited`` when ``pid`` exits (a
    zygote container's runtime, its pid namespace's init; or bubblewrap's monitor).
    Implements
    :class:`~squall.sandbox.container.RuntimeProcess`.
    """

    def __init__(
        self, pid: int, logs: LogCollector, exited: asyncio.Future[None], pidfd: int = -1
    ) -> None:
        self._pid = pid
        self._logs = logs
        self._exited = exited
        # A watcher of its own (destroy closes the sandbox's), or the one given (owned).
        self._pidfd = os.pidfd_open(pid) if pidfd < 0 else pidfd
        self._pipes: list[asyncio.BaseTransport] = []
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)

    async def attach(self, stream: str, fd: int) -> None:
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(lambda: _Pipe(self._logs, stream), pipe)
        self._pipes.append(transport)

    def get_pid(self) -> int:
        return self._pid

    def close(self) -> None:
        self._unwatch()
        for pipe in self._pipes:
            pipe.close()

    def _on_exit(self) -> None:  # a pidfd turns readable once its process exited
        self._unwatch()
        self._logs.process_exited()
        if not self._exited.done():
            self._exited.set_result(None)

    def _unwatch(self) -> None:
        if self._pidfd >= 0:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1


class _Pipe(asyncio.Protocol):
    def __init__(self, logs: LogCollector, stream: str) -> None:
        self._logs = logs
        self._stream = stream

    def data_received(self, data: bytes) -> None:
        self._logs.feed(self._stream, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._logs.eof(self._stream)
