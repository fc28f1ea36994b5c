"""The gateway's swagger documents: operation ids, endpoints added and removed, the final
checks, and the namespace of the caller, with OpenWhisk's rules and messages."""

from __future__ import annotations

from typing import Any

import pytest

from squall.entities import apidoc
from squall.entities.apidoc import ApiDocError


def endpoint(relpath: str, verb: str = "get", **action: Any) -> dict[str, Any]:
    return {
        "namespace": "_",
        "gatewayBasePath": "/club",
        "gatewayPath": relpath,
        "gatewayMethod": verb,
        "action": {
            "name": "books",
            "namespace": "_",
            "backendMethod": "GET",
            "backendUrl": "https://host:3233/api/v1/web/_/default/books.http",
            "authkey": "u:k",
            **action,
        },
    }


@pytest.mark.parametrize(
    ("verb", "relpath", "expected"),
    [
        ("get", "/books", "getBooks"),
        ("GET", "/books/{isbn}", "getBooksIsbn"),
        ("post", "/", "post"),
        ("put", "/my-books/by_id", "putMy-booksBy_id"),
        ("delete", "/a.b/c", "deleteABC"),
    ],
)
def test_operation_ids(verb: str, relpath: str, expected: str) -> None:
    assert apidoc.operation_id(verb, relpath) == expected


def test_endpoints_are_added_to_one_document_and_removed_again() -> None:
    # Given an empty API and two verbs of one path, the second with a secret
    swagger = apidoc.base_swagger("/club", None)
    assert swagger["info"] == {"title": "/club", "version": "1.0.0"}
    swagger = apidoc.add_endpoint(swagger, endpoint("/books"), None)
    swagger = apidoc.add_endpoint(swagger, endpoint("/books", "post", secureKey="s"), "http")
    # Then both are in the paths, with the web action of their response type
    get, post = swagger["paths"]["/books"]["get"], swagger["paths"]["/books"]["post"]
    assert get["x-openwhisk"]["url"] == "https://host:3233/api/v1/web/_/default/books.json"
    assert post["x-openwhisk"]["url"] == "https://host:3233/api/v1/web/_/default/books.http"
    # And each has its case; the http one's target ends in the request path
    cases = swagger["x-ibm-configuration"]["assembly"]["execute"][0]["operation-switch"]["case"]
    assert [c["operations"] for c in cases] == [["getBooks"], ["postBooks"]]
    assert cases[1]["execute"][0]["invoke"]["target-url"].endswith(".http$(request.path)")
    assert cases[1]["execute"][1]["set-variable"]["actions"] == [
        {"set": "message.headers.X-Require-Whisk-Auth", "value": "s"}
    ]
    # When the same verb is added again, it replaces the old one (one case, not two)
    again = apidoc.add_endpoint(swagger, endpoint("/books"), "text")
    again_cases = again["x-ibm-configuration"]["assembly"]["execute"][0]["operation-switch"]
    assert len(again_cases["case"]) == 2
    assert again["paths"]["/books"]["get"]["x-openwhisk"]["url"].endswith("books.text")
    # When one verb is removed, its case goes with it; the input is never changed
    removed = apidoc.remove_endpoint(swagger, "/books", "POST")
    assert list(removed["paths"]["/books"]) == ["get"]
    assert len(swagger["paths"]["/books"]) == 2
    # And removing the path leaves no paths
    assert apidoc.remove_endpoint(removed, "/books", None)["paths"] == {}
    with pytest.raises(ApiDocError, match="path '/nope' does not exist in the API"):
        apidoc.remove_endpoint(swagger, "/nope", None)
    with pytest.raises(ApiDocError, match="path '/books' with operation 'put' does not exist"):
        apidoc.remove_endpoint(swagger, "/books", "put")


def test_actions_in_packages_and_other_namespaces() -> None:
    doc = endpoint("/x", name="/other/pkg/act", namespace="other")
    doc["action"]["backendUrl"] = "http://h/api/v1/web/other/pkg/act.http"
    # The caller's namespace replaces "_" but not another namespace's action
    apidoc.update_namespace(doc, "guest")
    assert (doc["namespace"], doc["action"]["namespace"]) == ("guest", "other")
    swagger = apidoc.add_endpoint(apidoc.base_swagger("/club", "Club"), doc, "json")
    assert swagger["paths"]["/x"]["get"]["x-openwhisk"] == {
        "url": "http://h/api/v1/web/other/pkg/act.json",
        "namespace": "other",
        "package": "pkg",
        "action": "act",
    }
    own = endpoint("/y")
    apidoc.update_namespace(own, "guest")
    assert own["action"]["namespace"] == "guest"
    assert own["action"]["backendUrl"] == "https://host:3233/api/v1/web/guest/default/books.http"


def test_final_checks_of_path_parameters() -> None:
    with_param = endpoint("/books/{isbn}")
    with_param["pathParameters"] = [{"name": "isbn", "in": "path"}]
    # A path parameter needs the http response type
    json_doc = apidoc.add_endpoint(apidoc.base_swagger("/club", None), with_param, "json")
    with pytest.raises(ApiDocError, match=r"must use a response type of '\.http'"):
        apidoc.validate_final(json_doc)
    # And a definition of each parameter
    http_doc = apidoc.add_endpoint(apidoc.base_swagger("/club", None), with_param, "http")
    apidoc.validate_final(http_doc)
    undefined = apidoc.add_endpoint(
        apidoc.base_swagger("/club", None), endpoint("/books/{isbn}"), "http"
    )
    with pytest.raises(ApiDocError, match="The parameter 'isbn' defined in path"):
        apidoc.validate_final(undefined)
    # And the base path may have none
    with pytest.raises(ApiDocError, match=r"The base path \(/a/\{b\}\) cannot have parameters"):
        apidoc.validate_final(apidoc.base_swagger("/a/{b}", None))


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({}, "apidoc is required."),
        ({"apidoc": 5}, "apidoc field is of type number and should be a JSON object"),
        ({"apidoc": {"namespace": "_"}}, "apidoc is missing the gatewayBasePath field"),
        (
            {"apidoc": {"namespace": "_", "swagger": "{}", "gatewayBasePath": "/a"}},
            "swagger and gatewayBasePath are mutually exclusive",
        ),
        ({"apidoc": {"namespace": "_", "swagger": "[x"}}, "swagger field cannot be parsed."),
        (
            {"apidoc": {**endpoint("/x"), "action": {"name": "a"}}},
            "action is missing the backendMethod field.",
        ),
    ],
)
def test_create_messages_are_checked_with_openwhisk_words(
    message: dict[str, Any], error: str
) -> None:
    with pytest.raises(ApiDocError) as caught:
        apidoc.parse_apidoc(message)
    assert caught.value.message.startswith(error)


def test_a_swagger_document_given_as_text_is_parsed() -> None:
    text = '{"basePath": "/a", "paths": {"/b": {}}, "info": {"title": "A"}}'
    doc = apidoc.parse_apidoc({"apidoc": {"namespace": "_", "swagger": text}})
    assert apidoc.base_path(doc) == "/a"
    assert doc["swagger"]["info"] == {"title": "A"}


def test_gateway_urls() -> None:
    assert apidoc.gateway_url("http://h:1/", "t", "/club") == "http://h:1/api/t/club"
    assert apidoc.gateway_url("http://h:1", "t", "/") == "http://h:1/api/t"
