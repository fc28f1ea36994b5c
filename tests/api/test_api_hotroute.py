"""The hot-route protocol (controller/hotroute.py) answers as the ASGI path does.

Two real uvicorn servers on loopback serve the same platform: one with the protocol as
``squall standalone`` serves (the invoke route taken off before ASGI), one with plain
uvicorn (every request through the ASGI application). The same raw requests go to both
over raw sockets — keep-alive, pipelined, ``Expect: 100-continue``, chunked, too large to
hold, ``Connection: close``, HTTP/1.0, a graceful shutdown or a client that leaves
during an invoke — and the answers must be the same bytes, but for
what differs between two requests by nature: the ``date`` header's second, activation
and generated transaction ids (32 hex digits), and a whole record's times.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import orjson
import pytest
import uvicorn
from apisupport import PY_APP_ERROR, node_action, python_action

from squall.cli.coalescing import CoalescingHttpToolsProtocol
from squall.cli.serving import protocol_for
from squall.cli.standalone import Standalone
from squall.controller.hotroute import HotRouteProtocol

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
TXID = "hotroute-0123456789"
BASE = "/api/v1/namespaces/_/actions"


class _Served:
    """A uvicorn server on a loopback port, started and stopped by the fixture."""

    def __init__(self, app: Any, protocol: type[asyncio.Protocol]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app, http=protocol, lifespan="off", log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        for _ in range(1000):
            if self.server.started:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("uvicorn did not start")

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


@pytest.fixture
async def servers(system: Standalone) -> AsyncIterator[tuple[_Served, _Served, list[str]]]:
    """(the served protocol, plain uvicorn, the paths the hot route took)."""
    served = protocol_for(system.app)
    assert issubclass(served, HotRouteProtocol)
    taken: list[str] = []

    class Recording(served):  # type: ignore[valid-type, misc]
        """The served protocol, noting each request it serves itself."""

        took: ClassVar[list[str]] = taken

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Standalone serves without an access log; pytest's log capture gives
            # uvicorn's access logger handlers, which turn it on.
            self.access_log = False
            self._takes = self.takes_hot_requests()

        def on_message_complete(self) -> None:
            if self._hot is not None:
                self.took.append(self._hot.rest)
            super().on_message_complete()

    made = [_Served(system.app, Recording), _Served(system.app, CoalescingHttpToolsProtocol)]
    for s in made:
        await s.start()
    try:
        yield made[0], made[1], taken
    finally:
        for s in made:
            await s.stop()


def request(
    path: str,
    auth: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    headers: tuple[str, ...] = (),
    version: str = "1.1",
) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", f"X-Request-ID: {TXID}"]
    if auth:
        lines.append(f"Authorization: {auth}")
    lines.extend(headers)
    if not any(h.lower().startswith("transfer-encoding") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
    found = re.search(rb"\r\ncontent-length: (\d+)\r\n", head)
    length = int(found[1]) if found else 0
    return head + await asyncio.wait_for(reader.readexactly(length), 60)


async def exchange(port: int, *parts: bytes, answers: int = 1) -> tuple[list[bytes], bool]:
    """Write ``parts`` (each flushed), read ``answers``; and whether the server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
        got = [await read_answer(reader) for _ in range(answers)]
        writer.write_eof()
        closed = await asyncio.wait_for(reader.read(), 60) == b""
        return got, closed
    finally:
        writer.close()


def masked(answer: bytes) -> bytes:
    answer = re.sub(rb"\r\ndate: [^\r]*\r\n", b"\r\ndate: *\r\n", answer)
    return re.sub(rb"[0-9a-f]{32}", b"<id>", answer)


def split(answer: bytes) -> tuple[bytes, Any]:
    """The head without its length and the body parsed, for whole records."""
    head, _, body = answer.partition(b"\r\n\r\n")
    head = re.sub(rb"\r\ncontent-length: \d+", b"", masked(head))
    record = orjson.loads(body)
    for key in ("start", "end", "duration", "activationId", "logs", "annotations"):
        record.pop(key, None)
    return head, record


async def both(
    servers: tuple[_Served, _Served, list[str]], *parts: bytes, answers: int = 1
) -> tuple[list[bytes], list[bytes]]:
    hot, plain, _ = servers
    a, closed_a = await exchange(hot.port, *parts, answers=answers)
    b, closed_b = await exchange(plain.port, *parts, answers=answers)
    assert closed_a and closed_b
    return a, b


@pytest.fixture
def auth(system: Standalone) -> str:
    return "Basic " + base64.b64encode(system.guest_auth.encode()).decode()


