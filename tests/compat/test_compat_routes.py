"""The API gateway through the official ``openwhisk`` npm client's ``routes``: create,
list, get, calls through the gateway URLs it answers, and delete (``routes.js``)."""

from __future__ import annotations

from typing import Any

import pytest
from _standalone import Standalone
from compatsupport import rejection, run_script

pytestmark = pytest.mark.compat


def operations(api: dict[str, Any]) -> dict[str, list[str]]:
    paths = api["value"]["apidoc"]["paths"]
    return {path: sorted(verbs) for path, verbs in paths.items()}


def test_routes_through_the_client(standalone: Standalone) -> None:
    # Given / When: the client creates routes, lists, gets, calls and deletes them
    seen = run_script(standalone, "routes.js")
    ns, base = standalone.namespace, seen["basepath"]

    # Then create answers the API with its gateway URL: the server, /api/, the tenant
    url = seen["createdGet"]["gwApiUrl"]
    assert url.startswith(f"{standalone.api_host}/api/") and url.endswith(base)
    assert seen["createdPost"]["gwApiUrl"] == url
    swagger = seen["createdPost"]["apidoc"]
    assert swagger["basePath"] == base
    item = swagger["paths"]["/books/{isbn}"]
    assert sorted(item) == ["get", "post"]
    assert item["get"]["operationId"] == "getBooksIsbn"
    assert item["post"]["x-openwhisk"] == {
        "url": f"{standalone.api_host}/api/v1/web/{ns}/default/{seen['books']}.http",
        "namespace": ns,
        "package": "",
        "action": seen["books"],
    }
    assert [p["name"] for p in item["get"]["parameters"]] == ["isbn"]
    assert seen["createdHello"]["apidoc"]["info"]["title"] == "Hello API"

    # And a path parameter with the json response type is refused with OpenWhisk's words
    failed = rejection(seen["refused"])
    assert failed["statusCode"] == 502
    assert "must use a response type of '.http'" in failed["message"]

    # And list has both APIs, get finds one by base path or by name
    listed = {a["value"]["apidoc"]["basePath"]: a for a in seen["listed"]["apis"]}
    assert {base, seen["helloBase"]} <= set(listed)
    assert operations(listed[base]) == {"/books/{isbn}": ["get", "post"]}
    assert [a["value"]["apidoc"] for a in seen["got"]["apis"]] == [swagger]
    assert [a["value"]["apidoc"]["basePath"] for a in seen["gotByName"]["apis"]] == [
        seen["helloBase"]
    ]

    # And the gateway runs the web actions: GET and POST with the path parameter
    got = seen["gotIsbn"]
    assert got["status"] == 200 and got["cors"] == "*"
    assert got["body"]["__ow_method"] == "get"
    assert got["body"]["__ow_path"] == f"{base}/books/978-0596517748"
    assert got["body"]["q"] == "1"
    posted = seen["posted"]
    assert (posted["status"], posted["body"]["__ow_method"], posted["body"]["title"]) == (
        200,
        "post",
        "Dune",
    )
    assert posted["body"]["__ow_path"] == f"{base}/books/42"
    # And the JSON route answers the action's result as JSON
    assert seen["world"]["status"] == 200
    assert seen["world"]["contentType"] == "application/json"
    assert seen["world"]["body"] == {"payload": "Hello Squall"}

    # And deleting one verb leaves the other; deleting the API ends both
    assert seen["deletedPost"] == {}
    assert seen["postAfterStatus"] == 404
    assert operations(seen["gotAfterVerb"]["apis"][0]) == {"/books/{isbn}": ["get"]}
    assert seen["deleted"] == {}
    assert seen["getAfterStatus"] == 404
    assert seen["listedAfter"] == {"apis": []}
    missing = rejection(seen["deleteMissing"])
    assert missing["statusCode"] == 502
    assert f"API deletion failure: API '{base}' does not exist." in missing["message"]
