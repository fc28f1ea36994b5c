"""The hot-route protocol serves web actions as the ASGI path does (controller/hotroute.py).

As ``test_api_hotroute.py`` (whose servers fixture this module uses): two real uvicorn
servers on loopback serve the same platform, one with the protocol ``squall standalone``
serves, one with plain uvicorn (every request through ASGI). The same raw requests go to
both and the answers must be the same bytes but for the ``date`` header's second and
generated ids (32 hex digits): every answer shape of a web action (a JSON result,
``.http`` with status, repeated headers and a base64 body, ``.html``/``.svg``/``.text``,
redirects, 204/304, the 202 after the blocking wait, 404/401/400/413/429, OPTIONS with
and without ``web-custom-options``, HEAD, an action's own ``Connection: close`` and a
header value uvicorn refuses), and the hot route must have taken each of them. This
module runs its own platform: a short blocking wait (202) and a request limit under the
64 KiB the hot route holds (413 on either path).
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
import test_api_hotroute as hotroute
from apisupport import GUEST
from websupport import ECHO_JS, HTTP_ECHO_JS

from squall.cli.standalone import Standalone
from squall.config import Settings
from squall.errors import Conflict

pytestmark = pytest.mark.anyio

# The fixtures of test_api_hotroute.py: the two servers (built on this module's system).
servers = hotroute.servers
auth = hotroute.auth
BASE = hotroute.BASE
masked = hotroute.masked

Unique = Callable[[str], str]
Servers = tuple[hotroute._Served, hotroute._Served, list[str]]
WAIT_MS = 2000
LIMIT = 32 * 1024

SLOW_JS = "function main() { return new Promise(r => setTimeout(() => r({done: 1}), 3500)); }"
# One web action per answer shape, chosen by the query parameter ``s``.
SHAPES_JS = r"""
function main(a) {
  const shapes = {
    png: {statusCode: 201, body: 'iVBORw0KGgo=', headers: {
      'Content-Type': 'image/png', 'X-Multi': ['1', 2, true],
      'Access-Control-Allow-Origin': 'https://example.org'}},
    redirect: {statusCode: 302, headers: {location: 'https://example.org/x'}},
    empty: {statusCode: 204, headers: {'X-Empty': 'yes'}},
    notmod: {statusCode: 304, body: 'ignored'},
    json: {statusCode: 200, headers: {'Content-Type': 'application/vnd.api+json'},
           body: {a: [1, 2]}},
    close: {headers: {Connection: 'close'}, body: 'bye'},
    bad: {headers: {'X-Bad': 'a\u0001b'}, body: 'x'},
    error: {error: {statusCode: 418, body: 'teapot'}},
    nothttp: {statusCode: 99},
    markup: {html: '<p>hi</p>', svg: '<svg/>', text: 'plain'},
    utf8: {headers: {'X-Utf': '\u00e9'}, body: '\u00fc'},
    framing: {headers: {'Content-Length': '1', 'Transfer-Encoding': 'chunked'}, body: 'ok'},
  };
  return shapes[a.s];
}
"""


@pytest.fixture(scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Standalone]:
    settings = Settings(
        home=tmp_path_factory.mktemp("squall-hot-web"),
        keep_warm_s=60,
        invocations_per_minute=100_000,
        concurrent_invocations=10_000,
        max_blocking_wait_ms=WAIT_MS,
        max_request_bytes=LIMIT,
    )
    platform = await Standalone.start(settings)
    try:
        yield platform
    finally:
        await platform.close()


def raw(
    method: str,
    path: str,
    body: bytes = b"",
    *headers: str,
    txid: str | None = "hot-web-0123",
    version: str = "1.1",
) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1"]
    if txid is not None:
        lines.append(f"X-Request-ID: {txid}")
    lines.extend(headers)
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader, *, head_only: bool = False) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
    found = re.search(rb"\r\ncontent-length: (\d+)\r\n", head)
    if head_only or not found:
        return head
    return head + await asyncio.wait_for(reader.readexactly(int(found[1])), 60)


async def exchange(port: int, *parts: bytes, heads: tuple[bool, ...] = (False,)) -> list[bytes]:
    """Write ``parts``, read one answer per entry of ``heads`` (True: a HEAD's, no body),
    then end the request side and check the server closes with nothing more to say."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
        got = [await read_answer(reader, head_only=h) for h in heads]
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 60) == b""
        return got
    finally:
        writer.close()


