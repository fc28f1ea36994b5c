"""The API gateway's swagger documents: what ``whisk.system/apimgmt/createApi`` is sent,
and the document it keeps and returns, with OpenWhisk's rules and messages (the
``core/routemgmt`` actions and their ``apigw-utils.js``).

- ``createApi`` gets ``apidoc``: either one endpoint (``gatewayBasePath``,
  ``gatewayPath``, ``gatewayMethod``, ``action``, optional ``pathParameters`` and
  ``apiName``) that is added to the API of that base path (created if missing), or a
  whole ``swagger`` document that replaces it. ``responsetype`` (default ``json``) is the
  web action extension the endpoint calls.
- The document is swagger 2.0: each operation has an ``operationId`` (the verb and the
  camel-cased path: ``getBooksIsbn``), its path ``parameters``, ``x-openwhisk``
  (``namespace``, ``package``, ``action``, ``url`` of the web action) and a default
  response; ``x-ibm-configuration`` holds the invocation of each operation (its
  ``target-url``, and the ``X-Require-Whisk-Auth`` value when the endpoint gave a
  ``secureKey``) and CORS (enabled by default).
- A relative path with parameters (``/books/{isbn}``) needs the ``http`` response type
  and a parameter definition for each of them.

Every function is pure; a request the rules refuse raises :class:`ApiDocError` with
OpenWhisk's message.
"""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import urlsplit

import orjson

RESPONSE_TYPES = ("json", "http", "html", "text", "svg")
DEFAULT_RESPONSE_TYPE = "json"
VERBS = ("get", "post", "put", "delete", "patch", "head", "options")
REQUIRE_WHISK_AUTH_VARIABLE = "message.headers.X-Require-Whisk-Auth"

_PATH_PARAMETER = re.compile(r"/\{([^/]+)\}/|/\{([^/]+)\}$")
_PARAMETER_NAMES = re.compile(r"\{([^/]+)\}")
_NOT_ID = re.compile(r"[^0-9a-z_-]", re.IGNORECASE)
_WORD = re.compile(r"\w\S*", re.ASCII)
_FQ_NAME = re.compile(r"/?([@ .\-\w]*)/?([@ .\-\w]*)/?([@ .\-\w]*)", re.ASCII)


class ApiDocError(ValueError):
    """A ``createApi``/``deleteApi`` request the rules refuse; ``message`` is OpenWhisk's."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _json_field(value: Any, field: str) -> dict[str, Any]:
    """An object sent as an object or as JSON text, with OpenWhisk's messages."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ApiDocError(f"{field} field cannot be parsed. Ensure it is valid JSON.") from None
    if not isinstance(value, dict):
        kind = "object" if value is None or isinstance(value, list) else _js_type(value)
        raise ApiDocError(
            f"{field} field is of type {kind} and should be a JSON object or a JSON string."
        )
    return value


def _js_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "object"


def parse_apidoc(message: dict[str, Any]) -> dict[str, Any]:
    """The ``apidoc`` of a ``createApi`` message, checked as OpenWhisk's ``validateArgs``
    does, with ``swagger`` parsed when present."""
    if not message.get("apidoc"):
        raise ApiDocError("apidoc is required.")
    doc = copy.deepcopy(_json_field(message["apidoc"], "apidoc"))
    if not doc.get("namespace"):
        raise ApiDocError("apidoc is missing the namespace field")
    if doc.get("swagger"):
        if doc.get("gatewayBasePath"):
            raise ApiDocError(
                "swagger and gatewayBasePath are mutually exclusive and cannot be specified"
                " together."
            )
        swagger = _json_field(doc["swagger"], "swagger")
        for field in ("basePath", "paths", "info"):
            if not swagger.get(field):
                raise ApiDocError(f"swagger is missing the {field} field.")
        doc["swagger"] = swagger
        return doc
    for field in ("gatewayBasePath", "gatewayPath", "gatewayMethod"):
        if not doc.get(field):
            raise ApiDocError(f"apidoc is missing the {field} field")
    action = doc.get("action")
    if not isinstance(action, dict) or not action:
        raise ApiDocError("apidoc is missing the action field.")
    for field in ("backendMethod", "backendUrl", "namespace", "name", "authkey"):
        if not action.get(field):
            raise ApiDocError(f"action is missing the {field} field.")
    if str(doc["gatewayMethod"]).lower() not in VERBS:
        raise ApiDocError(f"Invalid gatewayMethod: {doc['gatewayMethod']}")
    return doc


