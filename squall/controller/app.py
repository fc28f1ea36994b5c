"""The ASGI application: the OpenWhisk REST API over a wired :class:`Controller`."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from squall.controller.core import Controller
from squall.controller.fastpath import InvokeFastPath
from squall.controller.http import error_response, transaction_id
from squall.controller.middleware import RequestMiddleware
from squall.controller.routes import (
    actions,
    activations,
    apimgmt,
    gateway,
    invokers,
    logforwarding,
    meta,
    packages,
    rules,
    triggers,
    web,
)
from squall.controller.ui import routes as ui_routes
from squall.errors import (
    ContainerError,
    MethodNotAllowed,
    NotFound,
    ProviderError,
    ServiceUnavailable,
    SquallError,
)
from squall.metrics.exposition import MetricFamilies, metrics_routes

# OpenWhisk's words for a service that cannot answer now.
UNAVAILABLE = (
    "The server is currently unavailable (because it is overloaded or down for maintenance)."
)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in OpenWhisk's error format."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    error: SquallError = (
        NotFound() if status == 404 else MethodNotAllowed() if status == 405 else SquallError()
    )
    return error_response(request, error)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error [txid %s]", transaction_id(request), exc_info=exc)
    return error_response(request, SquallError())


async def _squall_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SquallError)
    if isinstance(exc, ProviderError) and not isinstance(exc, ContainerError):
        # The store or the bus is unreachable: a transient 503 the caller may retry (never
        # a 401 or a 404 made up from a failed lookup); the details stay in the log.
        log.warning("provider unavailable [txid %s]: %s", transaction_id(request), exc.message)
        return error_response(request, ServiceUnavailable(UNAVAILABLE))
    return error_response(request, exc)


log = logging.getLogger("squall.controller")


def create_app(controller: Controller, *metrics: MetricFamilies) -> ASGIApp:
    """The REST API, and ``GET /metrics`` with the controller's families and ``metrics``
    (standalone adds its invoker's)."""
    app = Starlette(
        routes=[
            *metrics_routes(controller.metrics, *metrics),
            *meta.ROUTES,
            *actions.ROUTES,
            *packages.ROUTES,
            *triggers.ROUTES,
            *rules.ROUTES,
            *activations.ROUTES,
            *apimgmt.ROUTES,  # before web.ROUTES: it is a path under /api/v1/web/
            *web.ROUTES,
            *logforwarding.ROUTES,
            *invokers.ROUTES,
            *ui_routes(controller.settings, [controller.metrics, *metrics]),
            *gateway.ROUTES,  # last: /api/<tenant>/<path> would match anything under /api/
        ],
        exception_handlers={
            HTTPException: _http_exception,
            SquallError: _squall_error,
            Exception: _internal_error,
        },
    )
    app.router.redirect_slashes = False
    app.state.controller = controller
    # The invoke route skips Starlette's routing and exception layers (fastpath.py).
    return RequestMiddleware(InvokeFastPath(app, _squall_error, _internal_error))