async def both(servers: Servers, *parts: bytes, heads: tuple[bool, ...] = (False,)) -> bytes:
    """The answers of both servers, the same bytes; the first (the hot server's)."""
    hot, plain, _ = servers
    a = await exchange(hot.port, *parts, heads=heads)
    b = await exchange(plain.port, *parts, heads=heads)
    assert [masked(x) for x in a] == [masked(x) for x in b], parts
    return b"".join(a)


def web(name: str, ext: str = "", tail: str = "", namespace: str = GUEST) -> str:
    return f"/api/v1/web/{namespace}/default/{name}{ext}{tail}"


async def warm(port: int, path: str, auth: str) -> None:
    """Call ``path`` until it answers 200: a cold start on a loaded machine may take
    longer than the blocking wait (202), and then the action's container is warm."""
    request = raw("GET", path, b"", f"Authorization: {auth}", "X-Require-Whisk-Auth: s3cret")
    for _ in range(30):
        (answer,) = await exchange(port, request)
        if answer.startswith(b"HTTP/1.1 200 OK\r\n"):
            return
        assert answer.startswith(b"HTTP/1.1 202 Accepted\r\n"), answer
    raise AssertionError(f"{path} never answered 200")


async def put_action(
    port: int,
    auth: str,
    name: str,
    code: str,
    annotations: dict[str, object] | None = None,
    parameters: dict[str, object] | None = None,
) -> None:
    anns = {"web-export": True, **(annotations or {})}
    document = {
        "exec": {"kind": "nodejs:default", "code": code},
        "annotations": [{"key": k, "value": v} for k, v in anns.items()],
        "parameters": [{"key": k, "value": v} for k, v in (parameters or {}).items()],
    }
    body = orjson.dumps(document)
    put = raw("PUT", f"{BASE}/{name}", body, f"Authorization: {auth}", "Content-Type: a/json")
    put = put.replace(b"Content-Type: a/json", b"Content-Type: application/json")
    (answer,) = await exchange(port, put)
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer


