"""Pure ASGI middleware: transaction ids, CORS, and rendering of Squall errors.

Pure ASGI (not Starlette's BaseHTTPMiddleware) because it adds no task or stream copy per
request, which matters on the sub-millisecond invoke path. The hot-route protocol
(hotroute.py), which serves plain invokes and web actions without ASGI, adds the same headers
(``CORS_HEADERS``, the transaction id) in the same order itself.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from squall.controller.gateway import is_gateway_path
from squall.controller.http import JSONResponse, error_response, new_transaction_id
from squall.errors import SquallError

log = logging.getLogger("squall.controller")

CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, DELETE, POST, PUT, HEAD, PATCH, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent, "
        b"X-Request-ID, X-Require-Whisk-Auth",
    ),
]
WEB_PREFIX = "/api/v1/web/"


class RequestMiddleware:
    """Assigns the transaction id, answers CORS preflight, adds headers to every answer,
    and turns a ``SquallError`` (or any crash) into OpenWhisk's ``{"error", "code"}``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        txid = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                txid = value.decode("latin-1")[:64]
                break
        txid = txid or new_transaction_id()
        scope["squall.txid"] = txid
        extra = [(b"x-request-id", txid.encode("latin-1"))]
        # Web actions answer OPTIONS and choose their CORS headers themselves (an action
        # with ``web-custom-options`` sets its own): see routes/web.py. So does the API
        # gateway, which runs web actions (routes/gateway.py).
        web = scope["path"].startswith(WEB_PREFIX) or is_gateway_path(scope["path"])
        if not web:
            extra.extend(CORS_HEADERS)

        if scope["method"] == "OPTIONS" and not web:
            await send({"type": "http.response.start", "status": 200, "headers": extra})
            await send({"type": "http.response.body", "body": b""})
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except SquallError as e:
            if started:
                return
            await error_response(Request(scope), e)(scope, receive, send_with_headers)
        except Exception:
            if started:
                # Starlette's error handler already answered 500 and logged it; it
                # re-raises only so that servers can log, which is done.
                return
            log.exception("unhandled error [txid %s]", txid)
            response = JSONResponse(
                {"error": "An internal error occurred.", "code": txid}, status_code=500
            )
            await response(scope, receive, send_with_headers)
