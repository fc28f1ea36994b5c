"""Helpers of the web action API tests: creating web actions and their URLs."""

from __future__ import annotations

from typing import Any

import httpx
from apisupport import GUEST, NS

WEB = "/api/v1/web"
ACTIVATION_HEADER = "x-openwhisk-activation-id"
ERROR_PROCESSING = "There was an error processing your request."
INVALID_AUTH = "The supplied authentication is invalid."
NOT_ALLOWED = "Request defines parameters that are not allowed (e.g., reserved properties)."
PROPERTY_NOT_FOUND = "Response does not include requested property."
RESERVED = ("__ow_method", "__ow_headers", "__ow_path", "__ow_user", "__ow_query", "__ow_body")
DEFAULT_CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH",
    "access-control-allow-headers": (
        "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
    ),
}

# Returns its arguments: what a web request turned into.
ECHO_JS = "function main(args) { return args; }\n"
# Returns its ``respond`` parameter: a result fixed when the action is created.
RESPOND_JS = "function main(args) { return args.respond; }\n"
# Answers as an HTTP response that echoes the arguments (every method, also OPTIONS).
HTTP_ECHO_JS = "function main(args) { return {statusCode: 200, body: args}; }\n"
THROW_JS = "function main() { throw new Error('boom'); }\n"


async def web_action(
    client: httpx.AsyncClient,
    name: str,
    code: str = ECHO_JS,
    *,
    export: Any = True,
    annotations: dict[str, Any] | None = None,
    parameters: dict[str, Any] | None = None,
    kind: str = "nodejs:default",
) -> None:
    """Create action ``name`` (``pkg/name`` inside a package) annotated ``web-export``
    (unless ``export`` is None) plus ``annotations``, with default ``parameters``."""
    anns = [] if export is None else [{"key": "web-export", "value": export}]
    anns += [{"key": k, "value": v} for k, v in (annotations or {}).items()]
    body = {
        "exec": {"kind": kind, "code": code},
        "annotations": anns,
        "parameters": [{"key": k, "value": v} for k, v in (parameters or {}).items()],
    }
    r = await client.put(f"{NS}/actions/{name}", json=body)
    assert r.status_code == 200, r.text


def url(name: str, ext: str = "", rest: str = "", *, namespace: str = GUEST) -> str:
    """The web URL of action ``name`` (``pkg/name`` → package ``pkg``, else ``default``)."""
    package, _, action = name.rpartition("/")
    return f"{WEB}/{namespace}/{package or 'default'}/{action}{ext}{rest}"


def args_without_headers(args: dict[str, Any]) -> dict[str, Any]:
    """An echoed argument object minus ``__ow_headers`` (whose content the client decides)."""
    return {k: v for k, v in args.items() if k != "__ow_headers"}
