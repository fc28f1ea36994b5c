"""``/invokers``: the invokers this controller knows and their health (for operators).

As OpenWhisk's controller answers it: ``{"invoker0": "up", ...}`` with ``up`` (healthy),
``unhealthy``, ``unresponsive`` or ``down`` (offline); ``/invokers/healthy/count`` gives
the number of healthy ones; ``?details=true`` adds memory figures. Like OpenWhisk's, these
routes need no credentials: they reveal no user data, and a deployment keeps them off its
public front (``deploy/nginx`` forwards only ``/api/``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller.core import controller_of
from squall.controller.http import JSONResponse

OPENWHISK_STATE = {"healthy": "up", "offline": "down"}


async def invokers(request: Request) -> Response:
    states = controller_of(request).invokers()
    if request.query_params.get("details") == "true":
        return JSONResponse(states)
    return JSONResponse(
        {s["id"]: OPENWHISK_STATE.get(str(s["status"]), s["status"]) for s in states}
    )


async def healthy_count(request: Request) -> Response:
    states = controller_of(request).invokers()
    return JSONResponse(sum(1 for s in states if s["status"] == "healthy"))


ROUTES = [
    Route("/invokers", invokers, methods=["GET"]),
    Route("/invokers/healthy/count", healthy_count, methods=["GET"]),
]
