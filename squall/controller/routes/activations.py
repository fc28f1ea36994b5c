"""``/namespaces/{ns}/activations``: list with filters, count, get, logs, result."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller.core import caller
from squall.controller.http import JSONResponse, list_window, query_bool
from squall.entities.activation import rest_json, rest_response, summary_json
from squall.entities.names import is_valid_name
from squall.errors import BadRequest, NotFound
from squall.store.contracts import ActivationQuery

_ID_RE = re.compile(r"\A[0-9a-f]{32}\Z")
DOCS_WITH_COUNT = "The parameter 'docs' is not permitted with 'count'."


def check_activation_id(value: str) -> str:
    if len(value) != 32:
        raise BadRequest(f"Activation id length is {len(value)} but must be 32.")
    if not _ID_RE.match(value):
        raise BadRequest("The activation id is not valid.")
    return value


def _name_filter(request: Request) -> str | None:
    raw = request.query_params.get("name")
    if raw is None or raw == "":
        return None
    parts = raw.split("/")
    if len(parts) > 2 or not all(is_valid_name(p) for p in parts):
        raise BadRequest(f"Parameter may be a 'simple' name or 'package-name/simple' name: {raw}")
    return raw


def _epoch(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise BadRequest(f"Parameter is not a valid value for epoch seconds: {raw}")
    return value


async def list_activations(request: Request) -> Response:
    ctl, _, namespace = await caller(request)
    count = query_bool(request, "count")
    docs = query_bool(request, "docs")
    if count and docs:
        raise BadRequest(DOCS_WITH_COUNT)
    skip, limit = list_window(request, "activations")
    query = ActivationQuery(
        namespace=namespace,
        name=_name_filter(request),
        since=_epoch(request, "since"),
        upto=_epoch(request, "upto"),
        skip=skip,
        limit=limit,
    )
    if count:
        return JSONResponse({"activations": await ctl.activations.count(query)})
    records = await ctl.activations.list(query)
    return JSONResponse([rest_json(r) if docs else summary_json(r) for r in records])


async def get_activation(request: Request) -> Response:
    ctl, _, namespace = await caller(request)
    activation_id = check_activation_id(request.path_params["id"])
    record = await ctl.activations.get(namespace, activation_id)
    part = request.path_params.get("part")
    if part not in (None, "logs", "result"):
        raise NotFound()
    if part == "logs":
        return JSONResponse({"logs": record.logs})
    if part == "result":
        return JSONResponse(rest_response(record.response))
    return JSONResponse(rest_json(record))


ROUTES = [
    Route("/api/v1/namespaces/{namespace}/activations", list_activations, methods=["GET"]),
    Route("/api/v1/namespaces/{namespace}/activations/{id}", get_activation, methods=["GET"]),
    Route(
        "/api/v1/namespaces/{namespace}/activations/{id}/{part:str}",
        get_activation,
        methods=["GET"],
    ),
]
