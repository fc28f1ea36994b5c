"""One hot request's answer, written in the place of uvicorn's ``RequestResponseCycle``.

:class:`HotCycle` runs the route's handler (hotroutes.py) and writes its answer's head
and body in one ``write``, with what uvicorn adds around an ASGI answer: its
``date``/``server`` headers (``server_state.default_headers``) first, the transaction id
after the application's headers, ``connection: close`` last when the connection is not
kept alive, and no body for HEAD. It has what uvicorn's connection code reads of a cycle,
so pipelining, ``connection_lost`` and ``shutdown`` handle it as their own.

Concurrency: runs on the event loop's thread, in the task uvicorn's protocol starts for
the request (in ``server_state.tasks``, so a graceful shutdown waits for it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HEADER_VALUE_RE, STATUS_LINE

from squall.controller.hotroutes import Handler, HotAnswer, HotRequest

if TYPE_CHECKING:
    from squall.controller.hotroute import HotRouteProtocol

log = logging.getLogger("squall.controller")

_CLOSE = b"connection: close\r\n"
# uvicorn's answer when the application fails before answering (RequestResponseCycle).
_UVICORN_500 = (
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n"
)

_default_cache: tuple[list[tuple[bytes, bytes]], bytes] = ([], b"")


def _default_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    """uvicorn's default headers (``date``, ``server``) as header lines. The server
    replaces the list once a second (the date), so the rendering is kept per list."""
    global _default_cache
    cached, block = _default_cache
    if cached is not headers:
        block = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        _default_cache = (headers, block)
    return block


class HotMessage:
    """What a hot request carries from its headers to its last byte."""

    __slots__ = ("handler", "keep_alive", "params", "request", "txid")

    def __init__(
        self,
        request: HotRequest,
        txid: str,
        handler: Handler,
        params: tuple[str, ...],
        keep_alive: bool,
    ) -> None:
        self.request = request
        self.txid = txid
        self.handler = handler
        self.params = params
        self.keep_alive = keep_alive

    @property
    def rest(self) -> str:
        """The path's last parameter (the action, with what follows it)."""
        return self.params[-1]


class _NoEvent:
    """Stands in for the cycle's ``message_event``: a hot request never waits for input."""

    __slots__ = ()

    def set(self) -> None:
        pass


_NO_EVENT = _NoEvent()


class HotCycle:
    """One hot request's answer: ``response_complete``, ``disconnected``,
    ``keep_alive``, ``message_event`` and ``run_asgi`` as uvicorn's cycle has them."""

    def __init__(
        self, protocol: HotRouteProtocol, message: HotMessage, on_response: Callable[[], None]
    ) -> None:
        self.protocol = protocol
        self.message = message
        self.keep_alive = message.keep_alive
        self.on_response = on_response
        self.message_event = _NO_EVENT
        self.disconnected = False
        self.response_started = False
        self.response_complete = False

    async def run_asgi(self, app: Any) -> None:
        """Serve the request (``app`` is unused: uvicorn's pipeline passes it)."""
        message = self.message
        try:
            route = self.protocol.hot_route
            assert route is not None
            answer = await message.handler(
                route.controller, message.request, message.txid, message.params
            )
            await self._send(answer)
        except BaseException as exc:
            # As uvicorn's cycle: log, answer 500 if nothing was sent, else close.
            log.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started and not self.disconnected:
                self.keep_alive = False
                self._write(STATUS_LINE[500], _UVICORN_500, b"Internal Server Error")
            else:
                self.protocol.transport.close()
        finally:
            self.on_response = lambda: None

    async def _send(self, answer: HotAnswer) -> None:
        flow = self.protocol.flow
        if flow.write_paused and not self.disconnected:
            await flow.drain()
        if self.disconnected:
            return
        txid = self.message.txid.encode("latin-1")
        if not answer.sendable or HEADER_VALUE_RE.search(txid):
            # uvicorn refuses the header value and closes the connection unanswered.
            self.response_started = True
            log.error("ASGI callable returned without completing response.")
            self.protocol.transport.close()
            return
        headers = answer.head + b"x-request-id: " + txid + b"\r\n" + answer.tail
        if answer.close:
            self.keep_alive = False
        elif not self.keep_alive:
            headers += _CLOSE
        body = b"" if self.message.request.method == "HEAD" else answer.body
        self._write(STATUS_LINE[answer.status], headers, body)

    def _write(self, status_line: bytes, headers: bytes, body: bytes) -> None:
        self.response_started = True
        default = _default_block(self.protocol.server_state.default_headers)
        transport = self.protocol.transport
        transport.write(b"".join((status_line, default, headers, b"\r\n", body)))
        self.response_complete = True
        if not self.keep_alive:
            transport.close()
        self.on_response()
