"""Web actions through a real ``squall standalone`` over real HTTP: what the wire carries
(binary bodies, HEAD, repeated and non-ASCII headers, preflights) that an in-process
ASGI client cannot show."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from _standalone import Standalone

pytestmark = pytest.mark.integration

# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
RESPOND_JS = "function main(args) { return args.respond; }\n"
PY_RAW = (
    "def main(args):\n"
    "    return {'query': args['__ow_query'], 'body': args['__ow_body'],\n"
    "            'method': args['__ow_method'], 'path': args['__ow_path']}\n"
)


@pytest.fixture
def anonymous(standalone: Standalone) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standalone.api, timeout=30.0, trust_env=False) as c:
        yield c


def web_action(
    client: httpx.Client, name: str, code: str, kind: str = "nodejs:default", **extra: Any
) -> str:
    """Create an exported action; its web path relative to ``/api/v1``."""
    annotations = [{"key": "web-export", "value": True}, *extra.pop("annotations", [])]
    body = {"exec": {"kind": kind, "code": code}, "annotations": annotations, **extra}
    r = client.put(f"/namespaces/_/actions/{name}", json=body)
    assert r.status_code == 200, r.text
    return f"/web/guest/default/{name}"


def test_binary_http_body_and_head_on_the_wire(
    client: httpx.Client, anonymous: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given a web action answering a PNG, a non-ASCII header and two cookies
    result = {
        "headers": {
            "Content-Type": "image/png",
            "X-Title": "café",
            "Set-Cookie": ["a=1", "b=2; Path=/"],
        },
        "body": base64.b64encode(PNG).decode(),
    }
    path = web_action(
        client, unique("png"), RESPOND_JS, parameters=[{"key": "respond", "value": result}]
    )
    # When it is fetched over HTTP
    r = anonymous.get(f"{path}.http")
    # Then the exact bytes arrive with the action's headers
    assert r.status_code == 200, r.text
    assert r.content == PNG
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-length"] == str(len(PNG))
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2; Path=/"]
    assert r.headers.raw[[k.lower() for k, _ in r.headers.raw].index(b"x-title")][1] == (
        "café".encode()
    )
    assert len(r.headers["x-openwhisk-activation-id"]) == 32
    # And HEAD answers the same headers without the content
    head = anonymous.head(f"{path}.http")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(PNG))
    assert head.content == b""


def test_preflight_and_raw_python_action(
    client: httpx.Client, anonymous: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given a raw-http Python web action
    path = web_action(
        client,
        unique("raw-py"),
        PY_RAW,
        kind="python:default",
        annotations=[{"key": "raw-http", "value": True}],
    )
    # When a browser sends a preflight
    pre = anonymous.options(
        f"{path}.json",
        headers={"Origin": "https://a.example", "Access-Control-Request-Headers": "x-a"},
    )
    # Then the server answers it with the web CORS headers, without running the action
    assert pre.status_code == 200, pre.text
    assert pre.headers["access-control-allow-origin"] == "*"
    assert pre.headers["access-control-allow-headers"] == "x-a"
    assert "x-openwhisk-activation-id" not in pre.headers
    # And the real request reaches the action with its query and form body unparsed
    r = anonymous.post(f"{path}.json/a/b?x=1&y=2", data={"name": "Jane Doe"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "query": "x=1&y=2",
        "body": "name=Jane+Doe",
        "method": "post",
        "path": "/a/b",
    }
    assert r.headers["access-control-allow-origin"] == "*"
