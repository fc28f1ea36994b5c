"""HTTP plumbing shared by the routes: JSON responses, bodies, query parameters, errors.

:class:`HttpRequest` is the part of a request the invoke route reads,
:class:`WebHttpRequest` the part the web action route reads. Starlette's ``Request`` has
both, and so has the hot-route protocol's own request (hotroute.py), so the helpers here
that take them serve both with one implementation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response

from squall.errors import (
    BadRequest,
    ContainerError,
    PayloadTooLarge,
    ProviderError,
    ServiceUnavailable,
    SquallError,
    UnsupportedMediaType,
)

log = logging.getLogger("squall.controller")

TXID_HEADER = "x-request-id"
ACTIVATION_ID_HEADER = "x-openwhisk-activation-id"
JSON_MEDIA_TYPE = "application/json"


class HttpRequest(Protocol):
    """What a route handler written for both servers reads of a request.

    - ``headers.get(name)`` takes a lower-case name and gives the first such header's
      value (latin-1), as Starlette's ``Headers`` does.
    - ``query_params.get(name)`` gives the last value of that name (``parse_qsl`` with
      blank values kept, latin-1), as Starlette's ``QueryParams`` does.
    - ``stream()`` yields the body in chunks, once; it may end with an empty chunk.
    """

    @property
    def method(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def query_params(self) -> Mapping[str, str]: ...

    def stream(self) -> AsyncIterator[bytes]: ...


class HeaderLookup(Protocol):
    """``get(name)``: the first value of a header (lower-case name), as in HttpRequest."""

    def get(self, key: str, /) -> str | None: ...


class RawHeaders(HeaderLookup, Protocol):
    """Also ``raw``: every header as received, in order, names lower-cased (uvicorn's
    list, which Starlette's ``Headers.raw`` is)."""

    @property
    def raw(self) -> list[tuple[bytes, bytes]]: ...


class BodyRequest(Protocol):
    """What :func:`read_body` reads of a request."""

    @property
    def headers(self) -> HeaderLookup: ...

    def stream(self) -> AsyncIterator[bytes]: ...


class WebHttpRequest(Protocol):
    """What the web action route reads of a request: the method, the headers with their
    raw list (a web action sees all of them), the body."""

    @property
    def method(self) -> str: ...

    @property
    def headers(self) -> RawHeaders: ...

    def stream(self) -> AsyncIterator[bytes]: ...


# OpenWhisk's words for a service that cannot answer now.
UNAVAILABLE = (
    "The server is currently unavailable (because it is overloaded or down for maintenance)."
)


def error_for(exc: Exception, txid: str) -> SquallError:
    """The error a handler's exception is answered with, by either server.

    A ``SquallError`` as itself, except a provider failure (the store or the bus is
    unreachable): a transient 503 the caller may retry, never a 401 or a 404 made up from
    a failed lookup, with the details only in the log. Anything else is logged and
    answered as OpenWhisk's internal error (500).
    """
    if isinstance(exc, SquallError):
        if isinstance(exc, ProviderError) and not isinstance(exc, ContainerError):
            log.warning("provider unavailable [txid %s]: %s", txid, exc.message)
            return ServiceUnavailable(UNAVAILABLE)
        return exc
    log.error("unhandled error [txid %s]", txid, exc_info=exc)
    return SquallError()


def error_body(error: SquallError, txid: str) -> bytes:
    """OpenWhisk's error document: ``{"error": <message>, "code": <transaction id>}``."""
    return orjson.dumps({"error": error.message, "code": txid})


def new_transaction_id() -> str:
    # ``secrets.token_hex(16)`` is this, through three Python frames (every request
    # without its own id).
    return os.urandom(16).hex()


def transaction_id(request: Request) -> str:
    """The transaction id the middleware assigned (or reused from ``X-Request-ID``)."""
    txid = request.scope.get("squall.txid")
    return txid if isinstance(txid, str) else new_transaction_id()


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(request: Request, error: SquallError) -> Response:
    body = error_body(error, transaction_id(request))
    return Response(body, error.status, media_type=JSON_MEDIA_TYPE)


async def read_body(request: BodyRequest, limit: int) -> bytes:
    """The request body, refusing anything over ``limit`` bytes with OpenWhisk's 413."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge.of(int(declared), limit)
    whole = getattr(request, "body", None)
    if type(whole) is bytearray:
        # The hot route's request (``hotroutes.HotRequest``) holds its whole body: read
        # it as it is, not through ``stream`` — an async generator costs the loop's hooks
        # and a weak set's entry, and a dozen calls, per request.
        if len(whole) > limit:
            raise PayloadTooLarge.of(len(whole), limit)
        return bytes(whole)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge.of(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: HttpRequest, limit: int, *, empty: Any = None) -> Any:
    """Parse the body as JSON; an empty body gives ``empty``; bad JSON → 400."""
    body = await read_body(request, limit)
    if not body.strip():
        return empty
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"The request content was malformed:\n{e}") from e


def _content_type(request: Request, body: bytes) -> str | None:
    """The request's content type as pekko-http names it: media type lower-cased, a
    charset upper-cased; a body without the header is ``application/octet-stream``;
    None for no header and no body."""
    raw = request.headers.get("content-type")
    if raw is None:
        return "application/octet-stream" if body else None
    media, *parameters = (part.strip() for part in raw.split(";"))
    rendered = media.lower()
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').upper()
            rendered += f"; charset={charset}"
    return rendered


def _end_of_input(text: str) -> str:
    """spray-json's message for a body with no JSON value in it (only whitespace)."""
    line = text.count("\n") + 1
    last = text.rsplit("\n", 1)[-1]
    return (
        f"Unexpected end-of-input at input index {len(text)} (line {line}, position "
        f"{len(last) + 1}), expected JSON Value:\n{last}\n{' ' * len(last)}^\n"
    )


async def read_entity(request: Request, limit: int) -> Any:
    """The body of an entity PUT, taken as OpenWhisk's spray-json unmarshaller takes it.

    - A content type other than ``application/json`` (any charset) is 415 before the
      body is looked at; a body sent without one counts as ``application/octet-stream``.
    - An empty body (with the JSON type or no type at all) is not ``{}``: it is 400,
      "The request content was malformed", with spray-json's parser message.
    - Otherwise as :func:`read_json`.
    """
    body = await read_body(request, limit)
    content_type = _content_type(request, body)
    if content_type is not None and content_type.split(";")[0] != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"The request's Content-Type [{content_type}] is not supported. "
            f"Expected:\n{JSON_MEDIA_TYPE}"
        )
    if not body.strip():
        text = body.decode("utf-8", errors="replace")
        raise BadRequest(f"The request content was malformed:\n{_end_of_input(text)}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"The request content was malformed:\n{e}") from e


def query_bool(request: HttpRequest, name: str, default: bool = False) -> bool:
    return query_flag(request.query_params, name, default)


def query_flag(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """``query_bool`` over query parameters already read (a route reading several)."""
    raw = query.get(name)
    if raw is None:
        return default
    # ``true`` as written by nearly every client first: two calls less per flag read.
    return raw == "true" or raw.strip().lower() == "true"


def query_int(request: Request, name: str, collection: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"The value '{raw}' is not an integer for {collection}.") from None


MAX_LIST_LIMIT = 200
DEFAULT_LIST_LIMIT = 30


def list_window(request: Request, collection: str) -> tuple[int, int]:
    """``(skip, limit)`` with OpenWhisk's rules: limit 30 by default, 0 means 200."""
    skip = query_int(request, "skip", collection) or 0
    if skip < 0:
        raise BadRequest(f"The value '{skip}' is not greater than or equal to 0 for {collection}.")
    limit = query_int(request, "limit", collection)
    if limit is None:
        limit = DEFAULT_LIST_LIMIT
    if limit < 0 or limit > MAX_LIST_LIMIT:
        raise BadRequest(
            f"The value '{limit}' is not in the range of 0 to {MAX_LIST_LIMIT} for {collection}."
        )
    return skip, limit or MAX_LIST_LIMIT
