"""The invoke route served straight from the HTTP protocol, without ASGI.

Every invoke (``POST /api/v1/namespaces/{namespace}/actions/{rest}``) through uvicorn
builds an ASGI scope, a ``receive``/``send`` pair, passes ``RequestMiddleware`` and the
fast path (fastpath.py), a Starlette ``Request`` and a ``Response``, and uvicorn then
checks and lower-cases every header of the answer again. :class:`HotRouteProtocol` is
uvicorn's httptools protocol with that route taken off before the ASGI application: it
parses as uvicorn does (same parser, same callbacks, same path decoding), runs the ONE
invoke handler (``routes.actions.invoke``, written against ``http.HttpRequest``) with a
small request object, and writes the answer's head and body in one ``write``. Every
other request — and an invoke it does not take, below — goes to the ASGI application
through uvicorn's own code, unchanged.

An invoke is taken only when it is plain: no ``Expect: 100-continue``, no upgrade, no
``limit_concurrency`` or access log configured, no ``root_path``, and a body of at most
64 KiB (uvicorn's flow-control mark). One that turns out larger while its body arrives is
handed over to uvicorn's ASGI cycle at that moment (the part read so far replayed into
it), which then streams and pauses reading exactly as it would have from the start.

Guarantees (``tests/api/test_api_hotroute.py`` compares both paths over real sockets):

- The answer is byte for byte the one the ASGI path sends: status line, uvicorn's
  ``date``/``server`` headers (``server_state.default_headers``), the handler's
  headers, content length and type, ``x-request-id`` (the client's, else a new one) and
  the CORS headers ``RequestMiddleware`` adds, ``connection: close`` when the connection
  is not kept alive; errors rendered by ``http.error_for``, as the application's
  exception handlers render them.
- Connection handling is uvicorn's: keep-alive and its timeout, pipelined requests
  queued in uvicorn's ``pipeline`` (reading paused) and started one after the other in
  order, whichever path each takes; chunked and ``Content-Length`` request bodies (the
  parser decodes both); writing waits while the transport is paused (flow control);
  a client that disconnects gets nothing written; a graceful shutdown waits for the
  task (it is in ``server_state.tasks``) and closes the connection after the answer.

Concurrency: all of it runs on the event loop's thread. The parser's callbacks run
inside ``data_received``; the handler runs in one task per request, created when the
request's last byte has arrived (a hot request's body is complete before it starts).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import httptools
from starlette.types import ASGIApp
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import (
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
)

from squall.controller.core import Controller
from squall.controller.fastpath import INVOKE_PATH, InvokeFastPath
from squall.controller.http import (
    ACTIVATION_ID_HEADER,
    error_body,
    error_for,
    new_transaction_id,
)
from squall.controller.middleware import CORS_HEADERS, RequestMiddleware
from squall.controller.routes.actions import invoke

log = logging.getLogger("squall.controller")

_ACTIVATION_ID = ACTIVATION_ID_HEADER.encode("latin-1") + b": "
_JSON_TAIL = b"content-type: application/json\r\n"
# What RequestMiddleware adds after the application's headers (the transaction id is
# put in front of these), as one block.
_CORS_BLOCK = b"".join(name + b": " + value + b"\r\n" for name, value in CORS_HEADERS)
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


class HotRoute:
    """The route the protocol serves itself: the invoke, with its controller."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def match(self, path: str) -> tuple[str, str] | None:
        """``(namespace, rest)`` when ``path`` is the invoke route's, as Starlette matches."""
        found = INVOKE_PATH.match(path)
        return None if found is None else (found["namespace"], found["rest"])


def hot_route_of(app: ASGIApp) -> HotRoute | None:
    """The hot route of an application built by ``app.create_app``, else None."""
    if isinstance(app, RequestMiddleware) and isinstance(app.app, InvokeFastPath):
        state = getattr(app.app.app, "state", None)
        controller = getattr(state, "controller", None)
        if isinstance(controller, Controller):
            return HotRoute(controller)
    return None


class HotRequest:
    """A complete request as ``http.HttpRequest`` (see there for the lookups' rules)."""

    __slots__ = ("_query", "_query_params", "body", "headers", "method")

    def __init__(self, headers: dict[str, str], query: bytes) -> None:
        self.method = "POST"
        self.headers = headers
        self.body = bytearray()
        self._query = query
        self._query_params: dict[str, str] | None = None

    @property
    def query_params(self) -> dict[str, str]:
        # Starlette's QueryParams: parse_qsl over latin-1, blank values kept, last wins.
        if self._query_params is None:
            text = self._query.decode("latin-1")
            self._query_params = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
        return self._query_params

    async def stream(self) -> AsyncIterator[bytes]:
        yield bytes(self.body)


class _Message:
    """What a request carries from its headers to its last byte."""

    __slots__ = ("keep_alive", "namespace", "request", "rest", "txid")

    def __init__(
        self, request: HotRequest, txid: str, namespace: str, rest: str, keep_alive: bool
    ) -> None:
        self.request = request
        self.txid = txid
        self.namespace = namespace
        self.rest = rest
        self.keep_alive = keep_alive


class _NoEvent:
    """Stands in for the cycle's ``message_event``: a hot request never waits for input."""

    __slots__ = ()

    def set(self) -> None:
        pass


_NO_EVENT = _NoEvent()