async def test_every_answer_shape_is_the_same_bytes(
    system: Standalone, servers: Servers, auth: str, unique: Unique
) -> None:
    hot = servers[0].port
    echo, rawhttp, shapes = unique("echo"), unique("raw"), unique("shapes")
    options, guarded, secret = unique("options"), unique("guarded"), unique("secret")
    final, hidden = unique("final"), unique("hidden")
    await put_action(hot, auth, echo, ECHO_JS)
    await put_action(hot, auth, rawhttp, ECHO_JS, {"raw-http": True})
    await put_action(hot, auth, shapes, SHAPES_JS)
    await put_action(hot, auth, options, HTTP_ECHO_JS, {"web-custom-options": True})
    await put_action(hot, auth, guarded, ECHO_JS, {"require-whisk-auth": True})
    await put_action(hot, auth, secret, ECHO_JS, {"require-whisk-auth": "s3cret"})
    await put_action(hot, auth, final, ECHO_JS, {"final": True}, {"fixed": 1})
    await put_action(hot, auth, hidden, ECHO_JS, {"web-export": False})
    # Warm every action, so that no answer waits on a cold start (the wait is short).
    for name in (echo, rawhttp, shapes, options, guarded, secret, final):
        await warm(hot, web(name, ".json", "?s=markup"), auth)

    wrong = "Authorization: Basic " + base64.b64encode(b"no-such:key").decode()
    form = "Content-Type: application/x-www-form-urlencoded"
    as_json = "Content-Type: application/json"
    cases: list[tuple[bytes, bool]] = [
        # JSON results, every method, the query, bodies of each kind, repeated headers
        (raw("GET", web(echo, ".json", "/a/b?x=1&y=&x=2"), b"", "X-Multi: 1", "X-Multi: 2"), False),
        (raw("GET", web(echo, ".json"), txid=None), False),
        # The header list as uvicorn makes it: names lower-cased, trailing whitespace
        # of values stripped (not leading, not inner), empty values, repeated names
        (
            raw(
                "GET",
                web(echo, ".json"),
                b"",
                "X-Mixed-CASE: Va  Lue \t ",
                "X-Empty:",
                "X-Blank: \t ",
                "x-MIXED-case: second",
                "X-Latin: \xe9t\xe9",
            ),
            False,
        ),
        (raw("GET", web(echo, ".json"), txid="t" * 80), False),
        (raw("POST", web(echo, ".json"), b'{"name": "x", "n": [1]}', as_json), False),
        (raw("POST", web(echo, ".json"), b"a=1&b=two", form), False),
        (raw("PUT", web(echo, ".json"), b"some text", "Content-Type: text/plain"), False),
        (raw("PATCH", web(echo, ".json"), bytes(range(256))), False),
        (raw("DELETE", web(echo, ".json")), False),
        (raw("POST", web(echo, ".json"), b"[1, 2]", as_json), False),
        (raw("GET", web(echo)), False),  # .http without a body: 204
        (raw("GET", web(echo, ".json"), b"", "Connection: close"), False),
        (raw("GET", web(echo, ".json"), version="1.0"), False),
        (raw("POST", web(rawhttp, ".json", "?q=1&q=2"), b'{"a": 1}', as_json), False),
        (raw("POST", web(echo, ".json"), b"x" * 20_000, "Content-Type: text/plain"), False),
        # HEAD: a GET's headers, no body
        (raw("HEAD", web(echo, ".json")), True),
        (raw("HEAD", web(shapes, ".http", "?s=png")), True),
        (raw("HEAD", web("no-such-action", ".json")), True),
        # CORS: the default preflight, a requested header echoed, a custom OPTIONS action
        (raw("OPTIONS", web(echo, ".json")), False),
        (raw("OPTIONS", web(echo), b"", "Access-Control-Request-Headers: X-Foo"), False),
        (raw("OPTIONS", web(options, ".http")), False),
        (raw("GET", web(options, ".http")), False),
        # .http shapes, the other extensions, application and developer errors
        *(
            (raw("GET", web(shapes, ".http", f"?s={s}")), False)
            for s in ("png", "redirect", "empty", "notmod", "json", "utf8", "framing")
        ),
        *(
            (raw("GET", web(shapes, ".http", f"?s={s}")), False)
            # (Not a thrown error: a developer error destroys the container, so each
            # side would wait on a cold start. Its 400 is the path of ``nothttp``'s.)
            for s in ("error", "nothttp", "markup")
        ),
        (raw("GET", web(shapes, ".html", "?s=markup")), False),
        (raw("GET", web(shapes, ".svg", "?s=markup")), False),
        (raw("GET", web(shapes, ".text", "?s=markup")), False),
        (raw("GET", web(shapes, ".text", "?s=png")), False),
        (raw("GET", web(shapes, ".json", "?s=error")), False),
        (raw("GET", web(shapes, ".text", "?s=redirect")), False),
        # 404s: unknown extension, action, namespace, bad names, not exported
        (raw("GET", web(shapes, ".xml")), False),
        (raw("GET", web("no-such-action", ".json")), False),
        (raw("GET", web(echo, ".json", namespace="no-such-namespace")), False),
        (raw("GET", web("bad%20name!", ".json")), False),
        (raw("GET", f"/api/v1/web/{GUEST}/bad%20pkg!/{echo}.json"), False),
        (raw("GET", web(hidden, ".json")), False),
        # 401s and their successes; 400s; 413 on either side of what is declared
        (raw("GET", web(guarded, ".json")), False),
        (raw("GET", web(guarded, ".json"), b"", wrong), False),
        (raw("GET", web(guarded, ".json"), b"", f"Authorization: {auth}"), False),
        (raw("GET", web(secret, ".json"), b"", "X-Require-Whisk-Auth: nope"), False),
        (raw("GET", web(secret, ".json"), b"", "X-Require-Whisk-Auth: s3cret"), False),
        (raw("GET", web(echo, ".json", "?__ow_method=x")), False),
        (raw("POST", web(echo, ".json"), b"{not json", as_json), False),
        (raw("GET", web(final, ".json", "?fixed=2")), False),
        (raw("POST", web(echo, ".json"), b"x" * (LIMIT + 1), "Content-Type: text/plain"), False),
    ]
    taken = servers[2]
    for request, head in cases:
        before = len(taken)
        await both(servers, request, heads=(head,))
        assert len(taken) == before + 1, request[:200]
    # The answers are what they should be (not only equal): a sample.
    png = await both(servers, raw("GET", web(shapes, ".http", "?s=png")))
    assert png.startswith(b"HTTP/1.1 201 Created\r\n")
    assert b"\r\nx-multi: 1\r\nx-multi: 2\r\nx-multi: true\r\n" in png
    assert png.endswith(base64.b64decode("iVBORw0KGgo="))
    head_answer = await both(servers, raw("HEAD", web(shapes, ".http", "?s=png")), heads=(True,))
    assert b"\r\ncontent-length: 8\r\n" in head_answer and head_answer.endswith(b"\r\n\r\n")