def base_path(doc: dict[str, Any]) -> str:
    swagger = doc.get("swagger")
    value = swagger["basePath"] if isinstance(swagger, dict) else doc["gatewayBasePath"]
    return str(value)


def update_namespace(doc: dict[str, Any], namespace: str) -> None:
    """The caller's namespace replaces the document's; the action's too when it was
    ``_`` or the document's own (an action of another namespace is kept)."""
    action = doc.get("action")
    if isinstance(action, dict) and action.get("namespace") in ("_", doc.get("namespace")):
        action["namespace"] = namespace
        url = str(action.get("backendUrl", ""))
        action["backendUrl"] = re.sub(r"/api/v1/web/[^/]+/", f"/api/v1/web/{namespace}/", url)
    doc["namespace"] = namespace


def base_swagger(base: str, api_name: str | None) -> dict[str, Any]:
    """An API with no paths yet, titled ``api_name`` (else its base path)."""
    return {
        "swagger": "2.0",
        "info": {"title": api_name or base, "version": "1.0.0"},
        "basePath": base,
        "paths": {},
        "x-ibm-configuration": {"assembly": {}, "cors": {"enabled": True}},
    }


def operation_id(operation: str, relpath: str) -> str:
    """``("get", "/books/{isbn}")`` → ``"getBooksIsbn"``: the verb, then each word of the
    path capitalised (``-`` and ``_`` stay inside a word)."""
    spaced = _NOT_ID.sub(" ", relpath)
    words = _WORD.sub(lambda m: m[0][:1].upper() + m[0][1:].lower(), spaced)
    return operation.lower() + re.sub(r"\s", "", words)


def _split_action_name(name: str) -> tuple[str, str]:
    """``(package, action)`` of ``action``, ``pkg/action`` or ``/ns/pkg/action``."""
    match = _FQ_NAME.match(name)
    parts = match.groups("") if match else ("", "", "")
    if parts[2]:
        return parts[1], parts[2]
    if parts[1]:
        return parts[0], parts[1]
    return "", parts[0]


def web_action_url(action: dict[str, Any], response_type: str, *, target: bool = False) -> str:
    """The web action URL an endpoint calls (``.../api/v1/web/ns/pkg/name.json``), on the
    host of the action's ``backendUrl``; the gateway's target URL of an ``http`` endpoint
    ends in ``$(request.path)``."""
    parts = urlsplit(str(action["backendUrl"]))
    package, name = _split_action_name(str(action["name"]))
    path = "$(request.path)" if target and response_type == "http" else ""
    return (
        f"{parts.scheme}://{parts.netloc}/api/v1/web/{action['namespace']}/"
        f"{package or 'default'}/{name}.{response_type}{path}"
    )


def _cases(swagger: dict[str, Any]) -> list[dict[str, Any]]:
    config = swagger.setdefault("x-ibm-configuration", {})
    assembly = config.setdefault("assembly", {})
    execute = assembly.setdefault("execute", [])
    if not execute:
        execute.append({})
    switch = execute[0].setdefault("operation-switch", {})
    cases: list[dict[str, Any]] = switch.setdefault("case", [])
    return cases


def add_endpoint(
    swagger: dict[str, Any], doc: dict[str, Any], response_type: str | None
) -> dict[str, Any]:
    """``swagger`` with the endpoint of ``doc`` added (replacing the same path and verb)."""
    response_type = response_type or DEFAULT_RESPONSE_TYPE
    if response_type not in RESPONSE_TYPES:
        raise ApiDocError(
            f"Invalid response type: {response_type}. Valid values are: "
            + ", ".join(RESPONSE_TYPES)
        )
    swagger = copy.deepcopy(swagger)
    operation = str(doc["gatewayMethod"]).lower()
    relpath = str(doc["gatewayPath"])
    op_id = operation_id(operation, relpath)
    action = doc["action"]
    package, name = _split_action_name(str(action["name"]))
    entry: dict[str, Any] = {"operationId": op_id}
    if doc.get("pathParameters") is not None:
        entry["parameters"] = doc["pathParameters"]
    entry["x-openwhisk"] = {
        "url": web_action_url(action, response_type),
        "namespace": action["namespace"],
        "package": package,
        "action": name,
    }
    entry["responses"] = {"default": {"description": "Default response"}}
    swagger.setdefault("paths", {}).setdefault(relpath, {})[operation] = entry
    cases = _cases(swagger)
    case: dict[str, Any] = next((c for c in cases if c.get("operations") == [op_id]), {})
    if not case:
        cases.append(case)
    case["operations"] = [op_id]
    execute: list[dict[str, Any]] = [
        {
            "invoke": {
                "target-url": web_action_url(action, response_type, target=True),
                "verb": "keep",
            }
        }
    ]
    if action.get("secureKey"):
        execute.append(
            {
                "set-variable": {
                    "actions": [{"set": REQUIRE_WHISK_AUTH_VARIABLE, "value": action["secureKey"]}]
                }
            }
        )
    case["execute"] = execute
    return swagger


