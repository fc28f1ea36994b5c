"""A cluster invoker's own small HTTP face: ``/ping`` (its id, containers, pid and start
token: ``squall cluster up`` checks both) and
``/metrics`` (its Prometheus families). Standalone serves its invoker's families on the
controller's ``/metrics`` instead."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from squall.config import Settings
from squall.invoker.service import Invoker
from squall.metrics.exposition import metrics_routes


def invoker_app(invoker: Invoker, settings: Settings) -> Starlette:
    async def ping(request: Request) -> Response:
        pool = invoker.pool
        return JSONResponse(
            {
                "invoker": invoker.id,
                "userMemoryMb": pool.capacity_mb,
                "usedMb": pool.used_mb,
                "containers": len(pool.containers()),
                "activations": invoker.taken,
                # This process and its start (``squall cluster up`` checks both).
                "pid": os.getpid(),
                "start": settings.start_token,
            }
        )

    return Starlette(
        routes=[Route("/ping", ping, methods=["GET"]), *metrics_routes(invoker.metrics)]
    )
