"""``/namespaces/{ns}/triggers``: CRUD (firing comes with the composition issue)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller.core import caller
from squall.controller.http import JSONResponse, read_json
from squall.controller.routes.common import find, list_collection, require_overwrite
from squall.entities.names import EntityPath, check_name
from squall.entities.trigger import Trigger

MAX_TRIGGER_BYTES = 2 * 1024 * 1024 + 64 * 1024


async def list_triggers(request: Request) -> Response:
    ctl, _, namespace = await caller(request)
    return await list_collection(ctl, request, Trigger, namespace)


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
    existing = await find(ctl.catalog, Trigger, path)
    if existing is None:
        stored = await ctl.catalog.put(Trigger.create(path, body), create=True)
    else:
        require_overwrite(request)
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
