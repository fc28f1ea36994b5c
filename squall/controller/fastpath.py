"""The hot routes without Starlette's routing and exception layers.

``POST /api/v1/namespaces/{namespace}/actions/{rest}`` (every invoke) and
``/api/v1/web/{namespace}/{package}/{rest}`` (every web action) are the hot routes.
Through Starlette a request passes the application, two exception middlewares and the
route's own exception wrapper (each wrapping ``send`` once more) and a scan of the routes
listed before it (a regular expression each). :class:`InvokeFastPath` sits in front of
the Starlette application and sends those requests straight to their handlers
(``routes.actions.action_entity``, ``routes.web.web_action``), with the same ``Request``
they would get (``path_params``, ``app`` in the scope), and renders the handlers'
exceptions with the application's own handlers. Everything else goes to Starlette
unchanged — among it the API management actions under ``/api/v1/web/whisk.system/
apimgmt/``, whose route comes before the web actions'.

Guarantees: for every request it takes, the answer is the one Starlette would give —
same handler, same path matching (Starlette's ``[^/]+`` and ``path`` convertors, the
route's methods), same exception handlers (a ``SquallError`` as its OpenWhisk error, a
provider failure as 503, anything else as a logged 500). ``RequestMiddleware``, which
wraps this, still adds the transaction id and CORS headers to every answer.

Served by ``squall standalone`` or ``squall controller``, a plain invoke or web action
request does not reach this at all: the HTTP protocol serves it with the same handler
(hotroute.py). What comes here is the rest — one with ``Expect: 100-continue`` or a body
over 64 KiB, and any ASGI server other than Squall's.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from squall.controller.routes import apimgmt
from squall.controller.routes.actions import action_entity
from squall.controller.routes.web import ALL_METHODS, web_action
from squall.errors import SquallError

#: Starlette's pattern for ``/api/v1/namespaces/{namespace}/actions/{rest:path}``.
INVOKE_PATH = re.compile(r"^/api/v1/namespaces/(?P<namespace>[^/]+)/actions/(?P<rest>.*)$")
#: Starlette's pattern for ``/api/v1/web/{namespace}/{package}/{rest:path}``.
WEB_PATH = re.compile(r"^/api/v1/web/(?P<namespace>[^/]+)/(?P<package>[^/]+)/(?P<rest>.*)$")
#: The API management route (``apimgmt.PATH + "{operation}"``), matched before web actions.
APIMGMT_PATH = re.compile("^" + re.escape(apimgmt.PATH) + r"(?P<operation>[^/]+)$")
WEB_METHODS = frozenset(ALL_METHODS)

Handler = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


def _route(method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
    """The handler and path parameters of a hot route, or None for Starlette's routing."""
    if method == "POST":
        match = INVOKE_PATH.match(path)
        if match is not None:
            return action_entity, match.groupdict()
    if method in WEB_METHODS and path.startswith("/api/v1/web/"):
        match = WEB_PATH.match(path)
        if match is not None and APIMGMT_PATH.match(path) is None:
            return web_action, match.groupdict()
    return None


class InvokeFastPath:
    """Sends the hot routes to their handlers directly; see the module doc.

    ``app`` is the Starlette application (its ``state`` is what handlers read as
    ``request.app``); ``on_squall_error`` and ``on_error`` are its exception handlers for
    ``SquallError`` and for any other exception.
    """

    def __init__(self, app: ASGIApp, on_squall_error: ErrorHandler, on_error: ErrorHandler) -> None:
        self.app = app
        self._on_squall_error = on_squall_error
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and not scope.get("root_path"):
            route = _route(scope["method"], scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        handler, scope["path_params"] = route
        scope["app"] = self.app
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except SquallError as exc:
            response = await self._on_squall_error(request, exc)
        except Exception as exc:
            response = await self._on_error(request, exc)
        await response(scope, receive, send)
