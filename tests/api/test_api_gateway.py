"""The API gateway: its management API (``whisk.system/apimgmt``, with the request bodies
OpenWhisk's clients send) and serving routes at ``/api/<tenant>/<basePath>/<relPath>``
(verbs, path parameters, response types, CORS, ``require-whisk-auth``)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from apisupport import GUEST, NOT_FOUND, assert_error
from websupport import ACTIVATION_HEADER, DEFAULT_CORS, HTTP_ECHO_JS, web_action

from squall.cli.standalone import Standalone

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
MGMT = "/api/v1/web/whisk.system/apimgmt"
HOST = "http://testserver"

# Answers as HTML, text, SVG or JSON, whatever the extension asks for.
MARKUP_JS = (
    "function main(args) {\n"
    "  return {body: '<p>' + (args.name || 'none') + '</p>', text: 'plain', "
    "svg: '<svg/>', html: '<b/>', n: args.name};\n"
    "}\n"
)


def endpoint(
    base: str,
    relpath: str,
    verb: str,
    action: str,
    *,
    name: str | None = None,
    secure_key: str | None = None,
    namespace: str = "_",
) -> dict[str, Any]:
    """The body the ``openwhisk`` npm client's ``routes.create`` sends."""
    params = [p[1:-1] for p in relpath.split("/") if p.startswith("{") and p.endswith("}")]
    package, _, short = action.rpartition("/")
    apidoc: dict[str, Any] = {
        "namespace": "_",
        "gatewayBasePath": base,
        "gatewayPath": relpath,
        "gatewayMethod": verb,
        "id": f"API:_:{base}",
        "action": {
            "name": action,
            "namespace": namespace,
            "backendMethod": "GET",
            "backendUrl": f"{HOST}/api/v1/web/{namespace}/{package or 'default'}/{short}.http",
            "authkey": "uuid:key",
            **({"secureKey": secure_key} if secure_key else {}),
        },
    }
    if params:
        apidoc["pathParameters"] = [
            {
                "name": p,
                "in": "path",
                "description": f"Default description for '{p}'",
                "required": True,
                "type": "string",
            }
            for p in params
        ]
    if name:
        apidoc["apiName"] = name
    return {"apidoc": apidoc}


async def create(
    client: httpx.AsyncClient, body: dict[str, Any], response_type: str | None = "json"
) -> dict[str, Any]:
    params = {"responsetype": response_type} if response_type else {}
    r = await client.post(f"{MGMT}/createApi", json=body, params=params)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def gateway_path(url: str) -> str:
    """The path of a gateway URL (the test client talks to the app, not a host)."""
    return urlsplit(url).path


async def test_create_answers_the_api_and_its_swagger_document(
    client: httpx.AsyncClient, system: Standalone, unique: Unique
) -> None:
    # Given a web action
    name = unique("gw-books")
    await web_action(client, name, HTTP_ECHO_JS)
    base = "/" + unique("club")
    # When a route with a path parameter is created as the npm client does
    created = await create(
        client, endpoint(base, "/books/{isbn}", "get", name, name="Book Club"), "http"
    )
    # Then the answer carries the gateway URL of the namespace's tenant and the document
    tenant = (await system.store.auth.get_subject(GUEST)).uuid
    assert created["gwApiActivated"] is True
    assert created["gwApiUrl"] == f"{HOST}/api/{tenant}{base}"
    swagger = created["apidoc"]
    assert swagger["swagger"] == "2.0"
    assert swagger["info"] == {"title": "Book Club", "version": "1.0.0"}
    assert swagger["basePath"] == base
    assert swagger["paths"] == {
        "/books/{isbn}": {
            "get": {
                "operationId": "getBooksIsbn",
                "parameters": [
                    {
                        "name": "isbn",
                        "in": "path",
                        "description": "Default description for 'isbn'",
                        "required": True,
                        "type": "string",
                    }
                ],
                "x-openwhisk": {
                    "url": f"{HOST}/api/v1/web/{GUEST}/default/{name}.http",
                    "namespace": GUEST,
                    "package": "",
                    "action": name,
                },
                "responses": {"default": {"description": "Default response"}},
            }
        }
    }
    assert swagger["x-ibm-configuration"] == {
        "assembly": {
            "execute": [
                {
                    "operation-switch": {
                        "case": [
                            {
                                "operations": ["getBooksIsbn"],
                                "execute": [
                                    {
                                        "invoke": {
                                            "target-url": f"{HOST}/api/v1/web/{GUEST}/default/"
                                            f"{name}.http$(request.path)",
                                            "verb": "keep",
                                        }
                                    }
                                ],
                            }
                        ]
                    }
                }
            ]
        },
        "cors": {"enabled": True},
    }
    # And getApi without a base path lists it, also when a JavaScript client sends its
    # unset options as the text "undefined" (as `aio rt:api:list` does)
    for params in ({}, {"basepath": "undefined", "relpath": "undefined", "limit": "undefined"}):
        r = await client.get(f"{MGMT}/getApi", params=params)
        assert base in [a["value"]["apidoc"]["basePath"] for a in r.json()["apis"]], params
    # And getApi by base path or by name returns that document
    for key in (base, "Book Club"):
        r = await client.get(f"{MGMT}/getApi", params={"basepath": key})
        assert r.status_code == 200, r.text
        apis = r.json()["apis"]
        assert [a["value"]["apidoc"] for a in apis] == [swagger]
        assert apis[0]["value"]["gwApiUrl"] == created["gwApiUrl"]
    await client.delete(f"{MGMT}/deleteApi", params={"basepath": base, "force": "true"})


