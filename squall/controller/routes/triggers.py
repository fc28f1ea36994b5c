"""``/namespaces/{ns}/triggers``: CRUD, and fire (``POST``; see ``controller/triggers.py``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller.core import caller
from squall.controller.http import (
    ACTIVATION_ID_HEADER,
    JSONResponse,
    read_entity,
    read_json,
    transaction_id,
)
from squall.controller.routes.common import find, list_collection, require_overwrite
from squall.controller.triggers import fire_trigger
from squall.entities import params
from squall.entities.names import EntityPath, check_name, parse_fqn
from squall.entities.trigger import Trigger
from squall.errors import BadRequest

MAX_TRIGGER_BYTES = 2 * 1024 * 1024 + 64 * 1024
FEED_ANNOTATION = "feed"
FEED_NOT_VALID = "Feed name is not valid"


async def list_triggers(request: Request) -> Response:
    ctl, _, namespace = await caller(request)
    return await list_collection(ctl, request, Trigger, namespace)


async def trigger_entity(request: Request) -> Response:
    ctl, identity, namespace = await caller(request)
    path = EntityPath(namespace, "", check_name(request.path_params["name"]))
    if request.method == "POST":
        payload = await read_json(request, ctl.settings.max_request_bytes, empty={})
        if payload is None:  # a JSON null is no payload, as in OpenWhisk
            payload = {}
        if not isinstance(payload, dict):
            raise BadRequest("The request content was malformed:\nexpected a JSON object.")
        activation_id = await fire_trigger(
            ctl, identity, path, payload, txid=transaction_id(request)
        )
        if activation_id is None:
            return Response(status_code=204)
        headers = {ACTIVATION_ID_HEADER: activation_id}
        return JSONResponse({"activationId": activation_id}, 202, headers)
    if request.method == "GET":
        return JSONResponse((await ctl.catalog.get(Trigger, path)).to_json())
    if request.method == "DELETE":
        trigger = await ctl.catalog.get(Trigger, path)
        await ctl.catalog.delete(trigger)
        return JSONResponse(trigger.to_json())
    body = await read_entity(request, MAX_TRIGGER_BYTES)
    existing = await find(ctl.catalog, Trigger, path)
    if existing is None:
        trigger = Trigger.create(path, body)
        _check_feed(trigger)
        stored = await ctl.catalog.put(trigger, create=True)
    else:
        require_overwrite(request)
        stored = await ctl.catalog.put(existing.update(body), create=False)
    return JSONResponse(stored.to_json())


def _check_feed(trigger: Trigger) -> None:
    """A ``feed`` annotation must name an entity (checked on create, as in OpenWhisk;
    the client, not the server, invokes the feed action)."""
    feed = params.get(trigger.annotations, FEED_ANNOTATION)
    if feed is None:
        return
    try:
        if not isinstance(feed, str):
            raise BadRequest(FEED_NOT_VALID)
        parse_fqn(feed, trigger.path.namespace)
    except BadRequest:
        raise BadRequest(FEED_NOT_VALID) from None


ROUTES = [
    Route("/api/v1/namespaces/{namespace}/triggers", list_triggers, methods=["GET"]),
    Route(
        "/api/v1/namespaces/{namespace}/triggers/{name}",
        trigger_entity,
        methods=["GET", "PUT", "DELETE", "POST"],
    ),
]
