"""``/runtime/namespaces/{ns}/logForwarding``: Adobe I/O Runtime's log-forwarding API.

- ``GET`` answers the namespace's destination with its settings, secrets left out, and
  ``updated_at`` (:meth:`LogForwardingConfig.view`); a namespace that never set one has
  Adobe's default, ``{"adobe_io_runtime": {}}``: logs stay in the activation records only.
  ``aio rt:activation:logs`` asks this first, and reads the records' logs only then.
- ``PUT`` with ``{<destination>: {settings}}`` (as ``aio
  rt:namespace:log-forwarding:set:*`` sends it) stores the configuration, credentials
  encrypted by the store, and answers the view.
- ``GET …/errors`` answers ``{"configured_forwarder", "errors": [...]}``: this
  controller's recent failures to deliver the namespace's logs and the lines it dropped.

Authentication and namespace resolution are those of every namespace route (401 without
credentials, 403 for another namespace); bad bodies are 400 in OpenWhisk's error format.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller.core import caller
from squall.controller.http import JSONResponse, read_entity
from squall.entities.activation import now_ms
from squall.logforwarding.config import LogForwardingConfig

MAX_CONFIG_BYTES = 64 * 1024


async def log_forwarding(request: Request) -> Response:
    ctl, _, namespace = await caller(request)
    forwarder = ctl.log_forwarding
    if request.method == "PUT":
        body = await read_entity(request, MAX_CONFIG_BYTES)
        config = LogForwardingConfig.from_request(body, now_ms())
        await forwarder.set_config(namespace, config)
        return JSONResponse(config.view())
    return JSONResponse((await forwarder.config(namespace)).view())


async def log_forwarding_errors(request: Request) -> Response:
    ctl, _, namespace = await caller(request)
    config = await ctl.log_forwarding.config(namespace)
    errors = ctl.log_forwarding.errors(namespace)
    return JSONResponse({"configured_forwarder": config.destination, "errors": errors})


ROUTES = [
    Route("/runtime/namespaces/{namespace}/logForwarding", log_forwarding, methods=["GET", "PUT"]),
    Route(
        "/runtime/namespaces/{namespace}/logForwarding/errors",
        log_forwarding_errors,
        methods=["GET"],
    ),
]
