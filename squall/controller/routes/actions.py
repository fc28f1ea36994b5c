"""``/namespaces/{ns}/actions``: CRUD, listing (also per package) and invocation.

The invoke (:func:`invoke`) is written against :class:`~squall.controller.http.HttpRequest`
and answers an :class:`InvokeAnswer`, so that Starlette's route and the hot-route
protocol (``controller/hotroute.py``), which serves it without ASGI, run the same code
and send the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NamedTuple

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller.core import Controller, caller, controller_of, reader
from squall.controller.entitlement import check_final, readable_package, resolve_action
from squall.controller.http import (
    ACTIVATION_ID_HEADER,
    JSON_MEDIA_TYPE,
    HttpRequest,
    JSONResponse,
    list_window,
    query_bool,
    query_flag,
    read_entity,
    read_json,
    transaction_id,
)
from squall.controller.invocation import InvocationRequest
from squall.controller.routes.common import find, list_collection, require_overwrite
from squall.controller.sequences import check_sequence
from squall.controller.throttle import ALLOWED_KINDS
from squall.entities.action import Action
from squall.entities.activation import SUCCESS, WHISK_ERROR, Activation, rest_json
from squall.entities.names import EntityPath, check_name
from squall.entities.package import Package
from squall.errors import BadRequest, Forbidden, NotFound

MAX_ENTITY_BYTES = 50 * 1024 * 1024  # code (48 MB) plus the rest of the document
BINDING_NOT_ALLOWED = "Operation not permitted on package binding."


def kind_not_allowed(kind: str) -> str:
    return f"The supplied authentication is not authorized to access actions of kind '{kind}'."


def _split(namespace: str, rest: str) -> tuple[EntityPath | None, str | None]:
    """``name`` / ``pkg/name`` → an entity path; ``pkg/`` → (None, pkg) to list a package."""
    parts = rest.split("/")
    if len(parts) == 2 and parts[1] == "":
        return None, check_name(parts[0])
    if len(parts) == 1:
        return EntityPath(namespace, "", check_name(parts[0])), None
    if len(parts) == 2:
        return EntityPath(namespace, check_name(parts[0]), check_name(parts[1])), None
    raise NotFound()


async def list_actions(request: Request) -> Response:
    ctl, _, namespace = await caller(request)
    return await _list(ctl, request, namespace, None)


async def _list(ctl: Controller, request: Request, namespace: str, package: str | None) -> Response:
    if query_bool(request, "count"):
        return JSONResponse(
            {"actions": await ctl.catalog.count(Action, namespace, package=package)}
        )
    skip, limit = list_window(request, "actions")
    actions = await ctl.catalog.list(Action, namespace, package=package, skip=skip, limit=limit)
    return JSONResponse([a.summary_json() for a in actions])


async def action_entity(request: Request) -> Response:
    if request.method == "POST":
        params = request.path_params
        ctl, txid = controller_of(request), transaction_id(request)
        return _response(await invoke(ctl, request, txid, params["namespace"], params["rest"]))
    # Another namespace's actions may be read and invoked inside its published packages
    # only; resolve_action and readable_package check that (403 either way).
    ctl, identity, namespace = await reader(request)
    # HEAD is a GET without its body (Starlette adds it to the route's GET; the server
    # drops the body), as for any GET route in OpenWhisk's HTTP server: it reads the
    # action, never invokes it.
    reading = request.method in ("GET", "HEAD")
    if namespace != identity.namespace and not reading:
        raise Forbidden()
    path, package = _split(namespace, request.path_params["rest"])
    if path is None:
        if not reading:
            raise NotFound()
        source = EntityPath(namespace, "", package or "")
        await readable_package(ctl, identity.namespace, source)
        return await list_collection(ctl, request, Action, namespace, package)
    if reading:
        action = await resolve_action(ctl, identity.namespace, path, invoking=False)
        shown = ctl.parameters_for(action.path.namespace, identity.namespace, action.parameters)
        action = replace(action, parameters=shown)
        return JSONResponse(action.to_json(code=query_bool(request, "code", True)))
    if request.method == "PUT":
        return await _put(ctl, request, path)
    # DELETE: the route allows no other method.
    action = await ctl.catalog.get(Action, path)
    await ctl.catalog.delete(action)
    return JSONResponse(action.to_json())


def _response(answer: InvokeAnswer) -> Response:
    return Response(answer.body, answer.status, answer.headers(), media_type=JSON_MEDIA_TYPE)


async def _put(ctl: Controller, request: Request, path: EntityPath) -> Response:
    body = await read_entity(request, MAX_ENTITY_BYTES)
    if path.package:
        package = await ctl.catalog.get(Package, EntityPath(path.namespace, "", path.package))
        if package.binding is not None:
            raise BadRequest(BINDING_NOT_ALLOWED)
    existing = await find(ctl.catalog, Action, path)
    if existing is None:
        action = Action.create(
            path, body, require_api_key_annotation=ctl.settings.require_api_key_annotation
        )
    else:
        require_overwrite(request)
        action = existing.update(body)
    if existing is None or (isinstance(body, dict) and body.get("exec") is not None):
        await _check_kind(ctl, path.namespace, action.exec.kind)
    await check_sequence(ctl, action, body)
    stored = await ctl.catalog.put(action, create=existing is None)
    return JSONResponse(stored.to_json())


async def _check_kind(ctl: Controller, namespace: str, kind: str) -> None:
    """403 unless the namespace may use ``kind`` (its ``allowedKinds`` limit, set with
    ``squall admin limits set``; absent or empty allows every kind, as in OpenWhisk).
    Read from the store, not the throttles' cache: a change applies to the next PUT."""
    allowed = (await ctl.auth_store.get_limits(namespace)).get(ALLOWED_KINDS)
    if isinstance(allowed, list) and allowed and kind not in allowed:
        raise Forbidden(kind_not_allowed(kind))