def _drop_case(swagger: dict[str, Any], op_id: str) -> None:
    cases = _cases(swagger)
    cases[:] = [c for c in cases if c.get("operations", [None])[0] != op_id]


def remove_endpoint(swagger: dict[str, Any], relpath: str, operation: str | None) -> dict[str, Any]:
    """``swagger`` without ``relpath`` (all its verbs, or only ``operation``)."""
    swagger = copy.deepcopy(swagger)
    paths: dict[str, Any] = swagger.get("paths") or {}
    if not operation:
        if relpath not in paths:
            raise ApiDocError(f"path '{relpath}' does not exist in the API")
        for verb in paths[relpath]:
            _drop_case(swagger, operation_id(verb, relpath))
        del paths[relpath]
        return swagger
    operation = operation.lower()
    if operation not in (paths.get(relpath) or {}):
        raise ApiDocError(
            f"path '{relpath}' with operation '{operation}' does not exist in the API"
        )
    del paths[relpath][operation]
    if not paths[relpath]:
        del paths[relpath]
    _drop_case(swagger, operation_id(operation, relpath))
    return swagger


def _target_urls(swagger: dict[str, Any]) -> dict[str, str]:
    urls: dict[str, str] = {}
    config = swagger.get("x-ibm-configuration") or {}
    for step in (config.get("assembly") or {}).get("execute") or []:
        for case in ((step or {}).get("operation-switch") or {}).get("case") or []:
            for op, run in zip(
                case.get("operations") or [], case.get("execute") or [], strict=False
            ):
                url = ((run or {}).get("invoke") or {}).get("target-url")
                if isinstance(url, str):
                    urls[op] = url
    return urls


def validate_final(swagger: dict[str, Any]) -> None:
    """OpenWhisk's ``validateFinalSwagger``: no parameters in the base path; on a path
    with parameters, every verb calls an ``http`` web action and defines each parameter."""
    base = str(swagger.get("basePath", ""))
    if _PATH_PARAMETER.search(base):
        raise ApiDocError(
            f"The base path ({base}) cannot have parameters. Only the relative path supports"
            " path parameters."
        )
    targets = _target_urls(swagger)
    for path, item in (swagger.get("paths") or {}).items():
        if not _PATH_PARAMETER.search(path) or not isinstance(item, dict):
            continue
        names = _PARAMETER_NAMES.findall(path)
        shared = item.get("parameters") or []
        for verb, op in item.items():
            if verb == "parameters" or not isinstance(op, dict):
                continue
            url = (op.get("x-openwhisk") or {}).get("url")
            if isinstance(url, str) and not url.endswith(".http"):
                raise ApiDocError(
                    "The action must use a response type of '.http' in order to receive the"
                    " path parameters."
                )
            op_id = op.get("operationId")
            target = targets.get(op_id) if isinstance(op_id, str) else None
            if target is not None and not target.endswith(".http$(request.path)"):
                raise ApiDocError(
                    f"The target-url for operationId '{op_id}' must end in '$(request.path)'"
                    " in order for actions to receive the path parameters."
                )
            defined = {
                p.get("name")
                for p in [*shared, *(op.get("parameters") or [])]
                if isinstance(p, dict)
            }
            for name in names:
                if name not in defined:
                    raise ApiDocError(
                        f"The parameter '{name}' defined in path '{path}' does not match any"
                        " of the parameters defined for the path in the swagger file."
                    )


def gateway_url(api_host: str, tenant: str, base: str) -> str:
    """Where the gateway serves the API of ``base``: ``<host>/api/<tenant><base>`` (a base
    path of ``/`` adds nothing, so that the URL plus a relative path has one slash)."""
    return f"{api_host.rstrip('/')}/api/{tenant}{base.rstrip('/')}"


def cli_api(namespace: str, tenant: str, url: str, swagger: dict[str, Any]) -> dict[str, Any]:
    """What ``createApi`` answers, and each ``value`` of ``getApi``'s ``apis``."""
    return {
        "namespace": namespace,
        "gwApiActivated": True,
        "tenantId": tenant,
        "gwApiUrl": url,
        "apidoc": swagger,
    }
