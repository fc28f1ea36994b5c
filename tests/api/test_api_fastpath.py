"""The fast path (controller/fastpath.py) answers as Starlette's routing does.

Each request is sent twice to the same platform: through the application as served (the
fast path takes ``POST .../actions/...`` and ``/api/v1/web/...``) and through the same
Starlette application without it. Status, header names (in order) and values, and bodies
must be the same; only what differs between two invokes by nature (the activation id,
the record's times, an echo of the request's own headers) is compared by shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from apisupport import PY_APP_ERROR, assert_error, node_action, python_action
from websupport import HTTP_ECHO_JS, RESPOND_JS, THROW_JS, url, web_action

from squall.cli.standalone import Standalone
from squall.controller.fastpath import InvokeFastPath
from squall.controller.middleware import RequestMiddleware

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
TXID = "fastpath-0123456789"


@pytest.fixture
async def clients(
    system: Standalone, guest_credentials: tuple[str, str]
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(served application, the same Starlette application without the fast path)."""
    served = system.app
    assert isinstance(served, RequestMiddleware)
    fast = served.app
    assert isinstance(fast, InvokeFastPath)
    plain = RequestMiddleware(fast.app)
    made = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            auth=guest_credentials,
            timeout=30.0,
        )
        for app in (served, plain)
    ]
    try:
        yield made[0], made[1]
    finally:
        for c in made:
            await c.aclose()


async def both(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    path: str,
    method: str = "POST",
    **kwargs: Any,
) -> tuple[httpx.Response, httpx.Response]:
    headers = {"X-Request-ID": TXID, **kwargs.pop("headers", {})}
    fast, plain = clients
    a = await fast.request(method, path, headers=headers, **kwargs)
    b = await plain.request(method, path, headers=headers, **kwargs)
    return a, b


def same_headers(a: httpx.Response, b: httpx.Response, *, except_values: set[str]) -> None:
    assert [k for k, _ in a.headers.items()] == [k for k, _ in b.headers.items()]
    for (name, va), (_, vb) in zip(a.headers.items(), b.headers.items(), strict=True):
        if name not in except_values:
            assert va == vb, name


ERRORS: list[tuple[str, dict[str, Any], int]] = [
    ("/api/v1/namespaces/_/actions/no-such-action", {}, 404),
    ("/api/v1/namespaces/_/actions/a/b/c", {}, 404),
    ("/api/v1/namespaces/_/actions/", {}, 400),
    ("/api/v1/namespaces/_/actions/bad%20name!", {}, 400),
    ("/api/v1/namespaces/someone-else/actions/x", {}, 403),
    ("/api/v1/namespaces/_/actions/{name}", {"content": b"{not json"}, 400),
    ("/api/v1/namespaces/_/actions/{name}", {"content": b"[1, 2]"}, 400),
    ("/api/v1/namespaces/_/actions/{name}?blocking=true&timeout=abc", {}, 400),
    ("/api/v1/namespaces/_/actions/{name}?blocking=true&timeout=0", {}, 400),
]


async def test_errors_are_the_same(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], unique: Unique
) -> None:
    name = unique("fast-err")
    created = await clients[1].put(f"/api/v1/namespaces/_/actions/{name}", json=node_action())
    assert created.status_code == 200, created.text
    for path, kwargs, status in ERRORS:
        a, b = await both(clients, path.format(name=name), **kwargs)
        assert_error(a, status)
        assert (a.status_code, a.content) == (b.status_code, b.content), path
        same_headers(a, b, except_values=set())


async def test_unauthenticated_is_the_same(system: Standalone) -> None:
    served = system.app
    assert isinstance(served, RequestMiddleware) and isinstance(served.app, InvokeFastPath)
    answers = []
    for app in (served, RequestMiddleware(served.app.app)):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as c:
            answers.append(
                await c.post("/api/v1/namespaces/_/actions/x", headers={"X-Request-ID": TXID})
            )
    a, b = answers
    assert_error(a, 401)
    assert (a.status_code, a.content) == (b.status_code, b.content)
    same_headers(a, b, except_values=set())


