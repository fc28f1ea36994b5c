"""The gateway's matching of a request path to an API, a path and a web action."""

from __future__ import annotations

from typing import Any

from squall.controller import gateway
from squall.controller.web import WebTarget
from squall.entities import apidoc
from squall.store.contracts import GatewayApi


def api(base: str, *paths: str, response_type: str = "http") -> GatewayApi:
    swagger = apidoc.base_swagger(base, None)
    for path in paths:
        doc = {
            "gatewayPath": path,
            "gatewayMethod": "get",
            "action": {
                "name": "act" + "".join(c if c.isalnum() else "-" for c in path),
                "namespace": "guest",
                "backendUrl": "http://h/api/v1/web/guest/default/x.http",
            },
        }
        swagger = apidoc.add_endpoint(swagger, doc, response_type)
    return GatewayApi("guest", base, "t", swagger, "1-a", 0)


def matched(apis: list[GatewayApi], path: str) -> tuple[str, str] | None:
    route = gateway.match(apis, path)
    return None if route is None else (route.api.base_path, route.template)


def test_longest_base_path_then_exact_then_most_literal_template() -> None:
    apis = [api("/a", "/b/c", "/x"), api("/a/b", "/c", "/{id}"), api("/", "/top", "/{any}/{n}")]
    # The longer base path wins when it has the path
    assert matched(apis, "/a/b/c") == ("/a/b", "/c")
    assert matched(apis, "/a/b/7") == ("/a/b", "/{id}")
    # A shorter one is tried when the longer has no such path
    assert matched(apis, "/a/x") == ("/a", "/x")
    assert matched(apis, "/top") == ("/", "/top")
    assert matched(apis, "/q/5") == ("/", "/{any}/{n}")
    # A parameter matches exactly one non-empty segment
    assert matched(apis, "/a/b/7/8") is None
    assert matched(apis[:2], "/a/bb") is None
    assert matched(apis, "/a/bb") == ("/", "/{any}/{n}")
    assert matched([], "/a") is None


def test_exact_paths_before_templates() -> None:
    apis = [api("/club", "/books/{id}", "/books/new", "/books/{id}/{page}")]
    assert matched(apis, "/club/books/new") == ("/club", "/books/new")
    assert matched(apis, "/club/books/9") == ("/club", "/books/{id}")
    assert matched(apis, "/club/books/9/2") == ("/club", "/books/{id}/{page}")


def test_the_target_web_action_and_its_path() -> None:
    http = api("/club", "/books/{id}")
    route = gateway.match([http], "/club/books/9")
    assert route is not None
    op = route.operation("GET")
    assert op is not None and route.operation("POST") is None
    assert gateway.target(route, op) == WebTarget(
        "guest", "", "act-books--id-", ".http", "/club/books/9"
    )
    # A json route gets no __ow_path
    json_route = gateway.match([api("/j", "/x", response_type="json")], "/j/x")
    assert json_route is not None
    json_op = json_route.operation("get")
    assert json_op is not None
    assert gateway.target(json_route, json_op) == WebTarget("guest", "", "act-x", ".json", "")


def test_an_imported_document_without_x_openwhisk_uses_the_target_url() -> None:
    swagger: dict[str, Any] = {
        "basePath": "/imp",
        "paths": {"/p": {"get": {"operationId": "getP"}}},
        "x-ibm-configuration": {
            "assembly": {
                "execute": [
                    {
                        "operation-switch": {
                            "case": [
                                {
                                    "operations": ["getP"],
                                    "execute": [
                                        {
                                            "invoke": {
                                                "target-url": "https://h/api/v1/web/_/pkg/act.text",
                                                "verb": "keep",
                                            }
                                        },
                                        {
                                            "set-variable": {
                                                "actions": [
                                                    {
                                                        "set": "message.headers."
                                                        "X-Require-Whisk-Auth",
                                                        "value": 1234,
                                                    }
                                                ]
                                            }
                                        },
                                    ],
                                }
                            ]
                        }
                    }
                ]
            },
            "cors": {"enabled": False},
        },
    }
    route = gateway.match([GatewayApi("guest", "/imp", "t", swagger, "1-a", 0)], "/imp/p")
    assert route is not None and route.cors is False
    op = route.operation("get")
    assert op is not None
    # "_" is the API's own namespace; "pkg" the package
    assert gateway.target(route, op) == WebTarget("guest", "pkg", "act", ".text", "")
    assert gateway.secure_key(swagger, op) == "1234"


def test_gateway_paths() -> None:
    assert gateway.is_gateway_path("/api/1234/club/books")
    assert gateway.is_gateway_path("/api/1234/")
    assert not gateway.is_gateway_path("/api/v1/namespaces")
    assert not gateway.is_gateway_path("/api/v1")
    assert not gateway.is_gateway_path("/api/1234")
    assert not gateway.is_gateway_path("/api//x")
    assert not gateway.is_gateway_path("/metrics")
