"""A minimal asyncio HTTP/1.1 client over a Unix domain socket, for runtime proxies.

Just enough HTTP to POST /init and /run to a runtime: requests carry a Content-Length
body; answers are framed by Content-Length, chunked transfer coding, or the connection
closing. Connections are kept alive and reused, so a warm /run costs one write and one
read on an open socket; each is an ``asyncio.Protocol`` (``_Connection``) that parses the
answer as it arrives and resolves one future, with the request's deadline a timer on it.

Errors::

    HttpError            base
    ├── ConnectionLost   could not connect, or the peer closed / reset the connection
    │                    before a complete answer (the runtime process probably died)
    └── ProtocolError    the answer is not HTTP/1.x as this client understands it

Guarantees:

- ``post`` may run concurrently from several tasks: each request uses its own connection
  (an idle one, or a new one), so answers never interleave.
- Cancelling ``post`` (e.g. an ``asyncio.timeout`` around it), or its own ``timeout``
  running out (``TimeoutError``), closes that request's connection: a connection in an
  unknown state is never reused.
- ``pipeline`` writes several requests in one write on one connection and reads their
  answers in order (:class:`Pipeline`); the connection is reused only if every answer was
  read and none closes it. Nothing of a pipeline is retried: the peer may have read any
  prefix of it.
- A reused idle connection that the peer had already closed (EOF before any byte of the
  answer) is retried once on a fresh connection: the peer never saw that request.
- A connection opened ahead (``connection``, or a connected socket ``sock``, which the
  client owns from then on and adopts on its first use) carries the first request and
  counts as fresh: the peer reads whatever comes first on it, so a loss there is never retried
  (that would send the request, an ``/init``, twice).
- At most ``max_response_bytes`` of a body are kept; the answer then says ``truncated``
  and ``full_size`` holds the announced (or counted) size.
- After ``aclose`` every connection is closed and ``post`` raises ``ConnectionLost``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_HEAD_BYTES = 64 * 1024
#: Longest socket path bound directly; ``sun_path`` holds 107 bytes and a NUL.
MAX_SOCKET_PATH = 100

#: Opens one connection to the runtime given the stream reader's limit (see ``opener``).
Opener = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class HttpError(Exception):
    """Base of this module's errors."""


class ConnectionLost(HttpError):
    """No complete answer: connect failed, or the connection closed or broke first."""

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        #: Whether any byte of an answer had arrived before the connection was lost.
        self.answered = answered