async def test_connection_rules_of_web_answers(
    system: Standalone, servers: Servers, auth: str, unique: Unique
) -> None:
    hot = servers[0].port
    shapes, echo = unique("shapes"), unique("echo")
    await put_action(hot, auth, shapes, SHAPES_JS)
    await put_action(hot, auth, echo, ECHO_JS)
    # Warm both, so that no answer waits on a cold start (the wait is short).
    await warm(hot, web(shapes, ".text", "?s=markup"), auth)
    await warm(hot, web(echo, ".json"), auth)
    taken = servers[2]
    # An action's own Connection: close ends the connection after its answer: the
    # request pipelined behind it (read, and taken) is not answered (``exchange`` reads
    # the end of the connection right after the first answer).
    before = len(taken)
    closing = raw("GET", web(shapes, ".http", "?s=close")) + raw("GET", web(echo, ".json"))
    answer = await both(servers, closing)
    assert b"\r\nconnection: close\r\n" in answer and answer.endswith(b"bye")
    assert answer.count(b"connection:") == 1 and len(taken) == before + 2
    # A header value uvicorn refuses: the connection closes unanswered, on both paths.
    for served in servers[:2]:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        try:
            writer.write(raw("GET", web(shapes, ".http", "?s=bad")))
            assert await asyncio.wait_for(reader.read(), 60) == b""
        finally:
            writer.close()
    # Pipelined: web actions, an invoke and a request through ASGI, answered in order.
    pipelined = b"".join(
        [
            raw("POST", web(echo, ".json"), b'{"n": 1}', "Content-Type: application/json"),
            raw("GET", f"{BASE}/{echo}", b"", f"Authorization: {auth}"),  # through ASGI
            raw("HEAD", web(echo, ".json")),
            raw(
                "POST", f"{BASE}/{echo}?blocking=true&result=true", b"{}", f"Authorization: {auth}"
            ),
            raw("DELETE", web(shapes, ".http", "?s=redirect")),
        ]
    )
    before = len(taken)
    await both(servers, pipelined, heads=(False, False, True, False, False))
    assert len(taken) == before + 4


async def test_large_bodies_and_limits_go_through_asgi(
    system: Standalone, servers: Servers, auth: str, unique: Unique
) -> None:
    hot = servers[0].port
    echo = unique("echo")
    await put_action(hot, auth, echo, ECHO_JS)
    taken = servers[2]
    before = len(taken)
    # A body over 64 KiB arriving in parts: handed over to uvicorn's cycle (413 there).
    large = raw("POST", web(echo, ".json"), b"x" * 100_000, "Content-Type: text/plain")
    answer = await both(servers, large[:70_000], large[70_000:])
    assert answer.startswith(b"HTTP/1.1 413 ")
    # A body declared over 64 KiB: to ASGI from its headers, which answers 413 before
    # the body is sent at all.
    for path, extra in ((web(echo, ".json"), ()), (f"{BASE}/{echo}", (f"Authorization: {auth}",))):
        declared = raw("POST", path, b"", "Content-Length: 100000", *extra)
        answer = await both(servers, declared)
        assert answer.startswith(b"HTTP/1.1 413 ")
    assert len(taken) == before


async def test_202_after_the_blocking_wait_and_429(
    system: Standalone, servers: Servers, auth: str, unique: Unique
) -> None:
    hot = servers[0].port
    slow = unique("slow")
    await put_action(hot, auth, slow, SLOW_JS)
    answer = await both(servers, raw("GET", web(slow, ".json")))
    assert answer.startswith(b"HTTP/1.1 202 Accepted\r\n")
    assert b"x-openwhisk-activation-id: " in answer
    # The owner's throttle (a namespace allowed no invocations) answers 429.
    namespace = unique("owner")
    try:
        subject = await system.store.auth.create_subject(namespace)
    except Conflict:
        subject = await system.store.auth.create_subject(namespace, rotate=True)
    owner = "Basic " + base64.b64encode(subject.auth.encode()).decode()
    put = raw(
        "PUT",
        f"/api/v1/namespaces/{namespace}/actions/throttled",
        orjson.dumps(
            {
                "exec": {"kind": "nodejs:default", "code": ECHO_JS},
                "annotations": [{"key": "web-export", "value": True}],
            }
        ),
        f"Authorization: {owner}",
        "Content-Type: application/json",
    )
    (created,) = await exchange(hot, put)
    assert created.startswith(b"HTTP/1.1 200 OK"), created
    await system.store.auth.set_limits(namespace, {"invocationsPerMinute": 0})
    taken = servers[2]
    before = len(taken)
    throttled = raw("GET", web("throttled", ".json", namespace=namespace))
    (a,) = await exchange(hot, throttled)
    (b,) = await exchange(servers[1].port, throttled)
    # The second call counts one more call in the minute: the same bytes but for that.
    assert masked(a).replace(b"count: 1", b"count: 2") == masked(b)
    assert a.startswith(b"HTTP/1.1 429 ") and len(taken) == before + 1
