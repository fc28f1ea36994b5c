"""The ASGI application: the OpenWhisk REST API over a wired :class:`Controller`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from squall.controller.core import Controller
from squall.controller.fastpath import InvokeFastPath
from squall.controller.http import error_for, error_response, transaction_id
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
from squall.errors import MethodNotAllowed, NotFound, SquallError
from squall.metrics.exposition import MetricFamilies, metrics_routes


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in OpenWhisk's error format."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    error: SquallError = (
        NotFound() if status == 404 else MethodNotAllowed() if status == 405 else SquallError()
    )
    return error_response(request, error)


async def _handler_error(request: Request, exc: Exception) -> Response:
    """A handler's ``SquallError`` or crash, as the hot-route protocol answers it too."""
    return error_response(request, error_for(exc, transaction_id(request)))


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
            SquallError: _handler_error,
            Exception: _handler_error,
        },
    )
    app.router.redirect_slashes = False
    app.state.controller = controller
    # The invoke route skips Starlette's routing and exception layers (fastpath.py).
    return RequestMiddleware(InvokeFastPath(app, _handler_error, _handler_error))
