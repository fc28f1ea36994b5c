"""Reading a runtime's stdout and stderr, split into activations at the sentinel line.

The runtime proxies write ``XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX`` on both streams after
every /init and /run answer. :class:`LogCollector` is fed the raw bytes of both pipes as they
arrive, stamps each line with the wall clock when it was read, and tags it with the number
of sentinels its stream had shown before it: the line's *segment*. The container tells the
collector each time a request was answered (:meth:`LogCollector.expect_activation`), so
:meth:`LogCollector.collect` knows how many sentinels to wait for and returns every line of
the segments that ended, and nothing written after them.

Concurrency: everything runs on the event loop thread. ``feed``/``eof``/``process_exited``
are plain callbacks (from the subprocess protocol); a waiter in ``collect`` or
``wait_closed`` waits on a future of its own, and each change resolves every future waiting
then, so every waiter sees every change without a lock. (An :class:`asyncio.Event` replaced
after each change cost a new Event per sentinel, twice per activation, though a warm run's
sentinels are almost always read before anybody waits for them.)
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from dataclasses import dataclass, field

from squall.sandbox.contracts import SENTINEL, LogLine, LogResult

STREAMS = ("stdout", "stderr")
_SENTINEL = SENTINEL.encode("ascii")
# What a stream usually shows after a run: the sentinel line alone, read in one chunk.
_SENTINEL_LINE = _SENTINEL + b"\n"
#: A line longer than this is cut into pieces: a runaway ``write`` without newline must not
#: grow a buffer without bound.
MAX_LINE_BYTES = 64 * 1024
#: After the process exited, how long to keep waiting for what is still in its pipes.
EXIT_DRAIN_SECONDS = 0.25


@dataclass(slots=True)
class _Entry:
    segment: int
    size: int
    line: LogLine


@dataclass(slots=True)
class _Stream:
    name: str
    partial: bytearray = field(default_factory=bytearray)
    seen: int = 0  # sentinels seen so far = segment of the next line
    eof: bool = False
    entries: deque[_Entry] = field(default_factory=deque)
    dropped: set[int] = field(default_factory=set)  # segments that lost lines to the cap


class LogCollector:
    """The log lines of one runtime process, split per activation.

    ``split=False`` (a runtime running several activations at once writes no sentinels):
    ``collect`` returns whatever arrived since the last call, without waiting.

    ``cap_bytes`` bounds the text held between two ``collect`` calls; lines past it are
    dropped as they arrive and reported as ``truncated``. Each ``collect(limit_bytes)``
    then uses ``limit_bytes`` as the cap for what arrives next, so memory stays bounded by
    the invoker's log limit.
    """

    def __init__(self, cap_bytes: int, *, split: bool = True) -> None:
        self._cap = cap_bytes
        self._split = split
        self._streams = {name: _Stream(name) for name in STREAMS}
        self._buffered = 0
        self._expected = 0
        self._exited = False
        # Futures of those waiting for the next change (_changed); resolved by _notify.
        self._waiters: list[asyncio.Future[bool]] = []

    # -- feeding (subprocess protocol callbacks) ---------------------------------------

    def feed(self, stream: str, data: bytes) -> None:
        """Bytes read from ``stream`` ("stdout" or "stderr")."""
        state = self._streams[stream]
        if data == _SENTINEL_LINE and not state.partial:
            state.seen += 1  # a run that printed nothing (or whose lines came before)
            self._notify()
            return
        if b"\n" in data:
            *lines, rest = (bytes(state.partial) + data if state.partial else data).split(b"\n")
            state.partial = bytearray(rest)
            for raw in lines:
                self._line(state, raw)
        else:
            state.partial += data
        while len(state.partial) > MAX_LINE_BYTES:
            piece = bytes(state.partial[:MAX_LINE_BYTES])
            del state.partial[:MAX_LINE_BYTES]
            self._line(state, piece)

    def eof(self, stream: str) -> None:
        """``stream`` was closed: an unfinished last line counts as a line."""
        state = self._streams[stream]
        if state.partial:
            self._line(state, bytes(state.partial))
            state.partial.clear()
        state.eof = True
        self._notify()

    def process_exited(self) -> None:
        self._exited = True
        self._notify()

    def expect_activation(self) -> None:
        """The runtime answered one more /init or /run: one more sentinel per stream."""
        self._expected += 1

    # -- reading -----------------------------------------------------------------------

    async def collect(self, limit_bytes: int, wait: float) -> LogResult:
        """Lines of the activations answered so far, oldest first, at most ``limit_bytes``.

        Waits until each stream showed its sentinel for the last answered activation (or
        closed), at most ``wait`` seconds, and at most a short drain once the process has
        exited (a child of the action may hold the pipes open forever).
        """
        self._cap = max(0, limit_bytes)
        target = self._expected
        if self._split:
            await self._wait_for(target, wait)
        for state in self._streams.values():
            if state.entries or state.dropped:
                break
        else:
            return LogResult()  # nothing printed (a warm run's usual case): nothing to merge
        taken: list[list[_Entry]] = []
        truncated = False
        for state in self._streams.values():
            entries: list[_Entry] = []
            while state.entries and (not self._split or state.entries[0].segment < target):
                entries.append(state.entries.popleft())
            taken.append(entries)
            lost = {s for s in state.dropped if not self._split or s < target}
            truncated = truncated or bool(lost)
            state.dropped -= lost
        result = LogResult(truncated=truncated)
        kept = 0
        full = False
        for entry in heapq.merge(*taken, key=lambda e: e.line.time_ns):
            self._buffered -= entry.size
            # Once a line does not fit, later ones are dropped too: the kept lines are a
            # gap-free beginning of the activation's output.
            if full or kept + entry.size > limit_bytes:
                full = result.truncated = True
                continue
            kept += entry.size
            result.lines.append(entry.line)
        return result

    def text(self, stream: str, max_chars: int = 2000) -> str:
        """The tail of what is buffered for ``stream``, e.g. to explain a failed start."""
        state = self._streams[stream]
        lines = [entry.line.text for entry in state.entries]
        if state.partial:
            lines.append(state.partial.decode("utf-8", "replace"))
        return "\n".join(lines)[-max_chars:]

    async def wait_closed(self, timeout: float) -> None:
        """Wait until both streams closed, at most ``timeout`` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not all(s.eof for s in self._streams.values()):
            if not await self._changed(deadline):
                return

    async def _wait_for(self, target: int, wait: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        drain_from_exit = False
        while self._behind(target):
            if self._exited and not drain_from_exit:
                drain_from_exit = True
                deadline = min(deadline, loop.time() + EXIT_DRAIN_SECONDS)
            if not await self._changed(deadline):
                return

    def _behind(self, target: int) -> bool:
        """Whether a stream still open has not seen ``target`` activations' ends (a loop,
        not ``all`` over a generator: one call instead of three, once per run)."""
        for stream in self._streams.values():  # noqa: SIM110 (a loop: no generator frame)
            if stream.seen < target and not stream.eof:
                return True
        return False

    async def _changed(self, deadline: float) -> bool:
        """Wait for the next change until ``deadline`` (loop time); False if none came."""
        loop = asyncio.get_running_loop()
        if deadline <= loop.time():
            return False
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        # A timer resolving the future with False, rather than ``asyncio.timeout`` (a task
        # lookup and a cancellation turned into TimeoutError): whichever comes first wins.
        timer = loop.call_at(deadline, _time_up, waiter)
        try:
            return bool(await waiter)
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()  # the waiting task was cancelled
            if waiter in self._waiters:  # timed out or cancelled: not left for _notify
                self._waiters.remove(waiter)

    # -- internals ---------------------------------------------------------------------

    def _line(self, state: _Stream, raw: bytes) -> None:
        if raw.endswith(_SENTINEL):
            # Output without a final newline shares the sentinel's line: keep its text.
            if len(raw) > len(_SENTINEL):
                self._keep(state, raw[: -len(_SENTINEL)])
            state.seen += 1
            self._notify()
        else:
            self._keep(state, raw)

    def _keep(self, state: _Stream, raw: bytes) -> None:
        size = len(raw)
        if self._buffered + size > self._cap:
            state.dropped.add(state.seen)
            return
        self._buffered += size
        line = LogLine(time.time_ns(), state.name, raw.decode("utf-8", "replace"))
        state.entries.append(_Entry(state.seen, size, line))

    def _notify(self) -> None:
        # Wake every current waiter; a later change wakes those that wait again by then.
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(True)


def _time_up(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