class HotCycle:
    """One hot request's answer, in the place of uvicorn's ``RequestResponseCycle``.

    It has what the protocol reads of a cycle (``response_complete``, ``disconnected``,
    ``keep_alive``, ``message_event``, ``run_asgi``), so uvicorn's connection code —
    pipelining, ``connection_lost``, ``shutdown`` — handles it as its own.
    """

    def __init__(
        self, protocol: HotRouteProtocol, message: _Message, on_response: Callable[[], None]
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
        txid = message.txid
        try:
            route = self.protocol.hot_route
            assert route is not None
            try:
                answer = await invoke(
                    route.controller, message.request, txid, message.namespace, message.rest
                )
                status, body = answer.status, answer.body
                head = _ACTIVATION_ID + answer.activation_id.encode("latin-1") + b"\r\n"
            except Exception as exc:
                error = error_for(exc, txid)
                status, body, head = error.status, error_body(error, txid), b""
            await self._send(status, head, body)
        except BaseException as exc:
            # As uvicorn's cycle: log, answer 500 if nothing was sent, else close.
            log.error("Exception in ASGI application\n", exc_info=exc)
            transport = self.protocol.transport
            if not self.response_started and not self.disconnected:
                self.keep_alive = False
                self._write(STATUS_LINE[500], _UVICORN_500, b"Internal Server Error")
            else:
                transport.close()
        finally:
            self.on_response = lambda: None

    async def _send(self, status: int, head: bytes, body: bytes) -> None:
        flow = self.protocol.flow
        if flow.write_paused and not self.disconnected:
            await flow.drain()
        if self.disconnected:
            return
        txid = self.message.txid.encode("latin-1")
        if HEADER_VALUE_RE.search(txid):
            # uvicorn refuses the header value and closes the connection unanswered.
            self.response_started = True
            log.error("ASGI callable returned without completing response.")
            self.protocol.transport.close()
            return
        tail = b"content-length: %d\r\n" % len(body) + _JSON_TAIL
        tail += b"x-request-id: " + txid + b"\r\n" + _CORS_BLOCK
        if not self.keep_alive:
            tail += _CLOSE
        self._write(STATUS_LINE[status], head + tail, body)

    def _write(self, status_line: bytes, headers: bytes, body: bytes) -> None:
        self.response_started = True
        default = _default_block(self.protocol.server_state.default_headers)
        transport = self.protocol.transport
        transport.write(b"".join((status_line, default, headers, b"\r\n", body)))
        self.response_complete = True
        if not self.keep_alive:
            transport.close()
        self.on_response()


class HotRouteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol serving ``hot_route`` itself; see the module doc.

    ``hot_route`` is set by a subclass (``cli/serving.py``); None serves all by ASGI.
    """

    hot_route: ClassVar[HotRoute | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The hot request being read (headers complete, body arriving), else None.
        self._hot: _Message | None = None
        self._takes = self.takes_hot_requests()

    def takes_hot_requests(self) -> bool:
        """Whether this connection serves the hot route itself: not when uvicorn's own
        limit, access log or root path would have to be reproduced."""
        return (
            self.hot_route is not None
            and self.limit_concurrency is None
            and not self.access_log
            and not self.root_path
        )

    def on_headers_complete(self) -> None:
        parser = self.parser
        if (
            self._takes
            and not self.expect_100_continue
            and parser.get_method() == b"POST"
            and not parser.should_upgrade()
        ):
            message = self._message(parser)
            if message is not None:
                self._hot = message
                return
        super().on_headers_complete()

    def _message(self, parser: httptools.HttpRequestParser) -> _Message | None:
        """The request as a hot one, if its path is the route's (uvicorn's decoding)."""
        assert self.hot_route is not None
        try:
            url = httptools.parse_url(self.url)
            path = url.path.decode("ascii")
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            return None  # uvicorn's own handling, whatever it is
        if "%" in path:
            path = urllib.parse.unquote(path)
        params = self.hot_route.match(path)
        if params is None:
            return None
        headers: dict[str, str] = {}
        # Reversed, so the first of a repeated header wins (Starlette's Headers.get).
        for name, value in reversed(self.headers):
            headers[name.decode("latin-1")] = value.decode("latin-1")
        txid = headers.get("x-request-id", "")[:64] or new_transaction_id()
        query = url.query or b""
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        return _Message(HotRequest(headers, query), txid, params[0], params[1], keep_alive)

    def on_body(self, body: bytes) -> None:
        hot = self._hot
        if hot is None:
            super().on_body(body)
            return
        hot.request.body += body
        if len(hot.request.body) > HIGH_WATER_LIMIT:
            # Too large to hold: uvicorn's cycle takes over from here (it streams).
            self._hot = None
            super().on_headers_complete()
            super().on_body(bytes(hot.request.body))

    def on_message_complete(self) -> None:
        hot = self._hot
        if hot is None:
            super().on_message_complete()
            return
        self._hot = None
        cycle = HotCycle(self, hot, self.on_response_complete)
        # uvicorn's own order (on_headers_complete): start now, or queue behind the
        # request being answered and stop reading until it is done.
        existing = self.cycle
        self.cycle = cycle  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, self.app)  # type: ignore[arg-type]
        else:
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]

    def shutdown(self) -> None:
        """A graceful shutdown (uvicorn's rule: a request in progress is answered, with
        ``connection: close``, then the connection closes). A hot request whose body is
        still arriving has no cycle yet, where uvicorn's own would: without this, uvicorn
        would see no request in progress and close the connection under it."""
        hot = self._hot
        if hot is not None:
            hot.keep_alive = False  # its cycle closes the connection once answered
            return
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._hot = None
        super().connection_lost(exc)
