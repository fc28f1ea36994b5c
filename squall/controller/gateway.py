"""The API gateway, request side: which API, path and operation a request to
``/api/<tenant>/<basePath>/<relPath>`` names, and the web action it calls.

Matching follows OpenWhisk's gateway (``openwhisk-apigateway``'s ``routing.lua``):

- The API is the tenant's one whose base path starts the request path, the longest such
  base path first; then its paths: an exact match first, else a path with parameters
  (``/books/{isbn}``: a parameter matches one non-empty segment), the one with the most
  literal characters first. Nothing found → 404 "Not found.".
- The operation is the one of the request's method; none → 404 "Whoops. Verb not
  supported.", except a CORS preflight (``OPTIONS``) when the API's CORS is enabled
  (the default), which the gateway answers itself.
- The operation's web action is its ``x-openwhisk`` (``namespace``, ``package``,
  ``action``, and the response type as the extension of its ``url``), or else the
  ``target-url`` of its ``x-ibm-configuration`` case (an imported document). An ``http``
  web action gets the request path after the tenant as ``__ow_path``
  (``/club/books/978-0596517748``), others get ``""``. The case's ``X-Require-Whisk-Auth``
  value, if any, is sent to the web action as that header.

Every function is pure; the route module does the I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from squall.controller.web import EXTENSIONS, WebTarget
from squall.entities.apidoc import REQUIRE_WHISK_AUTH_VARIABLE
from squall.store.contracts import GatewayApi

NOT_FOUND = "Not found."
VERB_NOT_SUPPORTED = "Whoops. Verb not supported."

PREFIX = "/api/"

_PARAMETER = re.compile(r"\{[^/{}]+\}")
_WEB_URL = re.compile(r"/api/v1/web/([^/]+)/([^/]+)/([^/]+?)(\.[a-z]+)?(?:\$\(request\.path\))?$")


def is_gateway_path(path: str) -> bool:
    """Whether ``path`` is the gateway's: ``/api/<tenant>/...``, where the tenant is never
    ``v1`` (``/api/v1`` and ``/api/v1/...`` are the REST API's)."""
    tenant, slash, _ = path.removeprefix(PREFIX).partition("/")
    return path.startswith(PREFIX) and bool(tenant) and bool(slash) and tenant != "v1"


@dataclass(frozen=True, slots=True)
class Route:
    """A request matched to an API and one of its paths (``template``)."""

    api: GatewayApi
    template: str
    item: dict[str, Any]
    path: str  # the request path after the tenant: basePath + relPath

    def operation(self, method: str) -> dict[str, Any] | None:
        op = self.item.get(method.lower())
        return op if isinstance(op, dict) else None

    @property
    def cors(self) -> bool:
        """Whether the API answers CORS preflights (``x-ibm-configuration.cors``)."""
        config = self.api.swagger.get("x-ibm-configuration")
        cors = config.get("cors") if isinstance(config, dict) else None
        return not (isinstance(cors, dict) and cors.get("enabled") is False)


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = _PARAMETER.split(template)
    return re.compile("[^/]+".join(re.escape(p) for p in parts) + r"\Z")


def _literal_size(template: str) -> int:
    return len(_PARAMETER.sub("", template))


def match(apis: list[GatewayApi], path: str) -> Route | None:
    """The route of ``path`` (``/club/books/1``) among a tenant's ``apis``, or None."""
    for api in sorted(apis, key=lambda a: len(a.base_path.rstrip("/")), reverse=True):
        base = api.base_path.rstrip("/")
        if path != base and not path.startswith(base + "/"):
            continue
        rel = path[len(base) :] or "/"
        paths = api.swagger.get("paths")
        if not isinstance(paths, dict):
            continue
        exact = paths.get(rel)
        if isinstance(exact, dict):
            return Route(api, rel, exact, path)
        templated = sorted(
            (t for t in paths if isinstance(t, str) and _PARAMETER.search(t)),
            key=_literal_size,
            reverse=True,
        )
        for template in templated:
            item = paths[template]
            if isinstance(item, dict) and _template_pattern(template).match(rel):
                return Route(api, template, item, path)
    return None


def _case_steps(swagger: dict[str, Any], op_id: Any) -> list[dict[str, Any]]:
    config = swagger.get("x-ibm-configuration")
    assembly = config.get("assembly") if isinstance(config, dict) else None
    execute = assembly.get("execute") if isinstance(assembly, dict) else None
    for step in execute if isinstance(execute, list) else []:
        switch = step.get("operation-switch") if isinstance(step, dict) else None
        cases = switch.get("case") if isinstance(switch, dict) else None
        for case in cases if isinstance(cases, list) else []:
            if isinstance(case, dict) and case.get("operations") == [op_id]:
                steps = case.get("execute")
                return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []
    return []


def secure_key(swagger: dict[str, Any], op: dict[str, Any]) -> str | None:
    """The ``X-Require-Whisk-Auth`` value the gateway sends for this operation, if any."""
    for step in _case_steps(swagger, op.get("operationId")):
        variable = step.get("set-variable")
        actions = variable.get("actions") if isinstance(variable, dict) else None
        for action in actions if isinstance(actions, list) else []:
            if isinstance(action, dict) and action.get("set") == REQUIRE_WHISK_AUTH_VARIABLE:
                value = action.get("value")
                if isinstance(value, str | int | float) and not isinstance(value, bool):
                    return str(value)
    return None


def _extension(url: Any) -> str:
    if isinstance(url, str):
        found = _WEB_URL.search(url)
        if found and found.group(4) in EXTENSIONS:
            return found.group(4)
    return ".json"


def target(route: Route, op: dict[str, Any]) -> WebTarget | None:
    """The web action ``op`` calls, or None when the operation names none."""
    ow = op.get("x-openwhisk")
    namespace = package = name = ""
    extension = ".json"
    if isinstance(ow, dict) and ow.get("namespace") and ow.get("action"):
        namespace, package, name = (
            str(ow["namespace"]),
            str(ow.get("package") or ""),
            str(ow["action"]),
        )
        extension = _extension(ow.get("url"))
    else:
        for step in _case_steps(route.api.swagger, op.get("operationId")):
            invoke = step.get("invoke")
            url = invoke.get("target-url") if isinstance(invoke, dict) else None
            found = _WEB_URL.search(url) if isinstance(url, str) else None
            if found:
                namespace, package, name = found.group(1), found.group(2), found.group(3)
                package = "" if package == "default" else package
                extension = _extension(url)
                break
    if not (namespace and name):
        return None
    if namespace == "_":
        namespace = route.api.namespace
    rest = route.path if extension == ".http" else ""
    return WebTarget(namespace, package, name, extension, rest)
