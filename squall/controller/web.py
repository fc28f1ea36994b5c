"""Web actions, request side: which action a ``/api/v1/web/...`` path names, whether the
caller may run it, the CORS headers it gets, and the arguments it receives.

Behaviour and messages follow OpenWhisk's ``WebActions.scala``:

- The path is ``{namespace}/{package|default}/{action}[.ext][/rest]``; the extension is one
  of ``.http .json .html .svg .text`` (``.http`` when absent) and ``/rest`` becomes
  ``__ow_path`` (no projection of the result: OpenWhisk dropped it).
- Arguments: ``__ow_method`` (lowercase), ``__ow_headers`` (lowercase names), ``__ow_path``,
  ``__ow_user`` when the caller sent valid credentials; then the query parameters, then the
  body (a JSON object or a form is merged, anything else arrives as ``__ow_body``, base64 for
  binary content). With ``raw-http`` the query and body arrive only as ``__ow_query`` and
  ``__ow_body`` strings (an empty body is ``""``; JSON is base64, as in OpenWhisk).
- Without ``raw-http`` a request may not name a reserved ``__ow_`` argument (400, OpenWhisk's
  message); the names it sets are returned so that ``final`` parameters can be checked.

Every function here is pure (no I/O), so the route module only does the wiring.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from squall.controller.http import HeaderLookup
from squall.entities import params
from squall.entities.action import Action
from squall.entities.names import is_valid_name
from squall.errors import BadRequest

DEFAULT_PACKAGE = "default"
EXTENSIONS = (".http", ".json", ".html", ".svg", ".text")
DEFAULT_EXTENSION = ".http"

METHOD, HEADERS, PATH, USER, QUERY, BODY = (
    "__ow_method",
    "__ow_headers",
    "__ow_path",
    "__ow_user",
    "__ow_query",
    "__ow_body",
)
RESERVED = frozenset({METHOD, HEADERS, PATH, USER, QUERY, BODY})

WEB_EXPORT = "web-export"
RAW_HTTP = "raw-http"
CUSTOM_OPTIONS = "web-custom-options"
REQUIRE_WHISK_AUTH = "require-whisk-auth"
REQUIRE_WHISK_AUTH_HEADER = "x-require-whisk-auth"

PARAMETERS_NOT_ALLOWED = (
    "Request defines parameters that are not allowed (e.g., reserved properties)."
)

# OpenWhisk's CORS answer for web actions (CorsSettings.WebActions).
CORS_ALLOW_METHODS = "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"
CORS_ALLOW_HEADERS = "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"

# Media types that are text although not ``text/*``; everything else without a charset is
# binary (akka-http's rule, which decides base64 in OpenWhisk).
_TEXTUAL = frozenset(
    {
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/xml",
        "application/xhtml+xml",
        "application/x-www-form-urlencoded",
        "application/graphql",
    }
)
_NEVER_TEXT = ("image/", "audio/", "video/", "font/")
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class WebTarget:
    """The action a web path names, the extension asked for, and the rest of the path."""

    namespace: str
    package: str  # "" for the default package
    name: str
    extension: str
    rest: str  # becomes __ow_path: "" or "/..."


def parse_target(namespace: str, package: str, rest: str) -> WebTarget | None:
    """The target of ``/api/v1/web/{namespace}/{package}/{rest}``, or None if the names are
    not entity names (OpenWhisk's route does not match those: 404).

    The first segment of ``rest`` is the action name with an optional known extension;
    an unknown extension stays part of the name (OpenWhisk then finds no such action).
    """
    segment, slash, tail = rest.partition("/")
    name, extension = segment, DEFAULT_EXTENSION
    for ext in EXTENSIONS:
        if segment.endswith(ext):
            name, extension = segment[: -len(ext)], ext
            break
    if not (is_valid_name(namespace) and is_valid_name(name)):
        return None
    if package != DEFAULT_PACKAGE and not is_valid_name(package):
        return None
    pkg = "" if package == DEFAULT_PACKAGE else package
    return WebTarget(namespace, pkg, name, extension, slash + tail)


def _annotated_true(action: Action, key: str) -> bool:
    return params.get(action.annotations, key) is True


def is_exported(action: Action) -> bool:
    return _annotated_true(action, WEB_EXPORT)


def is_raw(action: Action) -> bool:
    return _annotated_true(action, RAW_HTTP)


def has_custom_options(action: Action) -> bool:
    return _annotated_true(action, CUSTOM_OPTIONS)


def authorized(action: Action, headers: Mapping[str, str], user: str | None) -> bool:
    """Whether ``require-whisk-auth`` lets this request run the action.

    Absent or ``false``: anyone. ``true``: any caller with valid credentials (``user``).
    A string or number: header ``X-Require-Whisk-Auth`` must equal it, compared in constant
    time. Any other value fails closed, as in OpenWhisk. (OpenWhisk also refuses ``false``;
    the CLIs remove the annotation instead of writing ``false``, so a ``false`` here can only
    mean "not required".)
    """
    annotations = {str(kv["key"]): kv.get("value") for kv in action.annotations}
    if REQUIRE_WHISK_AUTH not in annotations:
        return True
    required = annotations[REQUIRE_WHISK_AUTH]
    if required is False:
        return True
    if required is True:
        return user is not None
    if isinstance(required, str | int | float):
        given = headers.get(REQUIRE_WHISK_AUTH_HEADER)
        if given is None:
            return False
        # compare_digest: no timing leak of how much of the secret matched.
        return hmac.compare_digest(given.encode(), str(required).encode())
    return False


def cors_headers(request_headers: HeaderLookup) -> list[tuple[str, str]]:
    """OpenWhisk's default CORS headers; a preflight's ``Access-Control-Request-Headers``
    is echoed as the allowed headers."""
    requested = request_headers.get("access-control-request-headers")
    return [
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Methods", CORS_ALLOW_METHODS),
        ("Access-Control-Allow-Headers", requested or CORS_ALLOW_HEADERS),
    ]


# -- media types (shared with web_response) ----------------------------------------------


def media_type(content_type: str) -> str:
    """``"Text/HTML; charset=utf-8"`` → ``"text/html"``."""
    return content_type.partition(";")[0].strip().lower()


def is_json_family(mtype: str) -> bool:
    return mtype == "application/json" or mtype.endswith("+json")


def is_textual(content_type: str) -> bool:
    """Whether content of this type is text (sent as a string) rather than binary (base64)."""
    mtype = media_type(content_type)
    if mtype.startswith("text/") or mtype in _TEXTUAL:
        return True
    if mtype.startswith(_NEVER_TEXT):
        return False
    if mtype.endswith("+xml"):
        return True
    return "charset=" in content_type.lower()


# -- arguments -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebRequest:
    """What a web action sees of an HTTP request."""

    method: str
    headers: list[tuple[str, str]]  # lowercase names, in request order
    path: str
    query_string: str
    body: bytes

    def header_map(self) -> dict[str, str]:
        """Headers by name; repeated headers are joined with ``", "`` (RFC 9110 §5.3)."""
        out: dict[str, str] = {}
        for name, value in self.headers:
            out[name] = f"{out[name]}, {value}" if name in out else value
        return out

    @property
    def content_type(self) -> str:
        # No content type on a body means octet-stream (binary), as in HTTP and akka.
        return self.header_map().get("content-type") or "application/octet-stream"


def _query(query_string: str) -> dict[str, str]:
    # The last of repeated names wins, as OpenWhisk's query.toMap does.
    return dict(parse_qsl(query_string, keep_blank_values=True))


def _opaque(body: bytes, content_type: str) -> str:
    """A body as a string: base64 unless it is text (JSON counts as binary, for legacy)."""
    if is_json_family(media_type(content_type)) or not is_textual(content_type):
        return base64.b64encode(body).decode("ascii")
    return body.decode("utf-8", errors="replace")


def _parsed_body(request: WebRequest) -> tuple[dict[str, Any], bool]:
    """``(arguments from the body, whether they are fields to merge)``.

    JSON objects and forms give fields; any other JSON value or content gives
    ``{"__ow_body": value}``. An empty body gives nothing.
    """
    body = request.body
    if not body:
        return {}, True
    content_type = request.content_type
    mtype = media_type(content_type)
    if is_json_family(mtype):
        if not body.strip():
            return {}, True
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise BadRequest(f"The request content was malformed:\n{e}") from e
        if isinstance(value, dict):
            return value, True
        return {BODY: value}, False
    if mtype == FORM:
        return _query(body.decode("utf-8", errors="replace")), True
    return {BODY: _opaque(body, content_type)}, False


def arguments(
    request: WebRequest, *, raw: bool, user: str | None
) -> tuple[dict[str, Any], frozenset[str]]:
    """The action's arguments for ``request`` (the action's parameters go under them), and
    the names the request itself set as query or body fields (none with ``raw``), which a
    ``final`` action's defined parameters may not be among.

    Raises 400 with OpenWhisk's message when, without ``raw``, a query or body field names
    a reserved ``__ow_`` argument; 400 for malformed JSON.
    """
    context: dict[str, Any] = {
        METHOD: request.method.lower(),
        HEADERS: request.header_map(),
        PATH: request.path,
    }
    if user is not None:
        context[USER] = user
    if raw:
        context[QUERY] = request.query_string
        context[BODY] = _opaque(request.body, request.content_type) if request.body else ""
        return context, frozenset()
    query = _query(request.query_string)
    body, fields = _parsed_body(request)
    named = frozenset(query) | (frozenset(body) if fields else frozenset())
    if named & RESERVED:
        raise BadRequest(PARAMETERS_NOT_ALLOWED)
    # Precedence, low to high: request context, query, body (OpenWhisk's order).
    return {**context, **query, **body}, named
