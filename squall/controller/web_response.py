"""Web actions, response side: an activation's outcome as the HTTP answer its extension
asks for, with OpenWhisk's rules and messages (``WebActions.scala``).

- Success: the result is rendered; application error: its ``error`` value is rendered the
  same way (so ``{error: {statusCode: 400, body: ...}}`` answers 400 through ``.http``);
  developer or internal error: 400 "There was an error processing your request.".
- ``.json``: an object or array, as JSON. ``.html`` / ``.svg``: the string under ``body``,
  else under ``html`` / ``svg``. ``.text``: the value under ``body``, else ``text`` (404
  when neither exists); strings as they are, other JSON values printed.
- ``.http``: ``{statusCode, headers, body}``, each optional. An empty body (absent, null,
  ``""``) answers 204 unless ``statusCode`` says otherwise. A string body is sent as is
  (default ``text/html``) or base64-decoded when ``Content-Type`` is binary (``image/png``);
  any other JSON body is serialized as ``application/json`` (or a ``+json`` type). Header
  values may be strings, numbers, booleans or arrays of them (one header per element).

A rendering failure raises a ``SquallError`` carrying OpenWhisk's status and message.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import orjson

from squall.controller.web import is_json_family, is_textual, media_type
from squall.entities.activation import APPLICATION_ERROR, SUCCESS, ActivationResponse
from squall.errors import BadRequest, NotFound

PROPERTY_NOT_FOUND = "Response does not include requested property."
UNKNOWN_CONTENT_TYPE = "Response did not specify a known content-type."
CONTENT_TYPE_MISMATCH = "Response type in header did not match generated content type."
ERROR_PROCESSING = "There was an error processing your request."
NOT_READY = "Response not yet ready."

HTML = "text/html; charset=UTF-8"
TEXT = "text/plain; charset=UTF-8"
SVG = "image/svg+xml"
JSON = "application/json"

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CONTENT_TYPE = re.compile(rf"\A{_TOKEN}/{_TOKEN}\s*(;.*)?\Z")
_HEADER_NAME = re.compile(rf"\A{_TOKEN}\Z")
# The server computes these from the body; an action's own value would corrupt framing.
_FRAMING = frozenset({"content-length", "transfer-encoding"})
# Statuses whose answers never carry a body (RFC 9110).
_NO_BODY = frozenset({204, 304})


def invalid_media(mtype: str) -> str:
    return f"Response is not valid '{mtype}'."


@dataclass(frozen=True, slots=True)
class WebAnswer:
    """An HTTP answer: status, body, its content type, and the action's own headers."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


def answer(extension: str, response: ActivationResponse) -> WebAnswer:
    """The answer for an activation ``response`` as ``extension``."""
    code = response.status_code
    result = response.result
    if code == SUCCESS:
        value: Any = {} if result is None else result
    elif code == APPLICATION_ERROR:
        if not isinstance(result, dict) or "error" not in result:
            raise NotFound(PROPERTY_NOT_FOUND)
        value = result["error"]
    else:
        raise BadRequest(ERROR_PROCESSING)
    return _RENDERERS[extension](value)


# -- .json .html .svg .text ------------------------------------------------------------------


def _pretty(value: Any) -> bytes:
    # OpenWhisk prints web JSON with two-space indentation.
    return orjson.dumps(value, option=orjson.OPT_INDENT_2)


def _as_json(value: Any) -> WebAnswer:
    if not isinstance(value, dict | list):
        raise BadRequest(invalid_media(JSON))
    return WebAnswer(200, _pretty(value), JSON)


def _markup(value: Any, field: str, content_type: str) -> WebAnswer:
    if isinstance(value, dict):
        value = value["body"] if "body" in value else value.get(field)
    if not isinstance(value, str):
        raise BadRequest(invalid_media(media_type(content_type)))
    return WebAnswer(200, value.encode(), content_type)


def _as_html(value: Any) -> WebAnswer:
    return _markup(value, "html", HTML)


def _as_svg(value: Any) -> WebAnswer:
    return _markup(value, "svg", SVG)


