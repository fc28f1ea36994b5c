"""``/``, ``/api/v1``, the API description, namespaces and namespace limits, and
``/ping``: the process that answers (controller id, pid, and the start token that
``squall cluster up`` gave it, so its supervisor knows its own member answers)."""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall import __version__
from squall.config import Settings
from squall.controller.core import caller, controller_of
from squall.controller.http import JSONResponse
from squall.controller.throttle import ALLOWED_KINDS, STORE_ACTIVATIONS
from squall.entities import limits as L
from squall.entities.manifest import runtimes_json
from squall.errors import NotFound


def system_limits(settings: Settings) -> dict[str, Any]:
    return {
        "actions_per_minute": settings.invocations_per_minute,
        "triggers_per_minute": settings.fires_per_minute,
        "concurrent_actions": settings.concurrent_invocations,
        "sequence_length": settings.sequence_max_length,
        "min_action_duration": L.MIN_TIMEOUT_MS,
        "max_action_duration": L.MAX_TIMEOUT_MS,
        "min_action_memory": L.MIN_MEMORY_MB * 1024 * 1024,
        "max_action_memory": L.MAX_MEMORY_MB * 1024 * 1024,
        "min_action_logsize": L.MIN_LOGS_MB * 1024 * 1024,
        "max_action_logsize": L.MAX_LOGS_MB * 1024 * 1024,
    }


async def root(request: Request) -> Response:
    settings = controller_of(request).settings
    return JSONResponse(
        {
            "description": "Squall: an OpenWhisk-compatible function-as-a-service platform",
            "api_paths": ["/api/v1"],
            "limits": system_limits(settings),
            "runtimes": runtimes_json(),
        }
    )


async def api_v1(request: Request) -> Response:
    return JSONResponse(
        {
            "description": "OpenWhisk API",
            "api_version": "1.0.0",
            "api_version_path": "v1",
            "build": __version__,
            "buildno": __version__,
            "swagger_paths": {"ui": "/docs", "api-docs": "/api-docs"},
        }
    )


_API_DOCS: bytes | None = None


async def api_docs(request: Request) -> Response:
    global _API_DOCS
    if _API_DOCS is None:
        _API_DOCS = resources.files("squall.controller").joinpath("apiv1swagger.json").read_bytes()
    return Response(_API_DOCS, media_type="application/json")


async def namespaces(request: Request) -> Response:
    _, identity, _ = await caller(request)
    return JSONResponse([identity.namespace])


async def namespace_limits(request: Request) -> Response:
    ctl, _, namespace = await caller(request)
    throttles = await ctl.throttles.limits(namespace)
    stored = await ctl.throttles.stored(namespace)
    # The non-throttle user limits appear only when set, as in OpenWhisk's UserLimits.
    extra = {k: stored[k] for k in (ALLOWED_KINDS, STORE_ACTIVATIONS) if k in stored}
    return JSONResponse(
        {
            **throttles,
            **extra,
            "minActionMemory": L.MIN_MEMORY_MB * 1024 * 1024,
            "maxActionMemory": L.MAX_MEMORY_MB * 1024 * 1024,
            "minActionLogs": L.MIN_LOGS_MB * 1024 * 1024,
            "maxActionLogs": L.MAX_LOGS_MB * 1024 * 1024,
            "minActionTimeout": L.MIN_TIMEOUT_MS,
            "maxActionTimeout": L.MAX_TIMEOUT_MS,
            "maxActionConcurrency": L.MAX_CONCURRENCY,
            "minActionConcurrency": L.MIN_CONCURRENCY,
        }
    )


async def ping(request: Request) -> Response:
    settings = controller_of(request).settings
    return JSONResponse(
        {"controller": settings.controller_id, "pid": os.getpid(), "start": settings.start_token}
    )


async def not_found(request: Request) -> Response:
    raise NotFound()


ROUTES = [
    Route("/", root, methods=["GET"]),
    Route("/ping", ping, methods=["GET"]),
    Route("/api/v1", api_v1, methods=["GET"]),
    Route("/api/v1/", api_v1, methods=["GET"]),
    Route("/api/v1/api-docs", api_docs, methods=["GET"]),
    Route("/api/v1/namespaces", namespaces, methods=["GET"]),
    Route("/api/v1/namespaces/{namespace}/limits", namespace_limits, methods=["GET"]),
]
