"""``/runtime/namespaces/{ns}/logForwarding``: Adobe I/O Runtime's log-forwarding API, read-only.

Adobe's ``aio rt:activation:logs`` asks this endpoint first and only reads the logs from
the activation records when the namespace forwards nowhere else. Squall keeps the logs in
its own records and forwards them nowhere, so it answers what Adobe I/O Runtime answers
for a namespace with the default configuration: the ``adobe_io_runtime`` destination with
no settings, and no forwarding errors. Authentication and namespace resolution are those
of every namespace route (401 without credentials, 403 for another namespace).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller.core import caller
from squall.controller.http import JSONResponse

#: The destination meaning "the platform's own activation records".
DEFAULT_DESTINATION = "adobe_io_runtime"


async def log_forwarding(request: Request) -> Response:
    await caller(request)
    return JSONResponse({DEFAULT_DESTINATION: {}})


async def log_forwarding_errors(request: Request) -> Response:
    await caller(request)
    return JSONResponse({"configured_forwarder": DEFAULT_DESTINATION, "errors": []})


ROUTES = [
    Route("/runtime/namespaces/{namespace}/logForwarding", log_forwarding, methods=["GET"]),
    Route(
        "/runtime/namespaces/{namespace}/logForwarding/errors",
        log_forwarding_errors,
        methods=["GET"],
    ),
]