async def _actions(system: Standalone, auth: str, unique: Unique, hot: _Served) -> tuple[str, str]:
    ok, failing = unique("hot-ok"), unique("hot-502")
    for name, body in ((ok, node_action()), (failing, python_action(PY_APP_ERROR))):
        put = request(
            f"{BASE}/{name}",
            auth,
            orjson.dumps(body),
            method="PUT",
            headers=("Content-Type: application/json",),
        )
        (answer,), _ = await exchange(hot.port, put)
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
    return ok, failing


async def test_answers_are_the_same_bytes(
    system: Standalone, servers: tuple[_Served, _Served, list[str]], auth: str, unique: Unique
) -> None:
    ok, failing = await _actions(system, auth, unique, servers[0])
    exact = [
        request(f"{BASE}/{ok}?blocking=true&result=true", auth, b'{"name": "x"}'),
        request(f"{BASE}/{ok}?blocking=true&result=true", auth, b'{"name": "y"}', version="1.0"),
        request(f"{BASE}/{ok}?blocking=true&result=true", auth, headers=("Connection: close",)),
        request(f"{BASE}/{ok}", auth, b"{}"),
        request(f"{BASE}/no-such-action", auth),
        request(f"{BASE}/a/b/c", auth),
        request(f"{BASE}/", auth),
        request(f"{BASE}/bad%20name!", auth),
        request("/api/v1/namespaces/someone-else/actions/x", auth),
        request(f"{BASE}/{ok}", auth, b"{not json"),
        request(f"{BASE}/{ok}", auth, b"[1, 2]"),
        request(f"{BASE}/{ok}?blocking=true&timeout=abc", auth),
        request(f"{BASE}/{ok}?blocking=true&timeout=0", auth),
        request(f"{BASE}/{ok}", "", b"{}"),
        request(f"{BASE}/{ok}", "Basic bm8tc3VjaDprZXk=", b"{}"),
    ]
    taken = servers[2]
    for raw in exact:
        before = len(taken)
        (a,), (b,) = await both(servers, raw)
        assert masked(a) == masked(b), raw
        assert len(taken) == before + 1, raw
    # Whole records (a success, an application error): the same head and fields.
    for raw, status in (
        (request(f"{BASE}/{ok}?blocking=true&result=true&result=false", auth, b"{}"), 200),
        (request(f"{BASE}/{failing}?blocking=true", auth, b"{}"), 502),
    ):
        (a,), (b,) = await both(servers, raw)
        assert a.startswith(b"HTTP/1.1 %d " % status)
        assert split(a) == split(b)


async def test_pipelined_requests_answer_in_order(
    system: Standalone, servers: tuple[_Served, _Served, list[str]], auth: str, unique: Unique
) -> None:
    ok, _ = await _actions(system, auth, unique, servers[0])
    pipelined = b"".join(
        [
            request(f"{BASE}/{ok}?blocking=true&result=true", auth, b'{"name": "1"}'),
            request(f"{BASE}/{ok}", auth, method="GET"),  # not hot: through ASGI
            request(f"{BASE}/no-such-action", auth),
            request(f"{BASE}/{ok}?blocking=true&result=true", auth, b'{"name": "2"}'),
        ]
    )
    a, b = await both(servers, pipelined, answers=4)
    assert [masked(x) for x in a] == [masked(x) for x in b]
    assert b'"Hello 1"' in a[0] and b'"Hello 2"' in a[3]


async def _continued(head: bytes, servers: tuple[_Served, _Served, list[str]]) -> None:
    """``head`` expects 100-continue: each server sends the 100, then answers the body."""
    for port in (servers[0].port, servers[1].port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head)
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b'{"name": "c"}')
            assert b'"Hello c"' in await read_answer(reader)
        finally:
            writer.close()


async def test_expect_continue_chunked_and_large_bodies(
    system: Standalone, servers: tuple[_Served, _Served, list[str]], auth: str, unique: Unique
) -> None:
    ok, _ = await _actions(system, auth, unique, servers[0])
    path = f"{BASE}/{ok}?blocking=true&result=true"
    taken = servers[2]
    before_expect = len(taken)
    # Expect: 100-continue (through ASGI: uvicorn sends the 100 when the body is read),
    # its name and value in any case and with trailing whitespace, among other headers
    # (uvicorn's own per-header callback finds it, as in plain uvicorn).
    expects = ("Expect: 100-continue", "X-A: 1", "EXPECT: 100-Continue \t", "X-B: 2")
    for expect in (expects[:1], expects[1:]):
        head = request(path, auth, headers=(*expect, "Content-Length: 13"))
        await _continued(head.replace(b"Content-Length: 0\r\n", b""), servers)
    assert len(taken) == before_expect
    # A chunked body, in two writes: the parser joins it; the hot route takes it.
    chunked = request(path, auth, headers=("Transfer-Encoding: chunked",))
    before = len(taken)
    a, b = await both(servers, chunked + b'6\r\n{"name\r\n', b'7\r\n": "k"}\r\n0\r\n\r\n')
    assert masked(a[0]) == masked(b[0]) and b'"Hello k"' in a[0]
    assert len(taken) == before + 1
    # A body over 64 KiB: handed over to uvicorn's cycle while it arrives.
    large = orjson.dumps({"name": "L", "pad": "x" * 100_000})
    before = len(taken)
    raw = request(path, auth, large)
    a, b = await both(servers, raw[:70_000], raw[70_000:])
    assert masked(a[0]) == masked(b[0]) and b'"Hello L"' in a[0]
    assert len(taken) == before