def _as_text(value: Any) -> WebAnswer:
    if isinstance(value, dict):
        if "body" in value:
            value = value["body"]
        elif "text" in value:
            value = value["text"]
        else:
            raise NotFound(PROPERTY_NOT_FOUND)
    if isinstance(value, dict | list):
        text = _pretty(value).decode()
    elif isinstance(value, str):
        text = value
    else:
        text = _scalar(value)
    return WebAnswer(200, text.encode(), TEXT)


def _scalar(value: Any) -> str:
    """A JSON scalar as OpenWhisk prints it: ``true``, ``null``, ``42``, ``1.5``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- .http ---------------------------------------------------------------------------------


def _not_http() -> BadRequest:
    return BadRequest(invalid_media("message/http"))


def _status(result: dict[str, Any]) -> int | None:
    if "statusCode" not in result:
        return None
    raw = result["statusCode"]
    code: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        code = raw
    elif (isinstance(raw, float) and raw.is_integer()) or (
        isinstance(raw, str) and re.fullmatch(r"[0-9]{3}", raw)
    ):
        code = int(raw)
    # 1xx are interim answers, never a final one.
    if code is None or not 200 <= code <= 599:
        raise _not_http()
    return code


def _header_values(value: Any) -> list[str]:
    if isinstance(value, list):
        return [v for item in value for v in _header_values(item)]
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = _scalar(value)
    else:
        raise _not_http()
    # CR or LF would let a result inject headers or split the response.
    if any(c in text for c in "\r\n\0"):
        raise _not_http()
    return [text]


def _headers(result: dict[str, Any]) -> list[tuple[str, str]]:
    if "headers" not in result:
        return []
    raw = result["headers"]
    if not isinstance(raw, dict):
        raise _not_http()
    out: list[tuple[str, str]] = []
    for name, value in raw.items():
        if not _HEADER_NAME.match(name):
            raise _not_http()
        out.extend((name, v) for v in _header_values(value))
    return out


def _b64decode(text: str) -> bytes | None:
    stripped = text.strip()
    try:
        # Java's decoder (OpenWhisk's) does not require padding; Python's does.
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _string_body(body: str, content_type: str | None) -> tuple[bytes, str]:
    if content_type is None:
        return body.encode(), HTML
    if not _CONTENT_TYPE.match(content_type):
        raise BadRequest(UNKNOWN_CONTENT_TYPE)
    mtype = media_type(content_type)
    if is_json_family(mtype):
        # JSON text passes as is; anything else is taken for base64 of JSON (OpenWhisk's
        # legacy form), and sent as is when it is not base64 either.
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            decoded = _b64decode(body)
            if decoded is not None:
                return decoded, content_type
        return body.encode(), content_type
    if is_textual(content_type):
        if mtype.startswith("text/") and "charset=" not in content_type.lower():
            content_type = f"{content_type}; charset=UTF-8"
        return body.encode(), content_type
    decoded = _b64decode(body)
    if decoded is None:
        raise BadRequest(CONTENT_TYPE_MISMATCH)
    return decoded, content_type


def _json_body(body: Any, content_type: str | None) -> tuple[bytes, str]:
    content_type = content_type or JSON
    mtype = media_type(content_type)
    if not _CONTENT_TYPE.match(content_type) or not is_json_family(mtype):
        raise BadRequest(CONTENT_TYPE_MISMATCH)
    return _pretty(body), mtype


def _as_http(value: Any) -> WebAnswer:
    if not isinstance(value, dict):
        raise _not_http()
    headers = _headers(value)
    status = _status(value)
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    kept = tuple((k, v) for k, v in headers if k.lower() not in _FRAMING | {"content-type"})
    body = value.get("body")
    if body is None or body == "":
        # The action's content type is dropped: there is no content to describe.
        return WebAnswer(204 if status is None else status, headers=kept)
    if isinstance(body, str):
        data, content_type = _string_body(body, content_type)
    else:
        data, content_type = _json_body(body, content_type)
    status = 200 if status is None else status
    if status in _NO_BODY:
        return WebAnswer(status, headers=kept)
    return WebAnswer(status, data, content_type, kept)


_RENDERERS = {
    ".http": _as_http,
    ".json": _as_json,
    ".html": _as_html,
    ".svg": _as_svg,
    ".text": _as_text,
}
