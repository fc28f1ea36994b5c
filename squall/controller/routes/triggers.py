"""``/namespaces/{ns}/triggers``: CRUD (firing comes with the composition issue)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller.core import caller
from squall.controller.http import JSONResponse, list_window, query_bool, read_json
from squall.entities.names import EntityPath, check_name
from squall.entities.trigger import Trigger
from squall.errors import Conflict, NotFound

MAX_TRIGGER_BYTES = 2 * 1024 * 1024 + 64 * 1024


async def list_triggers(request: Request) -> Response:
    ctl, _, namespace = await caller(request)
    if query_bool(request, "count"):
        return JSONResponse({"triggers": await ctl.catalog.count(Trigger, namespace)})
    skip, limit = list_window(request, "triggers")
    triggers = await ctl.catalog.list(Trigger, namespace, skip=skip, limit=limit)
    return JSONResponse([t.summary_json() for t in triggers])


async def trigger_entity(request: Request) -> Response:
    ctl, _, namespace = await caller(request)
    path = EntityPath(namespace, "", check_name(request.path_params["name"]))
    if request.method == "GET":
        return JSONResponse((await ctl.catalog.get(Trigger, path)).to_json())
    if request.method == "DELETE":
        trigger = await ctl.catalog.get(Trigger, path)
        await ctl.catalog.delete(trigger)
        return JSONResponse(trigger.to_json())
    body = await read_json(request, MAX_TRIGGER_BYTES, empty={})
    try:
        existing = await ctl.catalog.get(Trigger, path)
    except NotFound:
        existing = None
    if existing is None:
        stored = await ctl.catalog.put(Trigger.create(path, body), create=True)
    elif not query_bool(request, "overwrite"):
        raise Conflict("resource already exists")
    else:
        stored = await ctl.catalog.put(existing.update(body), create=False)
    return JSONResponse(stored.to_json())


ROUTES = [
    Route("/api/v1/namespaces/{namespace}/triggers", list_triggers, methods=["GET"]),
    Route(
        "/api/v1/namespaces/{namespace}/triggers/{name}",
        trigger_entity,
        methods=["GET", "PUT", "DELETE"],
    ),
]