async def test_routes_serve_verbs_and_path_parameters(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given GET and POST on /books/{id} and GET on /books, as http web actions
    name = unique("gw-echo")
    await web_action(client, name, HTTP_ECHO_JS)
    base = "/" + unique("shop")
    await create(client, endpoint(base, "/books/{id}", "get", name), "http")
    await create(client, endpoint(base, "/books/{id}", "post", name), "http")
    created = await create(client, endpoint(base, "/books", "get", name), "http")
    url = gateway_path(created["gwApiUrl"])
    # When anyone GETs a book by id with a query
    r = await anonymous.get(f"{url}/books/978-0596517748", params={"q": "x"})
    # Then the action ran with the path after the tenant and the query
    assert r.status_code == 200, r.text
    args = r.json()
    assert (args["__ow_method"], args["__ow_path"], args["q"]) == (
        "get",
        f"{base}/books/978-0596517748",
        "x",
    )
    assert ACTIVATION_HEADER in r.headers
    # And a POST with a JSON body gets the body's fields
    r = await anonymous.post(f"{url}/books/42", json={"title": "Dune"})
    assert r.status_code == 200, r.text
    assert (r.json()["__ow_method"], r.json()["__ow_path"], r.json()["title"]) == (
        "post",
        f"{base}/books/42",
        "Dune",
    )
    # And the exact path is served too
    r = await anonymous.get(f"{url}/books")
    assert (r.status_code, r.json()["__ow_path"]) == (200, f"{base}/books")
    # And a verb the route lacks, or a path it lacks, is a 404
    assert_error(await anonymous.put(f"{url}/books/42"), 404, "Whoops. Verb not supported.")
    assert_error(await anonymous.get(f"{url}/authors"), 404, "Not found.")
    assert_error(await anonymous.get(f"{url}/books/42/pages"), 404, "Not found.")
    assert_error(await anonymous.get("/api/no-such-tenant/x"), 404, "Not found.")
    await client.delete(f"{MGMT}/deleteApi", params={"basepath": base})


@pytest.mark.parametrize(
    ("response_type", "content_type", "body"),
    [
        ("json", "application/json", None),
        ("html", "text/html; charset=UTF-8", b"<p>Jo</p>"),
        ("text", "text/plain; charset=UTF-8", b"<p>Jo</p>"),
        ("svg", "image/svg+xml", b"<p>Jo</p>"),
    ],
)
async def test_response_types(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    unique: Unique,
    response_type: str,
    content_type: str,
    body: bytes | None,
) -> None:
    # Given a route of each response type
    name = unique("gw-markup")
    await web_action(client, name, MARKUP_JS)
    base = "/" + unique("types")
    created = await create(client, endpoint(base, "/page", "get", name), response_type)
    # When it is called
    r = await anonymous.get(gateway_path(created["gwApiUrl"]) + "/page", params={"name": "Jo"})
    # Then the web action's extension rendered the result
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == content_type
    if body is None:
        assert r.json()["n"] == "Jo"
    else:
        assert r.content == body
    await client.delete(f"{MGMT}/deleteApi", params={"basepath": base})


async def test_cors_preflight_and_headers(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a GET route
    name = unique("gw-cors")
    await web_action(client, name, HTTP_ECHO_JS)
    base = "/" + unique("cors")
    created = await create(client, endpoint(base, "/x", "get", name), "http")
    url = gateway_path(created["gwApiUrl"]) + "/x"
    # When a browser sends a preflight, the gateway answers it with CORS headers
    r = await anonymous.options(url, headers={"Origin": "http://app.example"})
    assert r.status_code == 200
    for key, value in DEFAULT_CORS.items():
        assert r.headers[key] == value
    # And the answer of the route carries them too
    r = await anonymous.get(url)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    # When the API's CORS is turned off in its document, a preflight finds no verb
    swagger = created["apidoc"]
    swagger["x-ibm-configuration"]["cors"]["enabled"] = False
    await create(client, {"apidoc": {"namespace": "_", "swagger": swagger}}, None)
    assert_error(await anonymous.options(url), 404, "Whoops. Verb not supported.")
    await client.delete(f"{MGMT}/deleteApi", params={"basepath": base})


async def test_require_whisk_auth_of_the_target(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a web action that requires a secret, and a route without and one with it
    name = unique("gw-secret")
    await web_action(client, name, HTTP_ECHO_JS, annotations={"require-whisk-auth": "s3cret"})
    base = "/" + unique("secure")
    await create(client, endpoint(base, "/open", "get", name), "http")
    created = await create(
        client, endpoint(base, "/keyed", "get", name, secure_key="s3cret"), "http"
    )
    url = gateway_path(created["gwApiUrl"])
    # Then without the secret the route is refused, and with the header it runs
    assert_error(await anonymous.get(f"{url}/open"), 401)
    r = await anonymous.get(f"{url}/open", headers={"X-Require-Whisk-Auth": "s3cret"})
    assert r.status_code == 200, r.text
    # And a route created with the action's secret sends it for the caller
    r = await anonymous.get(f"{url}/keyed")
    assert r.status_code == 200, r.text
    # And an action that requires the caller's credentials gets them through the route
    authed = unique("gw-authed")
    await web_action(client, authed, HTTP_ECHO_JS, annotations={"require-whisk-auth": True})
    await create(client, endpoint(base, "/me", "get", authed), "http")
    assert_error(await anonymous.get(f"{url}/me"), 401)
    r = await client.get(f"{url}/me")
    assert (r.status_code, r.json()["__ow_user"]) == (200, GUEST)
    # And an action that is not web-exported is not served
    hidden = unique("gw-hidden")
    await web_action(client, hidden, HTTP_ECHO_JS, export=None)
    await create(client, endpoint(base, "/hidden", "get", hidden), "http")
    assert_error(await anonymous.get(f"{url}/hidden"), 404, NOT_FOUND)
    await client.delete(f"{MGMT}/deleteApi", params={"basepath": base})


async def test_delete_a_verb_a_path_and_the_api(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an API with GET and POST on /a and GET on /b
    name = unique("gw-del")
    await web_action(client, name, HTTP_ECHO_JS)
    base = "/" + unique("del")
    await create(client, endpoint(base, "/a", "get", name), "http")
    await create(client, endpoint(base, "/a", "post", name), "http")
    created = await create(client, endpoint(base, "/b", "get", name), "http")
    url = gateway_path(created["gwApiUrl"])

    async def paths() -> dict[str, Any]:
        r = await client.get(f"{MGMT}/getApi", params={"basepath": base})
        apis = r.json()["apis"]
        return apis[0]["value"]["apidoc"]["paths"] if apis else {}

    # When POST /a is deleted, GET /a stays
    r = await client.delete(
        f"{MGMT}/deleteApi", params={"basepath": base, "relpath": "/a", "operation": "POST"}
    )
    assert (r.status_code, r.json()) == (200, {})
    assert {p: sorted(v) for p, v in (await paths()).items()} == {"/a": ["get"], "/b": ["get"]}
    assert_error(await anonymous.post(f"{url}/a"), 404, "Whoops. Verb not supported.")
    # When /a is deleted, only /b is left
    r = await client.delete(f"{MGMT}/deleteApi", params={"basepath": base, "relpath": "/a"})
    assert r.status_code == 200
    assert list(await paths()) == ["/b"]
    # And deleting what is not there is OpenWhisk's 502 with its message
    r = await client.delete(f"{MGMT}/deleteApi", params={"basepath": base, "relpath": "/a"})
    assert (r.status_code, r.json()["error"]) == (
        502,
        "API deletion failure: path '/a' does not exist in the API",
    )
    # When the last path goes, so does the API
    r = await client.delete(f"{MGMT}/deleteApi", params={"basepath": base, "relpath": "/b"})
    assert r.status_code == 200
    assert await paths() == {}
    assert_error(await anonymous.get(f"{url}/b"), 404, "Not found.")
    r = await client.delete(f"{MGMT}/deleteApi", params={"basepath": base})
    assert (r.status_code, r.json()["error"]) == (
        502,
        f"API deletion failure: API '{base}' does not exist.",
    )


async def test_refusals_use_openwhisk_messages(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    base = "/" + unique("bad")
    # Without credentials
    r = await anonymous.post(f"{MGMT}/createApi", json=endpoint(base, "/x", "get", "a"))
    assert (r.status_code, r.json()["error"]) == (502, "A valid auth key is required.")
    r = await anonymous.get(f"{MGMT}/getApi")
    assert (r.status_code, r.json()["error"]) == (502, "Invalid authentication.")
    # Missing fields
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "apidoc is required."),
        ({"apidoc": "{not json"}, "apidoc field cannot be parsed. Ensure it is valid JSON."),
        ({"apidoc": {"gatewayBasePath": base}}, "apidoc is missing the namespace field"),
        (
            {"apidoc": {"namespace": "_", "gatewayBasePath": base, "gatewayPath": "/x"}},
            "apidoc is missing the gatewayMethod field",
        ),
        (
            {"apidoc": {"namespace": "_", "swagger": {"basePath": base, "paths": {}}}},
            "swagger is missing the paths field.",
        ),
    ]
    for body, message in cases:
        r = await client.post(f"{MGMT}/createApi", json=body)
        assert (r.status_code, r.json()["error"]) == (502, message), body
    # A path parameter needs the http response type
    r = await client.post(
        f"{MGMT}/createApi",
        json=endpoint(base, "/books/{id}", "get", "a"),
        params={"responsetype": "json"},
    )
    assert (r.status_code, r.json()["error"]) == (
        502,
        "API creation failure: The action must use a response type of '.http' in order to"
        " receive the path parameters.",
    )
    r = await client.delete(f"{MGMT}/deleteApi", params={"basepath": base, "operation": "get"})
    assert (r.status_code, r.json()["error"]) == (
        502,
        "When specifying an operation, the path is required.",
    )
    # An unknown management action is a 404, and nothing was stored
    assert_error(await client.get(f"{MGMT}/listApis"), 404, NOT_FOUND)
    r = await client.get(f"{MGMT}/getApi", params={"basepath": base})
    assert r.json() == {"apis": []}


async def test_rest_api_paths_keep_their_answers(client: httpx.AsyncClient) -> None:
    # The gateway's catch-all never takes the REST API's 404 and 405
    assert_error(await client.get("/api/v1/no-such-thing"), 404, NOT_FOUND)
    r = await client.patch("/api/v1/namespaces/_/actions/x")
    assert r.status_code == 405, r.text


async def test_apis_are_per_namespace_and_survive_a_swagger_import(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an API, exported with getApi
    name = unique("gw-import")
    await web_action(client, name, HTTP_ECHO_JS)
    base = "/" + unique("import")
    created = await create(client, endpoint(base, "/items/{id}", "put", name), "http")
    await client.delete(f"{MGMT}/deleteApi", params={"basepath": base})
    assert_error(await anonymous.put(gateway_path(created["gwApiUrl"]) + "/items/1"), 404)
    # When its swagger document is imported again (as `aio rt:api:create -c` sends it)
    body = {"apidoc": {"namespace": "_", "swagger": orjson.dumps(created["apidoc"]).decode()}}
    again = await create(client, body, None)
    # Then it is served again under the same URL
    assert again["gwApiUrl"] == created["gwApiUrl"]
    r = await anonymous.put(gateway_path(again["gwApiUrl"]) + "/items/7", content=b"raw")
    assert r.status_code == 200, r.text
    assert r.json()["__ow_body"] == base64.b64encode(b"raw").decode()
    await client.delete(f"{MGMT}/deleteApi", params={"basepath": base})


async def test_the_wsk_cli_request_shapes(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a web action, and the requests `wsk api` (openwhisk-client-go) sends: the
    # `.http` actions, list options always present (limit=0, skip=0), the space guid
    name = unique("gw-wsk")
    await web_action(client, name, HTTP_ECHO_JS)
    base = "/" + unique("wsk")
    body = endpoint(base, "/hello", "GET", name)
    r = await client.post(
        f"{MGMT}/createApi.http",
        json=body,
        params={"responsetype": "http", "spaceguid": "ignored"},
    )
    assert r.status_code == 200, r.text
    # Then every operation has what wsk checks: operationId and x-openwhisk's fields
    r = await client.get(
        f"{MGMT}/getApi.http", params={"basepath": base, "limit": "0", "skip": "0"}
    )
    [api] = r.json()["apis"]
    op = api["value"]["apidoc"]["paths"]["/hello"]["get"]
    assert op["operationId"] == "getHello"
    assert {"namespace", "action", "url"} <= {k for k, v in op["x-openwhisk"].items() if v}
    # And the route serves, and wsk's delete of the verb removes it
    url = gateway_path(api["value"]["gwApiUrl"]) + "/hello"
    assert (await anonymous.get(url)).status_code == 200
    r = await client.delete(
        f"{MGMT}/deleteApi.http",
        params={"basepath": base, "relpath": "/hello", "operation": "GET", "force": "true"},
    )
    assert (r.status_code, r.json()) == (200, {})
    assert_error(await anonymous.get(url), 404, "Not found.")
