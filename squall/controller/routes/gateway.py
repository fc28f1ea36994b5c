"""``/api/<tenant>/<basePath>/<relPath>``: the API gateway, serving the routes the
management API (``routes/apimgmt.py``) created.

Every request reads the tenant's APIs from the store (one indexed read, no cache), so a
route created or deleted through any controller of a cluster is served, or gone, on the
next request through every other. Matching and the target web action:
``controller/gateway.py``; the web action then runs exactly as through
``/api/v1/web/...`` (``routes/web.py``): its ``require-whisk-auth``, ``final``
parameters, response type, CORS headers and errors.

The tenant segment never is ``v1``, so the REST API's own paths (``/api/v1/...``) keep
their 404s and 405s.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller import gateway, web
from squall.controller.core import controller_of
from squall.controller.http import error_response
from squall.controller.routes.web import ALL_METHODS, serve_request
from squall.errors import NotFound


class TenantConvertor(Convertor[str]):
    """One path segment other than ``v1`` (the REST API's version)."""

    regex = "(?!v1/)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("gwtenant", TenantConvertor())


async def serve_route(request: Request) -> Response:
    ctl = controller_of(request)
    tenant = request.path_params["tenant"]
    path = "/" + request.path_params["rest"]
    route = gateway.match(await ctl.apis.of_tenant(tenant), path)
    if route is None:
        return error_response(request, NotFound(gateway.NOT_FOUND))
    op = route.operation(request.method)
    if op is None:
        if request.method == "OPTIONS" and route.cors:
            response = Response(status_code=200)
            response.raw_headers.extend(
                (k.lower().encode(), v.encode("latin-1"))
                for k, v in web.cors_headers(request.headers)
            )
            return response
        return error_response(request, NotFound(gateway.VERB_NOT_SUPPORTED))
    key = gateway.secure_key(route.api.swagger, op)
    extra = [(web.REQUIRE_WHISK_AUTH_HEADER, key)] if key is not None else []
    return await serve_request(request, gateway.target(route, op), extra)


ROUTES = [Route("/api/{tenant:gwtenant}/{rest:path}", serve_route, methods=ALL_METHODS)]
