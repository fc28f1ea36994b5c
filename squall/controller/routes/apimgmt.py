"""``/api/v1/web/whisk.system/apimgmt/{createApi,getApi,deleteApi}[.http]``: the API
gateway's management, where OpenWhisk's clients (the ``openwhisk`` npm client's
``routes``, ``wsk api``, ``aio rt:api``) send it.

In OpenWhisk these are web actions of ``whisk.system``; here the controller answers them
itself, with the same arguments (query and body merged, as a web action gets them) and
the same answers: 200 with the result as JSON, or 502 ``{"error": message}`` (OpenWhisk's
status for every refusal of these actions). They act as the caller's namespace
(``__ow_user``): without valid credentials the answer is OpenWhisk's
"A valid auth key is required." (createApi) or "Invalid authentication.". Like every web
action they answer CORS preflights and carry CORS headers.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller import web
from squall.controller.core import controller_of
from squall.controller.http import JSONResponse, error_response, read_body, transaction_id
from squall.controller.routes.web import ALL_METHODS
from squall.entities.apidoc import ApiDocError
from squall.errors import NotFound, SquallError

PATH = "/api/v1/web/whisk.system/apimgmt/"
OPERATIONS = ("createApi", "getApi", "deleteApi")
NO_KEY_CREATE = "A valid auth key is required."
NO_KEY = "Invalid authentication."


def _operation(name: str) -> str | None:
    for ext in (".http", ".json"):
        name = name.removesuffix(ext)
    return name if name in OPERATIONS else None


def api_host(request: Request) -> str:
    """The base of gateway URLs: the configured API host, else how this request came in."""
    configured = controller_of(request).settings.api_host
    return configured.rstrip("/") if configured else str(request.base_url).rstrip("/")


def _failure(request: Request, message: str) -> Response:
    return JSONResponse({"error": message, "code": transaction_id(request)}, status_code=502)


async def apimgmt(request: Request) -> Response:
    ctl = controller_of(request)
    cors = web.cors_headers(request.headers)
    try:
        operation = _operation(request.path_params["operation"])
        if operation is None:
            raise NotFound()
        if request.method == "OPTIONS":
            response: Response = Response(status_code=200)
        else:
            user = await ctl.authenticator.identify(request.headers.get("authorization"))
            if user is None:
                return _with_cors(
                    _failure(request, NO_KEY_CREATE if operation == "createApi" else NO_KEY), cors
                )
            body = await read_body(request, ctl.settings.max_request_bytes)
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
            args, _ = web.arguments(
                web.WebRequest(
                    request.method,
                    headers,
                    "",
                    request.scope.get("query_string", b"").decode("latin-1"),
                    body,
                ),
                raw=False,
                user=user.namespace,
            )
            response = await _run(request, operation, user.namespace, args)
    except SquallError as e:
        response = error_response(request, e)
    return _with_cors(response, cors)


async def _run(
    request: Request, operation: str, namespace: str, args: dict[str, object]
) -> Response:
    ctl = controller_of(request)
    try:
        if operation == "createApi":
            tenant = (await ctl.auth_store.get_subject(namespace)).uuid
            result = await ctl.api_management.create(namespace, tenant, args, api_host(request))
        elif operation == "getApi":
            result = await ctl.api_management.get(namespace, args, api_host(request))
        else:
            result = await ctl.api_management.delete(namespace, args)
    except ApiDocError as e:
        return _failure(request, e.message)
    return JSONResponse(result)


def _with_cors(response: Response, cors: list[tuple[str, str]]) -> Response:
    response.raw_headers.extend((k.lower().encode(), v.encode("latin-1")) for k, v in cors)
    return response


ROUTES = [Route(PATH + "{operation}", apimgmt, methods=ALL_METHODS)]
