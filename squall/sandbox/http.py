"""A minimal asyncio HTTP/1.1 client over a Unix domain socket, for runtime proxies.

Just enough HTTP to POST /init and /run to a runtime: requests carry a Content-Length
body; answers are framed by Content-Length, chunked transfer coding, or the connection
closing. Connections are kept alive and reused, so a warm /run costs one write and one
read on an open socket.

Errors::

    HttpError            base
    ├── ConnectionLost   could not connect, or the peer closed / reset the connection
    │                    before a complete answer (the runtime process probably died)
    └── ProtocolError    the answer is not HTTP/1.x as this client understands it

Guarantees:

- ``post`` may run concurrently from several tasks: each request uses its own connection
  (an idle one, or a new one), so answers never interleave.
- Cancelling ``post`` (e.g. an ``asyncio.timeout`` around it) closes that request's
  connection: a connection in an unknown state is never reused.
- A reused idle connection that the peer had already closed (EOF before any byte of the
  answer) is retried once on a fresh connection: the peer never saw that request.
- A connection opened ahead (``connection``) carries the first request and counts as
  fresh: the peer reads whatever comes first on it, so a loss there is never retried
  (that would send the request, an ``/init``, twice).
- At most ``max_response_bytes`` of a body are kept; the answer then says ``truncated``
  and ``full_size`` holds the announced (or counted) size.
- ``pipeline`` writes several requests in one write on one connection and reads their
  answers in order (:class:`Pipeline`); the connection is reused only if every answer was
  read and none closes it. Nothing of a pipeline is retried: the peer may have read any
  prefix of it.
- After ``aclose`` every connection is closed and ``post`` raises ``ConnectionLost``.
"""

from __future__ import annotations

