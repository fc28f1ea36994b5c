"""Web actions, response side: the extensions, ``.http`` results (status, headers, text,
JSON and base64 bodies, 204), OpenWhisk's error answers, HEAD, CORS and custom OPTIONS."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from apisupport import assert_error, get_activation
from websupport import (
    ACTIVATION_HEADER,
    DEFAULT_CORS,
    ERROR_PROCESSING,
    HTTP_ECHO_JS,
    PROPERTY_NOT_FOUND,
    RESPOND_JS,
    THROW_JS,
    url,
    web_action,
)

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]

# A 10x6 PNG (OpenWhisk's own web action test sample).
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAoAAAAGCAYAAAD68A/GAAAA/klEQVQYGWNgAAEHBxaG//+ZQMyyn581Pfas+cRQnf1LfF"
    "Ljf+62smUgcUbt0FA2Zh7drf/ffMy9vLn3RurrW9e5hCU11i2azfD4zu1/DHz8TAy/foUxsXBrFzHzC7r8+M9S1vn1qxQT07dDjL"
    "9fdemrqKxlYGT6z8AIMo6hgeUfA0PUvy9fGFh5GWK3z7vNxSWt++jX99+8SoyiGQwsW38w8PJEM7x5v5SJ8f+/xv8MDAzffv9hev"
    "fkWjiXBGMpMx+j2awovjcMjFztDO8+7GF49LkbZDCDeXLTWnZO7qDfn1/+5jbw/8pjYWS4wZLztXnuEuYTk2M+MzIw/AcA36Vewa"
    "D6fzsAAAAASUVORK5CYII="
)


async def respond(
    client: httpx.AsyncClient, unique: Unique, result: Any, stem: str = "web-respond"
) -> str:
    """A web action named after ``stem`` that returns ``result``; its name."""
    name = unique(stem)
    await web_action(client, name, RESPOND_JS, parameters={"respond": result})
    return name


async def test_http_result_sets_status_headers_and_text_body(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = await respond(
        client,
        unique,
        {
            "statusCode": 201,
            "headers": {"X-Answer": 42, "X-Flag": True, "Set-Cookie": ["a=b", "c=d; Path=/"]},
            "body": "<h1>hé</h1>",
        },
    )
    # When it is called with .http, and with no extension (.http is the default)
    for path in (url(name, ".http"), url(name)):
        r = await anonymous.get(path)
        # Then the result is the HTTP answer; a string body without a type is HTML
        assert r.status_code == 201, r.text
        assert r.text == "<h1>hé</h1>"
        assert r.headers["content-type"] == "text/html; charset=UTF-8"
        assert (r.headers["x-answer"], r.headers["x-flag"]) == ("42", "true")
        assert r.headers.get_list("set-cookie") == ["a=b", "c=d; Path=/"]
        # And it names its activation, whose result is the action's
        record = await get_activation(client, r.headers[ACTIVATION_HEADER])
        assert record["response"]["result"]["statusCode"] == 201


async def test_http_base64_body_of_a_binary_type_is_decoded(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = await respond(
        client, unique, {"headers": {"Content-Type": "image/png"}, "body": PNG_B64}
    )
    r = await anonymous.get(url(name, ".http"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.content == base64.b64decode(PNG_B64)
    assert r.content.startswith(b"\x89PNG")
    assert r.headers["content-length"] == str(len(r.content))


async def test_http_binary_type_with_a_body_that_is_not_base64_is_400(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = await respond(
        client, unique, {"headers": {"Content-Type": "image/png"}, "body": "not base64!"}
    )
    r = await anonymous.get(url(name, ".http"))
    assert_error(r, 400, "Response type in header did not match generated content type.")


@pytest.mark.parametrize(
    ("headers", "content_type"),
    [({}, "application/json"), ({"content-type": "application/hal+json"}, "application/hal+json")],
)
async def test_http_json_body_is_serialized(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    unique: Unique,
    headers: dict[str, str],
    content_type: str,
) -> None:
    name = await respond(client, unique, {"headers": headers, "body": {"field": ["value", 1]}})
    r = await anonymous.get(url(name, ".http"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == content_type
    assert r.json() == {"field": ["value", 1]}


async def test_http_json_string_body_and_base64_json_pass(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    as_text = await respond(
        client, unique, {"headers": {"Content-Type": "application/json"}, "body": '{"a": 1}'}
    )
    encoded = base64.b64encode(b'{"b": 2}').decode()
    as_b64 = await respond(
        client, unique, {"headers": {"Content-Type": "application/json"}, "body": encoded}, "b64"
    )
    assert (await anonymous.get(url(as_text, ".http"))).json() == {"a": 1}
    assert (await anonymous.get(url(as_b64, ".http"))).json() == {"b": 2}


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (
            {"headers": {"content-type": "text/html"}, "body": {"a": 1}},
            "Response type in header did not match generated content type.",
        ),
        (
            {"headers": {"content-type": "xyzbar"}, "body": "hi"},
            "Response did not specify a known content-type.",
        ),
        ({"statusCode": "teapot"}, "Response is not valid 'message/http'."),
        ({"statusCode": 99}, "Response is not valid 'message/http'."),
        ({"headers": "nope"}, "Response is not valid 'message/http'."),
        ({"headers": {"X-Bad": {"nested": 1}}}, "Response is not valid 'message/http'."),
        ({"headers": {"X-Split": "a\r\nInjected: yes"}}, "Response is not valid 'message/http'."),
        (["not", "an", "object"], "Response is not valid 'message/http'."),
    ],
)
async def test_http_results_that_cannot_be_answered_are_400(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    unique: Unique,
    result: Any,
    message: str,
) -> None:
    name = await respond(client, unique, result)
    r = await anonymous.get(url(name, ".http"))
    assert_error(r, 400, message)
    assert ACTIVATION_HEADER in r.headers


@pytest.mark.parametrize("result", [{}, {"body": ""}, {"body": None}, {"headers": {"X-A": "1"}}])
async def test_http_empty_body_is_204(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique, result: Any
) -> None:
    name = await respond(client, unique, result)
    r = await anonymous.get(url(name, ".http"))
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert "content-type" not in r.headers


@pytest.mark.parametrize("status", [200, 201, 302, 404])
async def test_http_status_without_body_is_kept(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique, status: int
) -> None:
    name = await respond(
        client, unique, {"statusCode": status, "headers": {"Location": "https://example.org/"}}
    )
    r = await anonymous.get(url(name, ".http"))
    assert r.status_code == status
    assert r.headers["location"] == "https://example.org/"
    assert r.content == b""


async def test_json_html_svg_text_extensions(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    svg = '<svg><circle cx="3" cy="3" r="3"/></svg>'
    name = await respond(
        client, unique, {"html": "<p>hi</p>", "svg": svg, "text": "plain", "n": [1, {"a": None}]}
    )
    json_ = await anonymous.get(url(name, ".json"))
    assert json_.headers["content-type"] == "application/json"
    assert json_.json()["n"] == [1, {"a": None}]
    html = await anonymous.get(url(name, ".html"))
    assert (html.text, html.headers["content-type"]) == ("<p>hi</p>", "text/html; charset=UTF-8")
    image = await anonymous.get(url(name, ".svg"))
    assert (image.text, image.headers["content-type"]) == (svg, "image/svg+xml")
    text = await anonymous.get(url(name, ".text"))
    assert (text.text, text.headers["content-type"]) == ("plain", "text/plain; charset=UTF-8")


async def test_body_wins_over_the_extension_property(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = await respond(client, unique, {"body": "from body", "html": "x", "text": "y"})
    assert (await anonymous.get(url(name, ".html"))).text == "from body"
    assert (await anonymous.get(url(name, ".text"))).text == "from body"


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        ({"a": "A"}, '{\n  "a": "A"\n}'),
        ([1], "[\n  1\n]"),
        (True, "true"),
        (7, "7"),
        (None, "null"),
    ],
)
async def test_text_prints_every_json_value(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    unique: Unique,
    value: Any,
    printed: str,
) -> None:
    name = await respond(client, unique, {"text": value})
    r = await anonymous.get(url(name, ".text"))
    assert (r.status_code, r.text) == (200, printed)


async def test_missing_or_mistyped_properties(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = await respond(client, unique, {"other": 1, "html": 5})
    assert_error(await anonymous.get(url(name, ".text")), 404, PROPERTY_NOT_FOUND)
    assert_error(await anonymous.get(url(name, ".html")), 400, "Response is not valid 'text/html'.")
    assert_error(
        await anonymous.get(url(name, ".svg")), 400, "Response is not valid 'image/svg+xml'."
    )


async def test_application_error_is_rendered_like_a_result(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an action that fails with an error shaped as an HTTP answer
    name = await respond(client, unique, {"error": {"statusCode": 418, "body": "teapot"}})
    # Then .http answers with it; .json cannot render a non-array non-object error value
    r = await anonymous.get(url(name, ".http"))
    assert (r.status_code, r.text) == (418, "teapot")
    plain = await respond(client, unique, {"error": "bad input"}, "plain")
    r = await anonymous.get(url(plain, ".json"))
    assert_error(r, 400, "Response is not valid 'application/json'.")
    r = await anonymous.get(url(plain, ".text"))
    assert (r.status_code, r.text) == (200, "bad input")


async def test_developer_error_is_400(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("web-throw")
    await web_action(client, name, THROW_JS)
    for ext in (".http", ".json"):
        r = await anonymous.get(url(name, ext))
        assert_error(r, 400, ERROR_PROCESSING)
        record = await get_activation(client, r.headers[ACTIVATION_HEADER])
        assert record["response"]["status"] == "action developer error"


async def test_head_answers_headers_without_content(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = await respond(client, unique, {"headers": {"X-Seen": "yes"}, "body": "twelve bytes"})
    r = await anonymous.head(url(name, ".http"))
    assert r.status_code == 200
    assert (r.headers["x-seen"], r.headers["content-length"]) == ("yes", "12")
    assert r.content == b""


async def test_default_cors_on_answers_and_options_preflight(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = await respond(client, unique, {"body": "ok"})
    # When it is called, and when it fails to render
    for r in (await anonymous.get(url(name)), await anonymous.get(url(name, ".json"))):
        # Then OpenWhisk's web CORS headers are on the answer (success and error alike)
        for header, value in DEFAULT_CORS.items():
            assert r.headers[header] == value
        assert r.headers.get_list("access-control-allow-origin") == ["*"]
    # When a browser sends a preflight
    r = await anonymous.options(
        url(name), headers={"Access-Control-Request-Headers": "x-custom, content-type"}
    )
    # Then 200 with the CORS headers, the requested headers echoed, and no activation
    assert (r.status_code, r.content) == (200, b"")
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-headers"] == "x-custom, content-type"
    assert ACTIVATION_HEADER not in r.headers


async def test_cors_headers_of_the_action_win(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    name = await respond(
        client,
        unique,
        {"headers": {"Access-Control-Allow-Origin": "https://app.example"}, "body": "x"},
    )
    r = await anonymous.get(url(name))
    assert r.headers.get_list("access-control-allow-origin") == ["https://app.example"]
    assert r.headers["access-control-allow-methods"] == DEFAULT_CORS["access-control-allow-methods"]


async def test_custom_options_lets_the_action_answer_options(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an action with web-custom-options that also requires credentials
    name = unique("web-options")
    code = (
        "function main(args) {\n"
        "  if (args.__ow_method === 'options') {\n"
        "    return {statusCode: 200, headers: {'Access-Control-Allow-Methods': 'OPTIONS, GET'}};\n"
        "  }\n"
        "  return {body: 'hello'};\n"
        "}\n"
    )
    await web_action(
        client, name, code, annotations={"web-custom-options": True, "require-whisk-auth": True}
    )
    # When a browser sends a preflight (without credentials)
    r = await anonymous.options(url(name), headers={"Access-Control-Request-Headers": "x-a"})
    # Then the action answered it, and no default CORS header was added
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-methods"] == "OPTIONS, GET"
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-headers" not in r.headers
    assert ACTIVATION_HEADER in r.headers
    # And its other answers carry no default CORS headers either
    r = await client.get(url(name))
    assert (r.status_code, r.text) == (200, "hello")
    assert "access-control-allow-origin" not in r.headers
    assert_error(await anonymous.get(url(name)), 401)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_http_echo_for_every_method(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique: Unique, method: str
) -> None:
    name = unique("web-http-echo")
    await web_action(client, name, HTTP_ECHO_JS, annotations={"web-custom-options": True})
    r = await anonymous.request(method, url(name, ".http", "/x"), content=b"")
    assert r.status_code == 200, r.text
    args = orjson.loads(r.content)
    assert (args["__ow_method"], args["__ow_path"]) == (method.lower(), "/x")
