"""The hot routes served straight from the HTTP protocol, without ASGI.

Every invoke (``POST /api/v1/namespaces/{namespace}/actions/{rest}``) and every web
action request (``/api/v1/web/{namespace}/{package}/{rest}``) through uvicorn builds an
ASGI scope, a ``receive``/``send`` pair, passes ``RequestMiddleware`` and the fast path
(fastpath.py), a Starlette ``Request`` and a ``Response``, and uvicorn then checks and
lower-cases every header of the answer again. :class:`HotRouteProtocol` is uvicorn's
httptools protocol with those routes taken off before the ASGI application: it parses
as uvicorn does (same parser, same callbacks, same path decoding), runs the ONE handler
of the route (hotroutes.py: ``routes.actions.invoke``, ``routes.web.serve``, written
against ``http.HttpRequest`` / ``http.WebHttpRequest``) with a small request object, and
writes the answer's head and body in one ``write`` (hotcycle.py). Every other request —
and one it does not take, below — goes to the ASGI application through uvicorn's own
code, unchanged.

A request is taken only when it is plain: no ``Expect: 100-continue``, no upgrade, no
``limit_concurrency`` or access log configured, no ``root_path``, and a body of at most
64 KiB (uvicorn's flow-control mark): one declared larger goes to ASGI from its headers
on. One that turns out larger while its body arrives is
handed over to uvicorn's ASGI cycle at that moment (the part read so far replayed into
it), which then streams and pauses reading exactly as it would have from the start.

Guarantees (``tests/api/test_api_hotroute.py`` and ``test_api_hotroute_web.py`` compare
both paths over real sockets):

- The answer is byte for byte the one the ASGI path sends: status line, uvicorn's
  ``date``/``server`` headers (``server_state.default_headers``), the handler's
  headers, content length and type, ``x-request-id`` (the client's, else a new one) and
  the CORS headers ``RequestMiddleware`` adds (not on web actions, which choose their
  own), ``connection: close`` when the connection is not kept alive (or the web action's
  own ``connection: close``), no body for HEAD; errors rendered by ``http.error_for``, as
  the application's exception handlers render them.
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

import urllib.parse
from typing import Any, ClassVar

import httptools
from starlette.types import ASGIApp
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from squall.controller.core import Controller
from squall.controller.fastpath import InvokeFastPath
from squall.controller.hotcycle import HotCycle, HotMessage
from squall.controller.hotroutes import HotHeaders, HotRequest, HotRoute
from squall.controller.http import new_transaction_id
from squall.controller.middleware import RequestMiddleware

__all__ = ["HotRoute", "HotRouteProtocol", "hot_route_of"]


def hot_route_of(app: ASGIApp) -> HotRoute | None:
    """The hot routes of an application built by ``app.create_app``, else None."""
    if isinstance(app, RequestMiddleware) and isinstance(app.app, InvokeFastPath):
        state = getattr(app.app.app, "state", None)
        controller = getattr(state, "controller", None)
        if isinstance(controller, Controller):
            return HotRoute(controller)
    return None


class HotRouteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol serving ``hot_route`` itself; see the module doc.

    ``hot_route`` is set by a subclass (``cli/serving.py``); None serves all by ASGI.
    """

    hot_route: ClassVar[HotRoute | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The hot request being read (headers complete, body arriving), else None.
        self._hot: HotMessage | None = None
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
        if self._takes and not self.expect_100_continue and not parser.should_upgrade():
            message = self._message(parser)
            if message is not None:
                self._hot = message
                return
        super().on_headers_complete()

    def _message(self, parser: httptools.HttpRequestParser) -> HotMessage | None:
        """The request as a hot one, if its method and path are a hot route's (uvicorn's
        decoding)."""
        assert self.hot_route is not None
        try:
            url = httptools.parse_url(self.url)
            path = url.path.decode("ascii")
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            return None  # uvicorn's own handling, whatever it is
        if "%" in path:
            path = urllib.parse.unquote(path)
        method = parser.get_method().decode("ascii")
        route = self.hot_route.match(method, path)
        if route is None:
            return None
        headers = HotHeaders(self.headers)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > HIGH_WATER_LIMIT:
            # Too large to hold: the ASGI path from the start, where the handler runs
            # (and may refuse it, 413) before the body arrives.
            return None
        txid = headers.get("x-request-id", "")[:64] or new_transaction_id()
        request = HotRequest(method, headers, url.query or b"")
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        return HotMessage(request, txid, route[0], route[1], keep_alive)

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