class ProtocolError(HttpError):
    """The peer answered something that is not HTTP/1.x as understood here."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    truncated: bool = False
    full_size: int = 0


#: One request of a pipeline: (target, JSON body, extra header fields).
Request = tuple[str, bytes, Mapping[str, str]]


class _Connection(asyncio.Protocol):
    """One keep-alive connection as a protocol: the answer is parsed as its bytes arrive
    and hands the waiting request one future when complete.

    Why not asyncio's streams: per warm /run they cost ~30 Python calls in the invoker
    (``write``, ``drain``, two ``readuntil`` and a ``readexactly``, each ``_wait_for_data``
    with a future of its own, ``feed_data``, the flow-control checks) where this costs a
    handful: one ``write`` of head and body, one ``data_received`` that finds the head,
    parses it and takes the body, one future (bench/README.md "Issue 12, part 9").
    Connections made as streams (a zygote's spare, the Docker backend's ``opener``) are
    adopted: their transport is handed to this protocol before their first request, when
    nothing can have been read on them yet (a runtime does not speak first).
    """

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        # An adopted stream's writer, kept: its __del__ would close the transport.
        self._writer: asyncio.StreamWriter | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[HttpResponse, bool]] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lost = False
        self._eof = False
        self._got_bytes = False  # any byte of the current answer arrived
        # Answers of a pipeline written but not yet asked for (``expect``): their bytes
        # are kept in the buffer until then, not taken for unasked ones.
        self._queued = 0
        self._parse: Callable[[], bool] = self._head
        # The current answer's head and body so far (see _head).
        self._status = 0
        self._keep = True
        self._length = 0
        self._body = bytearray()
        self._full_size = 0

    # -- the client's side -------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Open, and nothing unexpected arrived while it was idle."""
        return not self._lost and not self._buffer and self._transport is not None

    def adopt(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        transport = writer.transport
        if transport.is_closing():
            self._lost = True
            return
        transport.set_protocol(self)
        self._transport = transport  # type: ignore[assignment]

    def request(
        self, data: bytes, deadline: float | None
    ) -> asyncio.Future[tuple[HttpResponse, bool]]:
        """Send one request; the future gives (answer, connection reusable) or raises
        :class:`ConnectionLost`, :class:`ProtocolError`, or ``TimeoutError`` at
        ``deadline`` (loop time; the connection is then closed)."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        if self._lost or self._transport is None:
            answer.set_exception(ConnectionLost("connection closed before a complete answer"))
            return answer
        self._answer = answer
        self._got_bytes = False
        self._parse = self._head
        if deadline is not None:
            # A timer on the answer's future rather than ``asyncio.timeout`` around the
            # await (a task lookup, a cancellation turned into TimeoutError, five calls).
            self._timer = loop.call_at(deadline, self._time_up)
        self._transport.write(data)
        return answer

    def write_ahead(self, data: bytes, count: int) -> None:
        """Write ``count`` requests at once; their answers are asked for with ``expect``."""
        if self._lost or self._transport is None:
            raise ConnectionLost("connection closed before a complete answer")
        self._queued = count
        self._transport.write(data)

    def expect(self, deadline: float | None) -> asyncio.Future[tuple[HttpResponse, bool]]:
        """The next answer of a pipeline (``write_ahead``), as :meth:`request`'s future:
        what already arrived is parsed at once."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        if self._queued <= 0:
            answer.set_exception(ConnectionLost("no answer left to read on this pipeline"))
            return answer
        self._queued -= 1
        self._answer = answer
        self._got_bytes = bool(self._buffer)
        self._parse = self._head
        if deadline is not None:
            self._timer = loop.call_at(deadline, self._time_up)
        if self._buffer:
            try:
                while self._parse():
                    pass
            except HttpError as ex:
                self._fail(ex)
        if self._lost and not answer.done():
            self._ended(None)  # the peer closed while the answer was not asked for yet
        return answer

    def close(self) -> None:
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            if self._queued > 0:
                self._buffer += data  # a pipeline's next answer, read when asked for
                return
            self.close()  # unasked bytes: a connection in an unknown state is not kept
            return
        self._buffer += data
        self._got_bytes = True
        try:
            while self._parse():
                pass
        except HttpError as ex:
            self._fail(ex)

    def eof_received(self) -> bool:
        self._eof = True
        return False  # the transport closes itself: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._ended(exc)

    def _ended(self, exc: Exception | None) -> None:
        answer = self._answer
        if answer is None or answer.done():
            return
        if self._parse == self._to_eof and exc is None:
            self._complete(False)  # a body framed by the connection's end
        elif exc is not None and not isinstance(exc, ConnectionError | OSError):
            self._fail(ConnectionLost(f"connection broken: {exc}", answered=self._got_bytes))
        else:
            message = "connection closed before a complete answer"
            if exc is not None:
                message = f"connection broken: {exc}"
            self._fail(ConnectionLost(message, answered=self._got_bytes))

    # -- parsing: each step returns True when it made progress and may go on -----------

    def _head(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise ProtocolError("answer headers too large")
            return False
        head = bytes(buffer[: end + 4])
        del buffer[: end + 4]
        status, headers, keep = _parse_head(head)
        if status < 200:
            return True  # 1xx answers are interim: the real one follows
        self._status, self._keep = status, keep
        self._body = bytearray()
        self._full_size = 0
        if "chunked" in headers.get("transfer-encoding", ""):
            self._parse = self._chunk_size
        elif "content-length" in headers:
            try:
                self._length = int(headers["content-length"])
            except ValueError as ex:
                raise ProtocolError("bad Content-Length") from ex
            if self._length < 0:
                raise ProtocolError("bad Content-Length")
            self._parse = self._sized
        else:
            self._keep = False
            self._parse = self._to_eof
        return True

    def _sized(self) -> bool:
        length = self._length
        if length > self._max_body:
            # Keep the head of the body and drop the connection rather than read the rest.
            if len(self._buffer) < self._max_body:
                return False
            self._body = self._buffer[: self._max_body]
            self._full_size = length
            # The rest of this body may be in the buffer already (or still to come): it
            # must never be taken for a pipeline's next answer, so the pipeline ends here.
            self._queued = 0
            self._buffer.clear()
            self._complete(False)
            self.close()
            return False
        if len(self._buffer) < length:
            return False
        self._body = self._buffer[:length]
        del self._buffer[:length]
        self._full_size = length
        self._complete(self._keep)
        return False

    def _chunk_size(self) -> bool:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ProtocolError("bad chunk size")
            return False
        line = bytes(self._buffer[:end])
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as ex:
            raise ProtocolError("bad chunk size") from ex
        if size < 0:
            raise ProtocolError("bad chunk size")
        del self._buffer[: end + 2]
        if size == 0:
            self._parse = self._trailer
            return True
        self._length = size  # of the chunk, left to take
        self._parse = self._chunk_data
        return True

    def _chunk_data(self) -> bool:
        # Taken as it arrives, only ``room`` bytes kept: a chunk of any size announced
        # costs no more memory than the body's limit.
        buffer = self._buffer
        if not buffer:
            return False
        taken = min(len(buffer), self._length)
        room = self._max_body - len(self._body)
        if room > 0:
            self._body += buffer[: min(room, taken)]
        del buffer[:taken]
        self._full_size += taken
        self._length -= taken
        if self._length:
            return False
        self._parse = self._chunk_end
        return True

    def _chunk_end(self) -> bool:
        if len(self._buffer) < 2:
            return False
        if self._buffer[:2] != b"\r\n":
            raise ProtocolError("bad chunk end")
        del self._buffer[:2]
        self._parse = self._chunk_size
        return True

    def _trailer(self) -> bool:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ProtocolError("answer trailer too large")
            return False
        del self._buffer[: end + 2]
        if end == 0:
            self._complete(self._keep)  # the empty line ends the trailer fields (ignored)
            return False
        return True

    def _to_eof(self) -> bool:
        self._full_size += len(self._buffer)
        room = self._max_body - len(self._body)
        if room > 0:
            self._body += self._buffer[:room]
        self._buffer.clear()
        return False

    def _time_up(self) -> None:
        self._timer = None
        # An answer the peer wrote before the deadline counts even when the loop comes to
        # it late: uvloop runs due timers before it polls, so a loop that was busy past the
        # deadline would see the timer first and the answer, already in the socket, after.
        # A pipelined cold start relies on this: the runtime runs the /run behind its
        # /init only when it wrote the /init answer before the deadline (runtimes'
        # X-Squall-Init-Deadline), and then that answer must not be taken for a timeout.
        self._drain()
        if self._answer is None:
            return  # the drained bytes completed (or failed) the answer
        answer, self._answer = self._answer, None
        self.close()  # the runtime still works on it: never reused
        if answer is not None and not answer.done():
            answer.set_exception(TimeoutError())

    def _drain(self) -> None:
        """Read what the socket already holds, without waiting (its descriptor is
        non-blocking under both asyncio and uvloop; the loop then just finds it empty)."""
        transport = self._transport
        if transport is None or self._lost:
            return
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        # Bounded: a runtime still streaming a large answer does not hold the loop here.
        budget = self._max_body + MAX_HEAD_BYTES
        try:
            fd = sock.fileno()
            while self._answer is not None and not self._lost and budget > 0:
                data = os.read(fd, min(budget, 256 * 1024))
                budget -= len(data)
                if not data:
                    return  # the end: the loop's connection_lost tells the rest
                self.data_received(data)
        except OSError:  # BlockingIOError: nothing more; anything else: the loop sees it
            return

    def _complete(self, keep: bool) -> None:
        answer, self._answer = self._answer, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        body = bytes(self._body)
        self._body = bytearray()
        response = HttpResponse(
            self._status, body, truncated=self._full_size > len(body), full_size=self._full_size
        )
        if answer is not None and not answer.done():
            answer.set_result((response, keep and not self._lost))

    def _fail(self, error: HttpError) -> None:
        answer, self._answer = self._answer, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._lost = True  # never reused: its state is unknown
        if answer is not None and not answer.done():
            answer.set_exception(error)


class UnixHttpClient:
    """POSTs JSON bodies to one Unix socket; see the module docstring for guarantees.

    ``opener``, when given, opens the connections instead (``path`` then only names the
    peer in messages): the Docker backend's connections into a container's namespace.
    ``connection``: one opened ahead (a zygote's started spare), idle until the first post.
    ``sock``: one opened ahead as a plain connected socket, owned by the client from now
    on (closed by ``aclose``); its transport is made by ``adopt_ahead`` or on its first
    use, so that handing it over awaits nothing (sandboxstart.py).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_response_bytes: int,
        max_idle: int = 8,
        opener: Opener | None = None,
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self._ahead_sock = sock
        self._path = str(path)
        self._opener = opener
        self._max_response_bytes = max_response_bytes
        self._max_idle = max_idle
        self._idle: list[_Connection] = []
        # Not idle: the peer has not yet answered on it (see the module docstring).
        self._ahead: _Connection | None = None
        if connection is not None:
            self._ahead = _Connection(max_response_bytes)
            self._ahead.adopt(connection[1])
        self._closed = False
        self._dir_fd: int | None = None
        if opener is None and len(os.fsencode(self._path)) > MAX_SOCKET_PATH:
            # Too long for sun_path: reach the socket through a descriptor of its directory
            # (/proc/self/fd/N/name is short and resolves to the same file).
            self._dir_fd = os.open(os.path.dirname(self._path), os.O_PATH | os.O_DIRECTORY)
            self._connect_path = f"/proc/self/fd/{self._dir_fd}/{os.path.basename(self._path)}"
        else:
            self._connect_path = self._path

    async def post(self, target: str, body: bytes, timeout: float | None = None) -> HttpResponse:
        """POST ``body`` (JSON) to ``target`` and return the answer.

        Raises :class:`ConnectionLost` or :class:`ProtocolError`; ``TimeoutError`` when
        ``timeout`` seconds (connecting included) pass first.
        """
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        if self._ahead_sock is not None:
            await self.adopt_ahead()
        conn, self._ahead = self._ahead, None
        reused = False
        if conn is None:
            conn = self._take_idle()
            reused = conn is not None
        if conn is None:
            conn = await self._connect(deadline)
        data = (
            b"POST %s HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        ) % (target.encode("ascii"), len(body)) + body
        keep = False
        try:
            try:
                response, keep = await conn.request(data, deadline)
            except ConnectionLost as ex:
                if not reused or ex.answered:
                    raise
                conn.close()  # the peer closed this idle connection; it never saw the request
                conn = await self._connect(deadline)
                response, keep = await conn.request(data, deadline)
            return response
        finally:
            self._give_back(conn, keep)

    async def aclose(self) -> None:
        """Close every idle connection; in-flight requests close theirs when they end."""
        self._closed = True
        idle, self._idle = self._idle, []
        if self._ahead_sock is not None:
            self._ahead_sock.close()
            self._ahead_sock = None
        if self._ahead is not None:
            idle.append(self._ahead)
            self._ahead = None
        for conn in idle:
            conn.close()
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    async def pipeline(self, requests: Sequence[Request]) -> Pipeline:
        """Write ``requests`` in one write on one connection (the one opened ahead, an idle
        one, or a new one); their answers are read in order from the :class:`Pipeline`,
        which the caller closes. Raises :class:`ConnectionLost` (not retried)."""
        if self._ahead_sock is not None:
            await self.adopt_ahead()
        conn, self._ahead = self._ahead, None
        if conn is None:
            conn = self._take_idle()
        if conn is None:
            conn = await self._connect(None)
        data = b"".join(_request(target, body, headers) for target, body, headers in requests)
        try:
            conn.write_ahead(data, len(requests))
        except BaseException:
            conn.close()
            raise
        return Pipeline(self, conn, len(requests))

    def _give_back(self, conn: _Connection, keep: bool) -> None:
        if keep and not self._closed and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable:
                return conn
            conn.close()
        return None

    async def adopt_ahead(self) -> None:
        """Make the transport of the socket opened ahead (``sock``; one loop iteration,
        for its ``connection_made``), if not done yet: early, while the runtime starts
        anyway, rather than on the first request. Cancelled, the socket is closed."""
        sock, self._ahead_sock = self._ahead_sock, None
        if sock is None:
            return
        if self._closed:
            sock.close()
            return
        conn = _Connection(self._max_response_bytes)
        try:
            loop = asyncio.get_running_loop()
            await loop.create_unix_connection(lambda: conn, sock=sock)
        except BaseException:
            sock.close()  # cancelled, or refused: the transport (if made) closed it too
            raise
        if self._closed:  # closed while the transport was made
            conn.close()
            return
        self._ahead = conn

    async def _connect(self, deadline: float | None) -> _Connection:
        if self._closed:
            raise ConnectionLost("the client is closed")
        conn = _Connection(self._max_response_bytes)
        try:
            async with asyncio.timeout_at(deadline):  # a new connection only: not warm runs
                if self._opener is not None:
                    _, writer = await self._opener(MAX_HEAD_BYTES)
                    conn.adopt(writer)
                else:
                    loop = asyncio.get_running_loop()
                    await loop.create_unix_connection(lambda: conn, self._connect_path)
        except OSError as ex:
            raise ConnectionLost(f"cannot connect to {self._path}: {ex}") from ex
        return conn


class Pipeline:
    """The answers of requests written together (:meth:`UnixHttpClient.pipeline`).

    :meth:`next` reads the next answer (:class:`ConnectionLost`, :class:`ProtocolError`);
    :meth:`close` (idempotent; also after an error or a cancellation) gives the connection
    back to its client when every answer was read and none closes it, else closes it —
    the answers not read are dropped with it (the peer sees the connection close).
    """

    __slots__ = ("_client", "_conn", "_keep", "_left")

    def __init__(self, client: UnixHttpClient, conn: _Connection, count: int) -> None:
        self._client = client
        self._conn: _Connection | None = conn
        self._left = count
        self._keep = True

    async def next(self, deadline: float | None = None) -> HttpResponse:
        """The next answer; ``TimeoutError`` at ``deadline`` (loop time), when an answer
        the peer wrote before it still counts (see ``_Connection._time_up``)."""
        conn = self._conn
        if conn is None or self._left <= 0:
            raise ConnectionLost("no answer left to read on this pipeline")
        self._keep = False  # until this answer was read whole
        response, keep = await conn.expect(deadline)
        self._left -= 1
        self._keep = keep
        return response

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._give_back(conn, self._keep and self._left == 0)


def _request(target: str, body: bytes, headers: Mapping[str, str] | None = None) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items()) if headers else ""
    head = (
        f"POST {target} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


def _parse_head(head: bytes) -> tuple[int, dict[str, str], bool]:
    """Status, lower-cased headers, and whether the connection stays open afterwards."""
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or len(rest) < 3 or not rest[:3].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"malformed header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return int(rest[:3]), headers, keep