async def test_results_are_the_same(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], unique: Unique
) -> None:
    ok, failing = unique("fast-ok"), unique("fast-502")
    for name, body in ((ok, node_action()), (failing, python_action(PY_APP_ERROR))):
        r = await clients[1].put(f"/api/v1/namespaces/_/actions/{name}", json=body)
        assert r.status_code == 200, r.text
    base = "/api/v1/namespaces/_/actions"
    # result only: the same bytes
    a, b = await both(clients, f"{base}/{ok}?blocking=true&result=true", json={"name": "x"})
    assert a.status_code == b.status_code == 200
    assert a.content == b.content
    same_headers(a, b, except_values={"x-openwhisk-activation-id", "content-length"})
    # the whole record of an application error: 502, the same fields
    a, b = await both(clients, f"{base}/{failing}?blocking=true", json={})
    assert a.status_code == b.status_code == 502
    assert list(a.json()) == list(b.json())
    assert a.json()["response"] == b.json()["response"]
    same_headers(a, b, except_values={"x-openwhisk-activation-id", "content-length"})
    # non-blocking: 202 with the id
    a, b = await both(clients, f"{base}/{ok}", json={})
    assert a.status_code == b.status_code == 202
    assert list(a.json()) == list(b.json()) == ["activationId"]
    assert a.headers["x-openwhisk-activation-id"] == a.json()["activationId"]
    same_headers(a, b, except_values={"x-openwhisk-activation-id"})


async def test_web_actions_are_the_same(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], unique: Unique
) -> None:
    fast = clients[0]
    respond, echo, throw = unique("fast-web"), unique("fast-web-http"), unique("fast-web-x")
    await web_action(fast, respond, RESPOND_JS, parameters={"respond": {"a": [1, "b"]}})
    await web_action(fast, echo, HTTP_ECHO_JS)
    await web_action(fast, throw, THROW_JS)
    await web_action(fast, unique("fast-web-hidden"), export=None)
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", url(respond, ".json"), {}),
        ("GET", url(respond, ".json", "/a/1"), {}),
        ("GET", url(respond, ".text"), {}),
        ("HEAD", url(respond, ".json"), {}),
        ("POST", url(respond, ".json"), {"content": b"{not json"}),
        ("OPTIONS", url(respond), {"headers": {"Origin": "http://x"}}),
        ("PATCH", url(echo, ".http"), {"content": b"raw", "headers": {"Content-Type": "x/y"}}),
        ("GET", url(throw, ".json"), {}),
        ("GET", url(unique("fast-web-missing"), ".json"), {}),
        ("GET", url(respond, ".json", namespace="not-a-namespace"), {}),
        ("GET", "/api/v1/web/guest/default/", {}),
        ("GET", "/api/v1/web/guest/default", {}),  # not the route: Starlette's 404
        ("TRACE", url(respond, ".json"), {}),  # not the route's method: Starlette's 405
        ("GET", "/api/v1/web/whisk.system/apimgmt/getApi", {}),  # API management
    ]
    statuses = []
    for method, path, kwargs in requests:
        a, b = await both(clients, path, method, **kwargs)
        statuses.append(a.status_code)
        assert a.status_code == b.status_code, (method, path, a.text, b.text)
        if a.status_code < 400 and method != "HEAD":
            body_a, body_b = a.content, b.content
            if a.headers.get("content-type", "").startswith("application/json"):
                body_a, body_b = a.json(), b.json()
            if isinstance(body_a, dict):  # an echo holds the request's own headers
                body_a.pop("__ow_headers", None)
                body_b.pop("__ow_headers", None)
            assert body_a == body_b, (method, path)
        elif method != "HEAD":
            assert a.content == b.content, (method, path)
        same_headers(a, b, except_values={"x-openwhisk-activation-id", "content-length"})
    assert statuses == [200, 200, 404, 200, 200, 200, 200, 400, 404, 404, 404, 404, 405, 200]
