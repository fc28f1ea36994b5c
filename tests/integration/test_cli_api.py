"""``squall api`` as a user runs it against the standalone: create routes to web actions,
list, get the swagger document, call them, recreate from the document, delete."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from _cli_client import Wsk, write
from _standalone import Standalone, StartServer

from squall.cli.client import exits

pytestmark = pytest.mark.integration

ECHO_HTTP_JS = "function main(args) { return {statusCode: 200, body: args}; }\n"


@pytest.fixture
def wsk(standalone: Standalone, tmp_path: Path) -> Wsk:
    return Wsk.for_server(standalone, tmp_path)


def test_create_list_get_call_delete(
    wsk: Wsk, standalone: Standalone, unique: Callable[[str], str]
) -> None:
    # Given a web action
    action, base = unique("books"), "/" + unique("club")
    code = str(write(wsk.home, "echo.js", ECHO_HTTP_JS))
    wsk.run("action", "create", action, code, "--web", "true")

    # When routes with a path parameter are created for GET and POST
    made = wsk.run("api", "create", base, "/books/{isbn}", "get", action, "-r", "http",
                   "-n", "Book Club")  # fmt: skip
    wsk.run("api", "create", base, "/books/{isbn}", "post", action, "-r", "http")
    # Then wsk's lines say what was created and where it is served
    first, url = made.out.splitlines()
    assert first == f"ok: created API {base}/books/{{isbn}} GET for action /_/{action}"
    assert url.startswith(f"{standalone.api_host}/api/") and url.endswith(f"{base}/books/{{isbn}}")

    # And list shows both verbs under the API's name, get prints the swagger document
    listed = wsk.run("api", "list", base).out.splitlines()
    assert listed[0] == "ok: APIs"
    assert listed[1].split() == ["Action", "Verb", "API", "Name", "URL"]
    assert sorted(line.split()[1] for line in listed[2:]) == ["get", "post"]
    assert all(f"/guest/{action}" in line and "Book Club" in line for line in listed[2:])
    swagger = json.loads(wsk.run("api", "get", base).out)
    assert swagger["basePath"] == base and swagger["info"]["title"] == "Book Club"
    assert sorted(swagger["paths"]["/books/{isbn}"]) == ["get", "post"]
    assert wsk.json("api", "get", "Book Club") == swagger

    # And the routes run the action with the path parameter in __ow_path
    book = url.replace("{isbn}", "978-0596517748")
    r = httpx.get(book, params={"q": "1"}, trust_env=False)
    assert r.status_code == 200, r.text
    assert (r.json()["__ow_path"], r.json()["q"]) == (f"{base}/books/978-0596517748", "1")
    r = httpx.post(book, json={"title": "Dune"}, trust_env=False)
    assert (r.status_code, r.json()["__ow_method"], r.json()["title"]) == (200, "post", "Dune")

    # When the POST verb is deleted, GET stays
    assert wsk.run("api", "delete", base, "/books/{isbn}", "post").out == (
        f"ok: deleted /books/{{isbn}} POST from {base}\n"
    )
    assert httpx.post(book, json={}, trust_env=False).status_code == 404
    assert httpx.get(book, trust_env=False).status_code == 200

    # When the API is deleted, nothing is served and get fails with the server's words
    assert wsk.run("api", "delete", base).out == f"ok: deleted API {base}\n"
    assert httpx.get(book, trust_env=False).status_code == 404
    missing = wsk.run("api", "get", base, rc=1)
    assert f"API '{base}' does not exist." in missing.err

    # When it is created again from the saved document, it is served again
    saved = write(wsk.home, "club.json", json.dumps(swagger))
    again = wsk.run("api", "create", "--config-file", str(saved)).out.splitlines()
    assert f"ok: created API /books/{{isbn}} get for action {action}" in again
    assert httpx.get(book, trust_env=False).status_code == 200
    wsk.run("api", "delete", "Book Club")
    assert wsk.json("api", "list", base) == []


def test_only_web_actions_get_routes(wsk: Wsk, unique: Callable[[str], str]) -> None:
    # Given an action that is not a web action
    action = unique("plain")
    wsk.run("action", "create", action, str(write(wsk.home, "echo.js", ECHO_HTTP_JS)))
    # Then a route to it is refused before anything is created, as wsk does
    refused = wsk.run("api", "create", "/" + unique("b"), "/x", "get", action, rc=1)
    assert f"Action '/_/{action}' is not a web action." in refused.err
    # And a path parameter with the json response type is refused with OpenWhisk's words
    wsk.run("action", "update", action, "--web", "true")
    bad = wsk.run(
        "api", "create", "/" + unique("b"), "/x/{id}", "get", action, rc=exits.for_status(502)
    )
    assert "must use a response type of '.http'" in bad.err


def test_routes_survive_a_restart(start_server: StartServer, tmp_path: Path) -> None:
    # Given a server with a route to a web action
    home = tmp_path / "home"
    first = start_server(home)
    wsk = Wsk.for_server(first, tmp_path)
    wsk.run("action", "create", "kept", str(write(tmp_path, "echo.js", ECHO_HTTP_JS)),
            "--web", "true")  # fmt: skip
    url = wsk.run("api", "create", "/kept", "/items/{id}", "get", "kept", "-r", "http")
    path = urlsplit(url.out.splitlines()[-1]).path.replace("{id}", "1")
    assert httpx.get(first.api_host + path, trust_env=False).status_code == 200
    first.stop_cleanly()
    # When a server starts again on the same home
    second = start_server(home)
    # Then the route is served again, at the same path
    r = httpx.get(second.api_host + path, trust_env=False)
    assert r.status_code == 200, r.text
    assert r.json()["__ow_path"] == "/kept/items/1"
    second.stop_cleanly()
