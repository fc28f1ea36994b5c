"""One ``send`` per HTTP answer: uvicorn's httptools protocol over a coalescing transport.

uvicorn writes an answer's head (``http.response.start``) and its body
(``http.response.body``) with two ``transport.write`` calls, and uvloop sends each at once:
two system calls and two TCP segments per answer, and the client is woken for the head
only to wait for the body. On the warm invoke path that second ``send`` was ~15 % of the
server's event-loop samples (bench/README.md, "Where the time goes").

:class:`CoalescingTransport` holds a write that ends an HTTP head (``\\r\\n\\r\\n``) and
sends it with the next write, which in uvicorn is the body written in the same task step;
a held head with no write after it in that step (a streamed answer, ``HEAD``, a
``100 Continue``) is sent by a callback scheduled with ``call_soon``, so nothing waits
longer than the current loop step. Bytes go out in the order they were written; ``close``
and ``write_eof`` send what is held first; ``abort`` drops it with the connection.

Concurrency: everything runs on the event loop thread, as the transport itself does.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD_END = b"\r\n\r\n"


class CoalescingTransport:
    """Wraps a transport: a head is held until the next write or the end of the step.

    Everything but writing and closing is the wrapped transport's own (``__getattr__``).
    """

    __slots__ = ("_held", "_loop", "_scheduled", "_transport", "is_closing")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._scheduled = False
        # The wrapped transport's own, bound here: asked after every answer (uvicorn's
        # on_response_complete), where ``__getattr__`` would be a Python call.
        self.is_closing = transport.is_closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif bytes(data[-4:]) == _HEAD_END:
            self._held = bytes(data)
            if not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def get_write_buffer_size(self) -> int:
        held = 0 if self._held is None else len(self._held)
        return self._transport.get_write_buffer_size() + held

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def flush(self) -> None:
        """Send the held head now, if any."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def _flush(self) -> None:
        self._scheduled = False
        self.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = CoalescingTransport(transport, self.loop)
        # Duck-typed: it has every method of a transport (the rest forwarded).
        super().connection_made(cast(asyncio.Transport, coalescing))
