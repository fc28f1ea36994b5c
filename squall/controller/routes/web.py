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

:func:`serve` is written against :class:`~squall.controller.http.WebHttpRequest` and
answers a :class:`WebReply` (status, the header lines as they go on the wire, body), so
that Starlette's route, the API gateway, and the hot-route protocol
(``controller/hotroute.py``), which serves web actions without ASGI, run the same code and
send the same bytes. The headers are the ones a Starlette ``Response`` would carry
(``content-length`` unless the status has no content, then ``content-type``, then the
rest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller import web
from squall.controller.auth import Identity
from squall.controller.core import Controller, controller_of
from squall.controller.entitlement import check_final, resolve_action
from squall.controller.http import (
    ACTIVATION_ID_HEADER,
    JSON_MEDIA_TYPE,
    WebHttpRequest,
    error_body,
    read_body,
    transaction_id,
)
from squall.controller.invocation import InvocationRequest
from squall.controller.web_response import NOT_READY, WebAnswer, answer
from squall.entities.action import Action
from squall.entities.names import EntityPath
from squall.errors import NotFound, SquallError, Unauthorized

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

_ACTIVATION_ID = ACTIVATION_ID_HEADER.encode("latin-1")
_JSON = JSON_MEDIA_TYPE.encode("latin-1")
# Statuses whose answers carry no content, hence no content-length (Starlette's rule).
_NO_CONTENT = frozenset({204, 304})

Headers = list[tuple[bytes, bytes]]


class WebReply(NamedTuple):
    """A web action's answer: status, header lines (lower-case names, in the order they
    are sent, before the transaction id), body (empty for HEAD)."""

    status: int
    headers: Headers
    body: bytes


async def _exported_action(ctl: Controller, target: web.WebTarget) -> tuple[Identity, Action]:
    """The owner's identity and the web-exported action, or 404 for anything missing (an
    unknown namespace, package or action, or an action that is not exported)."""
    try:
        owner = await ctl.authenticator.owner(target.namespace)
    except NotFound:
        raise NotFound() from None
    path = EntityPath(target.namespace, target.package, target.name)
    action = await resolve_action(ctl, owner.namespace, path)
    if not web.is_exported(action):
        raise NotFound()
    return owner, action


def _headers(request: WebHttpRequest, extra: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request's headers (lowercase names), those named in ``extra`` replaced."""
    replaced = {name.lower() for name, _ in extra}
    own = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    return [kv for kv in own if kv[0] not in replaced] + [(k.lower(), v) for k, v in extra]


def _framed(status: int, body: bytes, content_type: bytes | None) -> Headers:
    """``content-length`` and ``content-type`` as a Starlette ``Response`` puts them."""
    headers: Headers = []
    if status >= 200 and status not in _NO_CONTENT:
        headers.append((b"content-length", b"%d" % len(body)))
    if content_type is not None:
        headers.append((b"content-type", content_type))
    return headers


def _json(status: int, body: bytes) -> tuple[int, Headers, bytes]:
    return status, _framed(status, body, _JSON), body


def _rendered(result: WebAnswer) -> tuple[int, Headers, bytes]:
    content_type = None if result.content_type is None else result.content_type.encode()
    headers = _framed(result.status, result.body, content_type)
    # An action's header values are sent as UTF-8 bytes (HTTP treats them as opaque).
    headers.extend((k.lower().encode(), v.encode()) for k, v in result.headers)
    return result.status, headers, result.body


def _finish(
    method: str,
    answered: tuple[int, Headers, bytes],
    cors: list[tuple[str, str]],
    activation_id: str | None,
) -> WebReply:
    status, headers, body = answered
    own = {name for name, _ in headers}
    for name, value in cors:
        key = name.lower().encode()
        if key not in own:
            headers.append((key, value.encode("latin-1")))
    if activation_id is not None:
        headers.append((_ACTIVATION_ID, activation_id.encode()))
    # HEAD: the same headers (content-length included) as a GET, no content.
    return WebReply(status, headers, b"" if method == "HEAD" else body)


async def serve(
    ctl: Controller,
    request: WebHttpRequest,
    txid: str,
    query_string: str,
    target: web.WebTarget | None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> WebReply:
    """Run the web action ``target`` (None: 404) for ``request`` (its raw query string
    ``query_string``, latin-1), as if ``extra_headers`` were among its headers: the
    answer of ``/api/v1/web/...``, and of the API gateway."""
    method = request.method
    cors = web.cors_headers(request.headers)
    activation_id: str | None = None
    try:
        if target is None:
            raise NotFound()
        owner, action = await _exported_action(ctl, target)
        if web.has_custom_options(action):
            cors = []
        elif method == "OPTIONS":
            return _finish(method, (200, _framed(200, b"", None), b""), cors, None)
        headers = _headers(request, extra_headers)
        # The first of repeated headers, as Starlette's ``request.headers.get`` reads it.
        header_map = dict(reversed(headers))
        user = await ctl.authenticator.identify(header_map.get("authorization"))
        user_ns = user.namespace if user is not None else None
        # A custom OPTIONS handler runs even without credentials: browsers never send
        # them on a CORS preflight.
        if method != "OPTIONS" and not web.authorized(action, header_map, user_ns):
            raise Unauthorized()
        body = await read_body(request, ctl.settings.max_request_bytes)
        web_request = web.WebRequest(method, headers, target.rest, query_string, body)
        arguments, named = web.arguments(web_request, raw=web.is_raw(action), user=user_ns)
        check_final(action, dict.fromkeys(named))
        await ctl.throttles.admit_invoke(owner.namespace)
        invocation = await ctl.activator.invoke(
            InvocationRequest(
                identity=owner,
                action=action,
                payload=arguments,
                blocking=True,
                wait_ms=ctl.settings.max_blocking_wait_ms,
                txid=txid,
            )
        )
        activation_id = invocation.activation_id
        if invocation.record is None:
            # Still running after the longest blocking wait: it runs on, OpenWhisk answers 202.
            answered = _json(202, orjson.dumps({"error": NOT_READY, "code": txid}))
        else:
            answered = _rendered(answer(target.extension, invocation.record.response))
    except SquallError as e:
        answered = _json(e.status, error_body(e, txid))
    return _finish(method, answered, cors, activation_id)


class ReplyResponse(Response):
    """A :class:`WebReply` as Starlette's response, its headers exactly as given."""

    def __init__(self, reply: WebReply) -> None:
        self.status_code = reply.status
        self.body = reply.body
        self.raw_headers = reply.headers
        self.background = None


async def serve_request(
    request: Request, target: web.WebTarget | None, extra_headers: Sequence[tuple[str, str]] = ()
) -> Response:
    """:func:`serve` for a Starlette request (the ASGI path)."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    reply = await serve(
        controller_of(request), request, transaction_id(request), query, target, extra_headers
    )
    return ReplyResponse(reply)


async def web_action(request: Request) -> Response:
    p = request.path_params
    return await serve_request(request, web.parse_target(p["namespace"], p["package"], p["rest"]))


ROUTES = [
    Route(
        "/api/v1/web/{namespace}/{package}/{rest:path}",
        web_action,
        methods=ALL_METHODS,
    ),
]
