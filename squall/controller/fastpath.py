"""The invoke route without Starlette's routing and exception layers.

``POST /api/v1/namespaces/{namespace}/actions/{rest}`` is the hot route: every warm
invoke comes through it. Through Starlette it passes the application, two exception
middlewares and the route's own exception wrapper (each wrapping ``send`` once more) and a
scan of the routes listed before it (a regular expression each). :class:`InvokeFastPath`
sits in front of the Starlette application and sends that one route straight to its
handler (``routes.actions.action_entity``), with the same ``Request`` it would get
(``path_params``, ``app`` in the scope), and renders the handler's exceptions with the
application's own handlers. Everything else goes to Starlette unchanged.

Guarantees: for every request it takes, the answer is the one Starlette would give —
same handler, same path matching (Starlette's ``[^/]+`` and ``path`` convertors), same
exception handlers (a ``SquallError`` as its OpenWhisk error, a provider failure as 503,
anything else as a logged 500). ``RequestMiddleware``, which wraps this, still adds the
transaction id and CORS headers to every answer.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from squall.controller.routes.actions import action_entity
from squall.errors import SquallError

#: Starlette's pattern for ``/api/v1/namespaces/{namespace}/actions/{rest:path}``.
INVOKE_PATH = re.compile(r"^/api/v1/namespaces/(?P<namespace>[^/]+)/actions/(?P<rest>.*)$")

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class InvokeFastPath:
    """Sends ``POST .../actions/{rest}`` to its handler directly; see the module doc.

    ``app`` is the Starlette application (its ``state`` is what handlers read as
    ``request.app``); ``on_squall_error`` and ``on_error`` are its exception handlers for
    ``SquallError`` and for any other exception.
    """

    def __init__(self, app: ASGIApp, on_squall_error: ErrorHandler, on_error: ErrorHandler) -> None:
        self.app = app
        self._on_squall_error = on_squall_error
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        match = INVOKE_PATH.match(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        scope["path_params"] = match.groupdict()
        request = Request(scope, receive, send)
        try:
            response = await action_entity(request)
        except SquallError as exc:
            response = await self._on_squall_error(request, exc)
        except Exception as exc:
            response = await self._on_error(request, exc)
        await response(scope, receive, send)