import asyncio
import os
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


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class UnixHttpClient:
    """POSTs JSON bodies to one Unix socket; see the module docstring for guarantees.

    ``opener``, when given, opens the connections instead (``path`` then only names the
    peer in messages): the Docker backend's connections into a container's namespace.
    ``connection``: one opened ahead (a zygote's started spare), idle until the first post.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_response_bytes: int,
        max_idle: int = 8,
        opener: Opener | None = None,
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None,
    ) -> None:
        self._path = str(path)
        self._opener = opener
        self._max_response_bytes = max_response_bytes
        self._max_idle = max_idle
        self._idle: list[_Connection] = []
        # Not idle: the peer has not yet answered on it (see the module docstring).
        self._ahead = None if connection is None else _Connection(*connection)
        self._closed = False
        self._dir_fd: int | None = None
        if opener is None and len(os.fsencode(self._path)) > MAX_SOCKET_PATH:
            # Too long for sun_path: reach the socket through a descriptor of its directory
            # (/proc/self/fd/N/name is short and resolves to the same file).
            self._dir_fd = os.open(os.path.dirname(self._path), os.O_PATH | os.O_DIRECTORY)
            self._connect_path = f"/proc/self/fd/{self._dir_fd}/{os.path.basename(self._path)}"
        else:
            self._connect_path = self._path

    async def post(self, target: str, body: bytes) -> HttpResponse:
        """POST ``body`` (JSON) to ``target`` and return the answer.

        Raises :class:`ConnectionLost` or :class:`ProtocolError`.
        """
        conn, self._ahead = self._ahead, None
        reused = False
        if conn is None:
            conn = self._take_idle()
            reused = conn is not None
        if conn is None:
            conn = await self._connect()
        keep = False
        try:
            try:
                response, keep = await self._exchange(conn, target, body)
            except ConnectionLost as ex:
                if not reused or ex.answered:
                    raise
                conn.close()  # the peer closed this idle connection; it never saw the request
                conn = await self._connect()
                response, keep = await self._exchange(conn, target, body)
            return response
        finally:
            self._give_back(conn, keep)

    async def aclose(self) -> None:
        """Close every idle connection; in-flight requests close theirs when they end."""
        self._closed = True
        idle, self._idle = self._idle, []
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
        conn, self._ahead = self._ahead, None
        if conn is None:
            conn = self._take_idle()
        if conn is None:
            conn = await self._connect()
        data = b"".join(_request(target, body, headers) for target, body, headers in requests)
        try:
            conn.writer.write(data)
            await conn.writer.drain()
        except OSError as ex:
            conn.close()
            raise ConnectionLost(f"connection broken: {ex}") from ex
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
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        if self._closed:
            raise ConnectionLost("the client is closed")
        try:
            if self._opener is not None:
                reader, writer = await self._opener(MAX_HEAD_BYTES)
            else:
                reader, writer = await asyncio.open_unix_connection(
                    self._connect_path, limit=MAX_HEAD_BYTES
                )
        except OSError as ex:
            raise ConnectionLost(f"cannot connect to {self._path}: {ex}") from ex
        return _Connection(reader, writer)

    async def _exchange(
        self, conn: _Connection, target: str, body: bytes
    ) -> tuple[HttpResponse, bool]:
        """Send one request and read its answer; returns (answer, connection reusable)."""
        try:
            conn.writer.write(_request(target, body))
            await conn.writer.drain()
            return await self._read_response(conn.reader)
        except asyncio.IncompleteReadError as ex:
            answered = bool(ex.partial)
            message = "connection closed before a complete answer"
            raise ConnectionLost(message, answered=answered) from ex
        except OSError as ex:  # reset, broken pipe: the peer went away
            raise ConnectionLost(f"connection broken: {ex}") from ex

    async def _read_response(self, reader: asyncio.StreamReader) -> tuple[HttpResponse, bool]:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError as ex:
                raise ProtocolError("answer headers too large") from ex
            status, headers, keep = _parse_head(head)
            if status >= 200:
                break  # 1xx answers are interim: the real one follows
        if "chunked" in headers.get("transfer-encoding", ""):
            body, full_size = await self._read_chunked(reader)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError as ex:
                raise ProtocolError("bad Content-Length") from ex
            if length > self._max_response_bytes:
                # Keep the head of the body and drop the connection rather than read the rest.
                body = await reader.readexactly(self._max_response_bytes)
                response = HttpResponse(status, body, truncated=True, full_size=length)
                return response, False
            body, full_size = await reader.readexactly(length), length
        else:
            body, full_size = await self._read_to_eof(reader)
            keep = False
        truncated = full_size > len(body)
        return HttpResponse(status, body, truncated=truncated, full_size=full_size), keep

    async def _read_chunked(self, reader: asyncio.StreamReader) -> tuple[bytes, int]:
        kept = bytearray()
        full_size = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as ex:
                raise ProtocolError("bad chunk size") from ex
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailer fields, ignored
                return bytes(kept), full_size
            chunk = await reader.readexactly(size + 2)
            full_size += size
            room = self._max_response_bytes - len(kept)
            if room > 0:
                kept += chunk[: min(size, room)]

    async def _read_to_eof(self, reader: asyncio.StreamReader) -> tuple[bytes, int]:
        kept = bytearray()
        full_size = 0
        while chunk := await reader.read(256 * 1024):
            full_size += len(chunk)
            room = self._max_response_bytes - len(kept)
            if room > 0:
                kept += chunk[:room]
        return bytes(kept), full_size


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

    async def next(self) -> HttpResponse:
        conn = self._conn
        if conn is None or self._left <= 0:
            raise ConnectionLost("no answer left to read on this pipeline")
        self._keep = False  # until this answer was read whole
        try:
            response, keep = await self._client._read_response(conn.reader)
        except asyncio.IncompleteReadError as ex:
            message = "connection closed before a complete answer"
            raise ConnectionLost(message, answered=bool(ex.partial)) from ex
        except OSError as ex:
            raise ConnectionLost(f"connection broken: {ex}") from ex
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
