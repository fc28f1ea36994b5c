"""Adobe's ``aio rt:api:*`` commands against the API gateway, unchanged: create routes
(GET and POST on a path with a parameter), list, get, call them through the URL ``aio``
printed, delete (the CLI set-up is ``aiocli.py``'s)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
from _standalone import Standalone, start
from aiocli import Aio, install

pytestmark = pytest.mark.compat

ECHO_HTTP_JS = "function main(args) {\n  return { statusCode: 200, body: args };\n}\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    squall = start(tmp_path_factory.mktemp("aio-api-squall"), keep_warm_s=60)
    try:
        yield squall
    finally:
        squall.stop_cleanly()


@pytest.fixture(scope="module")
def aio(server: Standalone, tmp_path_factory: pytest.TempPathFactory) -> Aio:
    home = tmp_path_factory.mktemp("aio-api-home")
    (home / "echo.js").write_text(ECHO_HTTP_JS)
    return Aio(install(), server, home)


def test_api_create_list_get_call_delete(aio: Aio, server: Standalone) -> None:
    # Given a web action
    aio.run("rt:action:create", "aioBooks", "echo.js", "--web", "true")

    # When GET and POST routes with a path parameter are created
    made = aio.run(
        "rt:api:create", "/aioclub", "/books/{isbn}", "get", "aioBooks", "--response-type=http"
    )
    aio.run(
        "rt:api:create", "/aioclub", "/books/{isbn}", "post", "aioBooks", "--response-type=http"
    )
    # Then aio prints the route's URL on the server: /api/<tenant>/<base>/<path>
    url = made.stdout.strip()
    assert re.fullmatch(rf"{re.escape(server.api_host)}/api/[^/]+/aioclub/books/\{{isbn\}}", url), (
        made.stdout
    )

    # And rt:api:list shows both verbs with their URL
    listed = aio.run("rt:api:list").stdout
    rows = [line.split() for line in listed.splitlines() if "/aioclub/" in line]
    assert sorted(row[1] for row in rows) == ["get", "post"], listed
    assert all(row[-1] == url for row in rows), listed
    # And --json is the swagger document, naming the web action each verb runs
    as_json = json.loads(aio.run("rt:api:list", "/aioclub", "--json").stdout)
    assert as_json["basePath"] == "/aioclub"
    assert as_json["paths"]["/books/{isbn}"]["get"]["x-openwhisk"]["url"] == (
        f"{server.api_host}/api/v1/web/{server.namespace}/default/aioBooks.http"
    )

    # And rt:api:get prints the swagger document OpenWhisk returns
    swagger = json.loads(aio.run("rt:api:get", "/aioclub").stdout)
    assert swagger["swagger"] == "2.0"
    assert swagger["info"] == {"title": "/aioclub", "version": "1.0.0"}
    item = swagger["paths"]["/books/{isbn}"]
    assert sorted(item) == ["get", "post"]
    assert item["get"]["operationId"] == "getBooksIsbn"
    assert item["get"]["x-openwhisk"]["action"] == "aioBooks"
    assert item["get"]["x-openwhisk"]["namespace"] == server.namespace

    # And the routes run the action, GET and POST, with the path parameter's path
    book = url.replace("{isbn}", "978-0596517748")
    r = httpx.get(book, params={"q": "1"}, trust_env=False)
    assert r.status_code == 200, r.text
    assert (r.json()["__ow_path"], r.json()["q"]) == ("/aioclub/books/978-0596517748", "1")
    r = httpx.post(book, json={"title": "Dune"}, trust_env=False)
    assert (r.status_code, r.json()["__ow_method"], r.json()["title"]) == (200, "post", "Dune")

    # When the POST verb, then the API, are deleted, the routes are gone
    aio.run("rt:api:delete", "/aioclub", "/books/{isbn}", "post")
    assert httpx.post(book, json={}, trust_env=False).status_code == 404
    assert httpx.get(book, trust_env=False).status_code == 200
    aio.run("rt:api:delete", "/aioclub")
    assert httpx.get(book, trust_env=False).status_code == 404
    assert "/aioclub" not in aio.run("rt:api:list").stdout
