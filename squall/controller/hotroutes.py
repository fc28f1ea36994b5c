"""The routes the hot-route protocol (hotroute.py) serves itself, and their answers.

Two routes, each with the ONE handler its ASGI route runs:

- the invoke, ``POST /api/v1/namespaces/{namespace}/actions/{rest}``
  (``routes.actions.invoke``);
- web actions, ``/api/v1/web/{namespace}/{package}/{rest}`` in every method the route
  allows, but the API management actions under it (``routes.web.serve``).

Each is matched as ``fastpath.py`` (the ASGI path) matches it, and each answer is made
into a :class:`HotAnswer`: the header lines that come before the transaction id and
after it, in the order and spelling the ASGI path sends (``RequestMiddleware`` puts
``x-request-id`` after the application's headers, and the CORS headers after that on
every route but web actions), and the body. A handler's exception is rendered as the
application's exception handler renders it (``http.error_for``).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple

from uvicorn.protocols.http.httptools_impl import HEADER_VALUE_RE

from squall.controller import web
from squall.controller.core import Controller
from squall.controller.fastpath import APIMGMT_PATH, INVOKE_PATH, WEB_METHODS, WEB_PATH
from squall.controller.http import ACTIVATION_ID_HEADER, error_body, error_for
from squall.controller.middleware import CORS_HEADERS
from squall.controller.routes.actions import invoke
from squall.controller.routes.web import serve

_ACTIVATION_ID = ACTIVATION_ID_HEADER.encode("latin-1") + b": "
_JSON_TAIL = b"content-type: application/json\r\n"
# What RequestMiddleware adds after the transaction id, as one block.
_CORS_BLOCK = b"".join(name + b": " + value + b"\r\n" for name, value in CORS_HEADERS)


class HotHeaders(dict[str, str]):
    """A request's headers by name (the first of repeated ones, as Starlette's
    ``Headers.get``), with ``raw``: uvicorn's list as received (``http.RawHeaders``)."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        # Reversed, so the first of a repeated header wins. A comprehension, not a
        # generator handed to dict(): one call per request instead of one per header.
        super().__init__(
            {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(raw)}
        )
        self.raw = raw


class HotRequest:
    """A complete request as ``http.HttpRequest`` and ``http.WebHttpRequest`` (see there
    for the lookups' rules)."""

    __slots__ = ("_query_params", "body", "headers", "method", "query_string")

    def __init__(self, method: str, headers: HotHeaders, query: bytes) -> None:
        self.method = method
        self.headers = headers
        self.body = bytearray()
        self.query_string = query
        self._query_params: dict[str, str] | None = None

    @property
    def query_params(self) -> dict[str, str]:
        # Starlette's QueryParams: parse_qsl over latin-1, blank values kept, last wins.
        if self._query_params is None:
            text = self.query_string.decode("latin-1")
            if "%" in text or "+" in text:
                self._query_params = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
            else:
                self._query_params = _plain_query(text)
        return self._query_params

    async def stream(self) -> AsyncIterator[bytes]:
        yield bytes(self.body)


def _plain_query(text: str) -> dict[str, str]:
    """``parse_qsl(text, keep_blank_values=True)`` as a dict, for a query with nothing to
    unquote (no ``%``, no ``+``): ``?blocking=true&result=true`` without urllib's eleven
    calls. Same rules: ``&`` separates, empty fields are skipped, a field without ``=`` is
    a blank value, the first ``=`` splits, the last of a repeated name wins."""
    params: dict[str, str] = {}
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            params[name] = value
    return params


class HotAnswer(NamedTuple):
    """An answer as header lines around ``x-request-id`` and a body.

    ``close``: the answer's own headers say ``connection: close`` (uvicorn then closes
    after it and adds no such line of its own). ``sendable`` is False when a header value
    has a character uvicorn refuses: it then closes the connection unanswered.
    """

    status: int
    head: bytes
    tail: bytes
    body: bytes
    close: bool = False
    sendable: bool = True


Handler = Callable[[Controller, HotRequest, str, tuple[str, ...]], Awaitable[HotAnswer]]


async def _invoke(ctl: Controller, request: HotRequest, txid: str, p: tuple[str, ...]) -> HotAnswer:
    try:
        answer = await invoke(ctl, request, txid, p[0], p[1])
    except Exception as exc:
        error = error_for(exc, txid)
        return _json_error(error.status, error_body(error, txid), _CORS_BLOCK)
    body = answer.body
    head = _ACTIVATION_ID + answer.activation_id.encode("latin-1") + b"\r\n"
    head += b"content-length: %d\r\n" % len(body) + _JSON_TAIL
    return HotAnswer(answer.status, head, _CORS_BLOCK, body)


def _json_error(status: int, body: bytes, tail: bytes) -> HotAnswer:
    return HotAnswer(status, b"content-length: %d\r\n" % len(body) + _JSON_TAIL, tail, body)


async def _web(ctl: Controller, request: HotRequest, txid: str, p: tuple[str, ...]) -> HotAnswer:
    query = request.query_string.decode("latin-1")
    try:
        reply = await serve(ctl, request, txid, query, web.parse_target(p[0], p[1], p[2]))
    except Exception as exc:
        error = error_for(exc, txid)
        return _json_error(error.status, error_body(error, txid), b"")
    lines = []
    close = False
    sendable = True
    for name, value in reply.headers:
        if HEADER_VALUE_RE.search(value):
            sendable = False
        elif name == b"connection" and b"close" in (t.strip() for t in value.lower().split(b",")):
            close = True
        lines.append(name + b": " + value + b"\r\n")
    return HotAnswer(reply.status, b"".join(lines), b"", reply.body, close, sendable)


class HotRoute:
    """The routes the protocol serves itself, with their controller."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def match(self, method: str, path: str) -> tuple[Handler, tuple[str, ...]] | None:
        """The handler and path parameters for ``method`` and ``path`` (decoded), as
        ``fastpath.py`` routes them; None for a request the ASGI application serves."""
        if method == "POST":
            found = INVOKE_PATH.match(path)
            if found is not None:
                return _invoke, (found["namespace"], found["rest"])
        if method in WEB_METHODS and path.startswith("/api/v1/web/"):
            found = WEB_PATH.match(path)
            if found is not None and APIMGMT_PATH.match(path) is None:
                return _web, (found["namespace"], found["package"], found["rest"])
        return None
