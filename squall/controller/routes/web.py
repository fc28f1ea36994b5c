"""``/api/v1/web/{namespace}/{package|default}/{action}[.ext][/path]``: web actions.

Any HTTP method. The action runs as its owner (the namespace in the path), blocking; the
caller needs no credentials unless the action's ``require-whisk-auth`` asks for them. The
order of checks is OpenWhisk's: the action must exist and be web-exported (else 404),
then OPTIONS is answered with CORS headers unless the action has ``web-custom-options``,
then ``require-whisk-auth`` (401), then the body and arguments (413, 400), then throttles
(429) and the invocation.

Every answer of a web action carries OpenWhisk's default CORS headers, except those of a
``web-custom-options`` action (it sets its own) and headers the action's ``.http`` result
already set. Answers after an invocation carry ``x-openwhisk-activation-id``. Errors are
OpenWhisk's ``{"error", "code"}``; the middleware adds only ``X-Request-ID`` to this path.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller import web
from squall.controller.auth import Identity
from squall.controller.core import Controller, controller_of
from squall.controller.entitlement import check_final, resolve_action
from squall.controller.http import (
    ACTIVATION_ID_HEADER,
    JSONResponse,
    error_response,
    read_body,
    transaction_id,
)
from squall.controller.invocation import InvocationRequest
from squall.controller.web_response import NOT_READY, WebAnswer, answer
from squall.entities.action import Action
from squall.entities.names import EntityPath
from squall.errors import NotFound, SquallError, Unauthorized

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


async def _exported_action(ctl: Controller, target: web.WebTarget) -> tuple[Identity, Action]:
    """The owner's identity and the web-exported action, or 404 for anything missing (an
    unknown namespace, package or action, or an action that is not exported)."""
    try:
        subject = await ctl.auth_store.get_subject(target.namespace)
    except NotFound:
        raise NotFound() from None
    owner = Identity(subject.namespace, subject.uuid)
    path = EntityPath(target.namespace, target.package, target.name)
    action = await resolve_action(ctl, owner.namespace, path)
    if not web.is_exported(action):
        raise NotFound()
    return owner, action


def _web_request(
    request: Request, headers: list[tuple[str, str]], body: bytes, path: str
) -> web.WebRequest:
    return web.WebRequest(
        method=request.method,
        headers=headers,
        path=path,
        query_string=request.scope.get("query_string", b"").decode("latin-1"),
        body=body,
    )


def _headers(request: Request, extra: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request's headers (lowercase names), those named in ``extra`` replaced."""
    replaced = {name.lower() for name, _ in extra}
    own = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    return [kv for kv in own if kv[0] not in replaced] + [(k.lower(), v) for k, v in extra]


def _render(request: Request, result: WebAnswer) -> Response:
    response = Response(result.body, status_code=result.status)
    if result.content_type is not None:
        response.raw_headers.append((b"content-type", result.content_type.encode()))
    # An action's header values are sent as UTF-8 bytes (HTTP treats them as opaque).
    response.raw_headers.extend((k.lower().encode(), v.encode()) for k, v in result.headers)
    if request.method == "HEAD":
        # Same headers (Content-Length included) as a GET, no content.
        response.body = b""
    return response


def _finish(response: Response, cors: list[tuple[str, str]], activation_id: str | None) -> Response:
    own = {name for name, _ in response.raw_headers}
    for name, value in cors:
        key = name.lower().encode()
        if key not in own:
            response.raw_headers.append((key, value.encode("latin-1")))
    if activation_id is not None:
        response.raw_headers.append((ACTIVATION_ID_HEADER.encode(), activation_id.encode()))
    return response


async def web_action(request: Request) -> Response:
    p = request.path_params
    return await serve(request, web.parse_target(p["namespace"], p["package"], p["rest"]))


async def serve(
    request: Request, target: web.WebTarget | None, extra_headers: Sequence[tuple[str, str]] = ()
) -> Response:
    """Run the web action ``target`` (None: 404) for ``request``, as if ``extra_headers``
    were among its headers: the answer of ``/api/v1/web/...``, and of the API gateway."""
    ctl = controller_of(request)
    cors = web.cors_headers(request.headers)
    activation_id: str | None = None
    try:
        if target is None:
            raise NotFound()
        owner, action = await _exported_action(ctl, target)
        if web.has_custom_options(action):
            cors = []
        elif request.method == "OPTIONS":
            return _finish(Response(status_code=200), cors, None)
        headers = _headers(request, extra_headers)
        # The first of repeated headers, as Starlette's ``request.headers.get`` reads it.
        header_map = dict(reversed(headers))
        user = await ctl.authenticator.identify(header_map.get("authorization"))
        user_ns = user.namespace if user is not None else None
        # A custom OPTIONS handler runs even without credentials: browsers never send
        # them on a CORS preflight.
        if request.method != "OPTIONS" and not web.authorized(action, header_map, user_ns):
            raise Unauthorized()
        body = await read_body(request, ctl.settings.max_request_bytes)
        arguments, named = web.arguments(
            _web_request(request, headers, body, target.rest), raw=web.is_raw(action), user=user_ns
        )
        check_final(action, dict.fromkeys(named))
        await ctl.throttles.admit_invoke(owner.namespace)
        invocation = await ctl.activator.invoke(
            InvocationRequest(
                identity=owner,
                action=action,
                payload=arguments,
                blocking=True,
                wait_ms=ctl.settings.max_blocking_wait_ms,
                txid=transaction_id(request),
            )
        )
        activation_id = invocation.activation_id
        if invocation.record is None:
            # Still running after the longest blocking wait: it runs on, OpenWhisk answers 202.
            response: Response = JSONResponse(
                {"error": NOT_READY, "code": transaction_id(request)}, status_code=202
            )
        else:
            outcome = answer(target.extension, invocation.record.response)
            response = _render(request, outcome)
    except SquallError as e:
        response = error_response(request, e)
    return _finish(response, cors, activation_id)


ROUTES = [
    Route(
        "/api/v1/web/{namespace}/{package}/{rest:path}",
        web_action,
        methods=ALL_METHODS,
    ),
]