def _wait_ms(query: Mapping[str, str], maximum: int) -> int:
    raw = query.get("timeout")
    if raw is None:
        return maximum
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value <= 0 or value > maximum:
        raise BadRequest(f"Timeout must be number of milliseconds up to {maximum}.")
    return value


def status_for(record: Activation) -> int:
    code = record.response.code
    return 200 if code == SUCCESS else 500 if code == WHISK_ERROR else 502


class InvokeAnswer(NamedTuple):
    """An invoke's answer: status, the JSON body's bytes, the activation id (header)."""

    status: int
    body: bytes
    activation_id: str

    def headers(self) -> dict[str, str]:
        return {ACTIVATION_ID_HEADER: self.activation_id}


async def invoke(
    ctl: Controller, request: HttpRequest, txid: str, namespace: str, rest: str
) -> InvokeAnswer:
    """``POST /api/v1/namespaces/{namespace}/actions/{rest}``: invoke an action.

    Raises ``SquallError`` for OpenWhisk's error answers (``http.error_for`` renders it);
    the checks run in OpenWhisk's order: authentication, the path, the query, the body.
    """
    identity = await ctl.authenticator.authenticate(request)
    path, _ = _split(identity.namespace if namespace == "_" else namespace, rest)
    if path is None:
        raise NotFound()
    return await _invoke(ctl, request, identity, path, txid)


async def _invoke(
    ctl: Controller, request: HttpRequest, identity: Any, path: EntityPath, txid: str
) -> InvokeAnswer:
    query = request.query_params  # read once: a property of the hot request
    blocking = query_flag(query, "blocking")
    result_only = query_flag(query, "result")
    wait_ms = _wait_ms(query, ctl.settings.max_blocking_wait_ms)
    payload = await read_json(request, ctl.settings.max_request_bytes, empty={})
    if not isinstance(payload, dict):
        raise BadRequest("The request content was malformed:\nexpected a JSON object.")
    action = await resolve_action(ctl, identity.namespace, path)
    check_final(action, payload)
    await ctl.throttles.admit_invoke(identity.namespace)
    invocation = await ctl.activator.invoke(
        InvocationRequest(
            identity=identity,
            action=action,
            payload=payload,
            blocking=blocking,
            wait_ms=wait_ms,
            txid=txid,
        )
    )
    activation_id = invocation.activation_id
    record = invocation.record
    if record is None:
        return InvokeAnswer(202, orjson.dumps({"activationId": activation_id}), activation_id)
    result = record.response.result
    body = ({} if result is None else result) if result_only else rest_json(record)
    return InvokeAnswer(status_for(record), orjson.dumps(body), activation_id)


ROUTES = [
    Route("/api/v1/namespaces/{namespace}/actions", list_actions, methods=["GET"]),
    Route(
        "/api/v1/namespaces/{namespace}/actions/{rest:path}",
        action_entity,
        methods=["GET", "PUT", "DELETE", "POST"],
    ),
]