async def test_keep_alive_serves_one_connection(
    system: Standalone, servers: tuple[_Served, _Served, list[str]], auth: str, unique: Unique
) -> None:
    ok, _ = await _actions(system, auth, unique, servers[0])
    parts = [
        request(f"{BASE}/{ok}?blocking=true&result=true", auth, b'{"name": "%d"}' % i)
        for i in range(5)
    ]
    for port in (servers[0].port, servers[1].port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i, part in enumerate(parts):
                writer.write(part)
                answer = await read_answer(reader)
                assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection:" not in answer
                assert b'"Hello %d"' % i in answer
        finally:
            writer.close()


SLOW_JS = "function main() { return new Promise(r => setTimeout(() => r({done: true}), 1500)); }"


async def _in_flight(served: _Served, *, running: bool = True) -> None:
    """Wait (with a deadline) until the server runs a request's task (or none)."""
    for _ in range(3000):
        if bool(served.server.server_state.tasks) == running:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"tasks running never became {running}")


async def test_shutdown_and_disconnect_during_an_invoke(
    system: Standalone, servers: tuple[_Served, _Served, list[str]], auth: str, unique: Unique
) -> None:
    slow = unique("hot-slow")
    put = request(
        f"{BASE}/{slow}",
        auth,
        orjson.dumps(node_action(SLOW_JS)),
        method="PUT",
        headers=("Content-Type: application/json",),
    )
    assert (await exchange(servers[0].port, put))[0][0].startswith(b"HTTP/1.1 200 OK")
    raw = request(f"{BASE}/{slow}?blocking=true&result=true", auth, b"{}")
    # A client that goes away mid-invoke: nothing is written, the server goes on.
    for served in servers[:2]:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(raw)
        await _in_flight(served)
        writer.close()
        (answer,), _ = await exchange(served.port, request(f"{BASE}/no-such-action", auth))
        assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n")
    # A graceful shutdown during an invoke: the answer still comes, with connection: close.
    answers = []
    for served in servers[:2]:
        await _in_flight(served, running=False)  # the abandoned invoke above ends
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        try:
            writer.write(raw)
            await _in_flight(served)
            served.server.should_exit = True
            answers.append(await read_answer(reader))
            assert await asyncio.wait_for(reader.read(), 60) == b""
        finally:
            writer.close()
        await served.stop()
    assert masked(answers[0]) == masked(answers[1])
    assert b"\r\nconnection: close\r\n" in answers[0] and answers[0].endswith(b'{"done":true}')
    assert len(servers[2]) >= 2 and servers[2][-1] == slow


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


def _reading(served: _Served) -> bool:
    """Whether a connection of ``served`` holds a request being read: the hot protocol's
    hot request, uvicorn's cycle."""
    return any(
        getattr(c, "_hot", None) is not None or getattr(c, "cycle", None) is not None
        for c in served.server.server_state.connections
    )


def _refuses(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_shutdown_while_an_invoke_body_arrives(
    system: Standalone, servers: tuple[_Served, _Served, list[str]], auth: str, unique: Unique
) -> None:
    # Given an invoke whose headers arrived and whose body has not (both protocols)
    ok, _ = await _actions(system, auth, unique, servers[0])
    raw = request(f"{BASE}/{ok}?blocking=true&result=true", auth, b'{"late": true}')
    head, tail = raw[:-5], raw[-5:]
    answers = []
    for served in servers[:2]:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        try:
            writer.write(head)
            await writer.drain()
            await _until(lambda: _reading(served), "the request's headers read")  # noqa: B023
            # When a graceful shutdown begins (the listener closes, then every connection
            # is told in the same step), and only then the body's last bytes come
            served.server.should_exit = True
            await _until(lambda: _refuses(served.port), "the listener closed")  # noqa: B023
            writer.write(tail)
            await writer.drain()
            # Then the invoke is answered, with connection: close, and the connection ends
            answers.append(await read_answer(reader))
            assert await asyncio.wait_for(reader.read(), 60) == b""
        finally:
            writer.close()
        await served.stop()
    assert masked(answers[0]) == masked(answers[1])
    assert answers[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nconnection: close\r\n" in answers[0]
