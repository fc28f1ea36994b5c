"""Web actions, request side: which actions answer, who may call them, and the arguments
an HTTP request becomes (query, body, ``__ow_*``, raw HTTP, reserved and final names)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import orjson
import pytest
from apisupport import GUEST, NOT_FOUND, NS, assert_error, get_activation
from websupport import (
    ACTIVATION_HEADER,
    INVALID_AUTH,
    NOT_ALLOWED,
    RESERVED,
    args_without_headers,
    url,
    web_action,
)

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]


async def test_anonymous_get_runs_as_the_owner_with_the_request_context(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an exported action with a default parameter
    name = unique("web-echo")
    await web_action(client, name, parameters={"greeting": "hi"})
    # When anyone GETs it with a query and a header of their own
    r = await anonymous.get(
        url(name, ".json"), params={"name": "Jane"}, headers={"X-Custom-Thing": "yes"}
    )
    # Then it ran with the context, the query over the defaults, and no __ow_user
    assert r.status_code == 200, r.text
    args = r.json()
    assert args_without_headers(args) == {
        "__ow_method": "get",
        "__ow_path": "",
        "greeting": "hi",
        "name": "Jane",
    }
    assert args["__ow_headers"]["x-custom-thing"] == "yes"
    assert all(key == key.lower() for key in args["__ow_headers"])
    # And the activation belongs to the action's owner
    record = await get_activation(client, r.headers[ACTIVATION_HEADER])
    assert (record["namespace"], record["subject"], record["name"]) == (GUEST, GUEST, name)
    assert record["response"]["result"] == args


async def test_body_fields_win_over_query_and_parameters(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an exported action with defaults for a and b
    name = unique("web-precedence")
    await web_action(client, name, parameters={"a": "param", "b": "param", "c": "param"})
    # When a POST sets b in the query and c in both the query and the JSON body
    r = await anonymous.post(
        url(name, ".json"), params={"b": "query", "c": "query"}, json={"c": "body", "n": 1}
    )
    # Then parameters < query < body
    assert r.status_code == 200, r.text
    args = r.json()
    assert (args["a"], args["b"], args["c"], args["n"]) == ("param", "query", "body", 1)
    assert args["__ow_method"] == "post"
    assert args["__ow_headers"]["content-type"] == "application/json"


async def test_form_body_is_merged_as_fields(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("web-form")
    await web_action(client, name)
    # When a form is posted
    r = await anonymous.post(url(name, ".json"), data={"field1": "value 1", "field2": "ü"})
    # Then its fields are arguments, and there is no __ow_body
    assert r.status_code == 200, r.text
    args = r.json()
    assert (args["field1"], args["field2"]) == ("value 1", "ü")
    assert "__ow_body" not in args


@pytest.mark.parametrize(
    ("content_type", "content", "expected"),
    [
        ("text/plain", b"1,2,3", "1,2,3"),
        ("application/json", b'[1, "two"]', [1, "two"]),
        ("application/json", b"null", None),
        ("application/octet-stream", b"\x00\xffbin", base64.b64encode(b"\x00\xffbin").decode()),
        ("image/png", b"\x89PNG", base64.b64encode(b"\x89PNG").decode()),
    ],
)
async def test_a_body_that_is_not_an_object_arrives_as_ow_body(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    unique: Unique,
    content_type: str,
    content: bytes,
    expected: object,
) -> None:
    name = unique("web-opaque")
    await web_action(client, name)
    # When the body is text, a JSON value other than an object, or binary
    r = await anonymous.put(
        url(name, ".json"),
        params={"q": "1"},
        content=content,
        headers={"Content-Type": content_type},
    )
    # Then it is __ow_body (text as is, JSON parsed, binary base64) next to the query
    assert r.status_code == 200, r.text
    args = r.json()
    assert args["__ow_body"] == expected
    assert args["q"] == "1"


async def test_an_empty_json_body_adds_nothing(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("web-empty")
    await web_action(client, name)
    r = await anonymous.post(
        url(name, ".json"), content=b"", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert args_without_headers(r.json()) == {"__ow_method": "post", "__ow_path": ""}


async def test_malformed_json_body_is_400(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("web-malformed")
    await web_action(client, name)
    r = await anonymous.post(
        url(name, ".json"), content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert assert_error(r, 400).startswith("The request content was malformed:")


async def test_raw_http_gets_the_query_and_body_unparsed(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a raw-http action with a final parameter x
    name = unique("web-raw")
    await web_action(
        client, name, annotations={"raw-http": True, "final": True}, parameters={"x": "fixed"}
    )
    body = orjson.dumps({"name": "Jane", "x": "other"})
    # When a POST carries a query (naming x and a reserved name) and a JSON body
    r = await anonymous.post(
        url(name, ".json") + "?x=over&__ow_method=put&k=a%20b",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    # Then nothing is merged: the query string as is, the JSON body in base64
    assert r.status_code == 200, r.text
    assert args_without_headers(r.json()) == {
        "__ow_method": "post",
        "__ow_path": "",
        "__ow_query": "x=over&__ow_method=put&k=a%20b",
        "__ow_body": base64.b64encode(body).decode(),
        "x": "fixed",
    }
    # And text bodies arrive as text, an absent query and body as empty strings
    r = await anonymous.post(
        url(name, ".json"), content=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert (r.json()["__ow_body"], r.json()["__ow_query"]) == ("hello", "")
    r = await anonymous.get(url(name, ".json"))
    assert (r.json()["__ow_body"], r.json()["__ow_query"]) == ("", "")


@pytest.mark.parametrize("reserved", RESERVED)
async def test_reserved_names_in_query_or_body_are_400(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique, reserved: str
) -> None:
    name = unique("web-reserved")
    await web_action(client, name)
    # When a request names a reserved __ow_ argument in the query, or in the body
    by_query = await anonymous.get(url(name, ".json"), params={reserved: "x"})
    by_body = await anonymous.post(url(name, ".json"), json={reserved: "x"})
    by_form = await anonymous.post(url(name, ".json"), data={reserved: "x"})
    # Then each is refused with OpenWhisk's message, and nothing ran
    for r in (by_query, by_body, by_form):
        assert_error(r, 400, NOT_ALLOWED)
        assert ACTIVATION_HEADER not in r.headers


async def test_final_parameters_cannot_be_overridden(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a package parameter x and action parameters y (set) and empty (null), final
    pkg = unique("web-final-pkg")
    r = await client.put(f"{NS}/packages/{pkg}", json={"parameters": [{"key": "x", "value": "X"}]})
    assert r.status_code == 200, r.text
    name = f"{pkg}/a"
    await web_action(
        client, name, annotations={"final": True}, parameters={"y": "Y", "empty": None}
    )
    # When requests try to set x or y by query or body
    attempts = [
        await anonymous.get(url(name, ".json"), params={"x": "over"}),
        await anonymous.get(url(name, ".json"), params={"y": "over"}),
        await anonymous.post(url(name, ".json"), json={"y": "over"}),
        await anonymous.post(url(name, ".json"), data={"x": "over"}),
    ]
    # Then each is 400
    for r in attempts:
        assert_error(r, 400, NOT_ALLOWED)
    # But a parameter without a value may be set
    r = await anonymous.get(url(name, ".json"), params={"empty": "set"})
    assert r.status_code == 200, r.text
    assert (r.json()["x"], r.json()["y"], r.json()["empty"]) == ("X", "Y", "set")


@pytest.mark.parametrize("export", [None, False, "true"])
async def test_an_action_that_is_not_exported_is_not_found(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique, export: object
) -> None:
    # Given an action without web-export, with web-export false, or not the boolean true
    name = unique("web-private")
    await web_action(client, name, export=export)
    # When it is called as a web action, by anyone or by its owner
    for caller in (anonymous, client):
        r = await caller.get(url(name, ".json"))
        # Then it does not exist (and it did not run)
        assert_error(r, 404, NOT_FOUND)
        assert ACTIVATION_HEADER not in r.headers


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/web/nobody-here/default/a.json",
        "/api/v1/web/guest/no-such-package/a.json",
        "/api/v1/web/guest/default/no-such-action-xyz.json",
        "/api/v1/web/guest/default/no-such-action-xyz",
        "/api/v1/web/guest/default",
        "/api/v1/web/guest",
        "/api/v1/web/guest/default/bad!name.json",
    ],
)
async def test_missing_namespace_package_or_action_is_404(
    anonymous: httpx.AsyncClient, path: str
) -> None:
    assert_error(await anonymous.get(path), 404, NOT_FOUND)


async def test_unknown_extension_is_part_of_the_name(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("web-ext")
    await web_action(client, name)
    # .xyz is no extension: the action "name.xyz" does not exist
    assert_error(await anonymous.get(url(name, ".xyz")), 404, NOT_FOUND)


async def test_package_path_and_binding_path(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an exported action in a package with a parameter, and a binding of it
    pkg, binding = unique("web-pkg"), unique("web-bind")
    r = await client.put(
        f"{NS}/packages/{pkg}", json={"parameters": [{"key": "from", "value": "package"}]}
    )
    assert r.status_code == 200, r.text
    r = await client.put(
        f"{NS}/packages/{binding}",
        json={
            "binding": {"namespace": GUEST, "name": pkg},
            "parameters": [{"key": "via", "value": "binding"}],
        },
    )
    assert r.status_code == 200, r.text
    await web_action(client, f"{pkg}/a")
    # When it is called through its package, through the binding, and through default
    direct = await anonymous.get(url(f"{pkg}/a", ".json"))
    bound = await anonymous.get(url(f"{binding}/a", ".json"))
    default = await anonymous.get(url("a", ".json"))
    # Then the package path merges the package's parameters, the binding adds its own,
    # and "default" names only top-level actions
    assert direct.status_code == 200, direct.text
    assert direct.json()["from"] == "package" and "via" not in direct.json()
    assert bound.status_code == 200, bound.text
    assert (bound.json()["from"], bound.json()["via"]) == ("package", "binding")
    assert default.status_code == 404


async def test_require_whisk_auth_true_needs_valid_credentials(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    guest_credentials: tuple[str, str],
    unique: Unique,
) -> None:
    name = unique("web-auth")
    await web_action(client, name, annotations={"require-whisk-auth": True})
    # When called without credentials, or with wrong ones
    assert_error(await anonymous.get(url(name, ".json")), 401, INVALID_AUTH)
    uuid_, _ = guest_credentials
    wrong = await anonymous.get(url(name, ".json"), auth=(uuid_, "not-the-key"))
    assert_error(wrong, 401, INVALID_AUTH)
    # Then 401; with valid credentials it runs and learns who called
    r = await client.get(url(name, ".json"))
    assert r.status_code == 200, r.text
    assert r.json()["__ow_user"] == GUEST


@pytest.mark.parametrize("secret", ["s3cret-Value", 4242])
async def test_require_whisk_auth_secret_must_match_the_header(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique, secret: object
) -> None:
    name = unique("web-secret")
    await web_action(client, name, annotations={"require-whisk-auth": secret})
    # When the header is missing, wrong, or a prefix of the secret
    for headers in (
        {},
        {"X-Require-Whisk-Auth": "wrong"},
        {"X-Require-Whisk-Auth": str(secret)[:-1]},
    ):
        r = await anonymous.get(url(name, ".json"), headers=headers)
        # Then 401 without running the action
        assert_error(r, 401, INVALID_AUTH)
        assert ACTIVATION_HEADER not in r.headers
    # And with the right secret it runs, anonymous (no __ow_user)
    r = await anonymous.get(url(name, ".json"), headers={"X-Require-Whisk-Auth": str(secret)})
    assert r.status_code == 200, r.text
    assert "__ow_user" not in r.json()
    # While a caller with credentials is named even when only the secret is checked
    r = await client.get(url(name, ".json"), headers={"X-Require-Whisk-Auth": str(secret)})
    assert r.json()["__ow_user"] == GUEST


@pytest.mark.parametrize("value", [None, {"a": 1}])
async def test_require_whisk_auth_of_another_type_refuses_everyone(
    client: httpx.AsyncClient, unique: Unique, value: object
) -> None:
    name = unique("web-misconfigured")
    await web_action(client, name, annotations={"require-whisk-auth": value})
    assert_error(await client.get(url(name, ".json")), 401, INVALID_AUTH)


async def test_require_whisk_auth_false_requires_nothing(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("web-open")
    await web_action(client, name, annotations={"require-whisk-auth": False})
    assert (await anonymous.get(url(name, ".json"))).status_code == 200


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
async def test_every_method_reaches_the_action(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique, method: str
) -> None:
    name = unique("web-method")
    await web_action(client, name)
    r = await anonymous.request(method, url(name, ".json"), params={"m": method})
    assert r.status_code == 200, r.text
    assert (r.json()["__ow_method"], r.json()["m"]) == (method.lower(), method)


async def test_trailing_path_becomes_ow_path(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("web-path")
    await web_action(client, name)
    # When the URL continues after the action name and extension
    deep = await anonymous.get(url(name, ".json", "/users/42/photo.png"))
    slash = await anonymous.get(url(name, ".json", "/"))
    # Then the rest is __ow_path (no projection of the result)
    assert deep.status_code == 200, deep.text
    assert deep.json()["__ow_path"] == "/users/42/photo.png"
    assert slash.json()["__ow_path"] == "/"


async def test_request_larger_than_allowed_is_413(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("web-large")
    await web_action(client, name)
    size = 1024 * 1024 + 1
    r = await anonymous.post(
        url(name, ".json"), content=b"a" * size, headers={"Content-Type": "text/plain"}
    )
    assert_error(r, 413, f"Request larger than allowed: {size} > 1048576 bytes.")
