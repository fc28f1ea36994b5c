"""CoalescingTransport over a real socket pair, and the served protocol over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from squall.cli.coalescing import CoalescingHttpToolsProtocol, CoalescingTransport

pytestmark = pytest.mark.anyio

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


@pytest.fixture
async def pair() -> AsyncIterator[tuple[CoalescingTransport, socket.socket]]:
    """A coalescing transport writing into one end of a socket pair; the other end."""
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_unix_connection(asyncio.Protocol, sock=ours)
    try:
        yield CoalescingTransport(transport, loop), peer
    finally:
        transport.close()
        peer.close()


def pending(peer: socket.socket) -> bytes:
    """Whatever the peer can read now, without waiting."""
    try:
        return peer.recv(65536)
    except BlockingIOError:
        return b""


async def test_a_head_goes_out_with_the_body(
    pair: tuple[CoalescingTransport, socket.socket],
) -> None:
    transport, peer = pair
    transport.write(HEAD)
    assert pending(peer) == b""  # held until the body (or the end of the step)
    transport.write(b"hello")
    assert pending(peer) == HEAD + b"hello"


async def test_a_head_alone_goes_out_at_the_end_of_the_step(
    pair: tuple[CoalescingTransport, socket.socket],
) -> None:
    transport, peer = pair
    transport.write(HEAD)
    assert transport.get_write_buffer_size() == len(HEAD)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert pending(peer) == HEAD
    assert transport.get_write_buffer_size() == 0


async def test_other_writes_go_out_at_once_and_in_order(
    pair: tuple[CoalescingTransport, socket.socket],
) -> None:
    transport, peer = pair
    transport.write(b"chunk 1\r\n")
    assert pending(peer) == b"chunk 1\r\n"
    transport.writelines([b"HTTP/1.1 100 Continue", b"\r\n\r\n"])
    transport.write(memoryview(b"after"))
    assert pending(peer) == b"HTTP/1.1 100 Continue\r\n\r\nafter"


async def test_close_sends_a_held_head_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    for closing, expected in (("close", HEAD), ("abort", b"")):
        ours, peer = socket.socketpair()
        with peer:
            transport, _ = await loop.create_unix_connection(asyncio.Protocol, sock=ours)
            coalescing = CoalescingTransport(transport, loop)
            coalescing.write(HEAD)
            getattr(coalescing, closing)()
            assert coalescing.is_closing()  # forwarded to the transport
            peer.setblocking(False)
            received = b""
            # The transport closes on the loop: read without blocking it.
            while chunk := await asyncio.wait_for(loop.sock_recv(peer, 65536), 10):
                received += chunk
            assert received == expected, closing


async def _stream() -> AsyncIterator[bytes]:
    for part in (b"one ", b"two ", b"three"):
        yield part
        await asyncio.sleep(0)


async def test_served_answers_are_whole() -> None:
    """uvicorn with the coalescing protocol: plain, streamed, HEAD and keep-alive answers."""

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def streamed(request: Request) -> StreamingResponse:
        return StreamingResponse(_stream(), media_type="text/plain")

    app = Starlette(routes=[Route("/plain", plain), Route("/stream", streamed)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, http=CoalescingHttpToolsProtocol, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for method, path, body in (
            ("GET", "/plain", b"hello"),
            ("HEAD", "/plain", b""),
            ("GET", "/stream", b"one two three"),
            ("GET", "/plain", b"hello"),
        ):
            writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
            if b"transfer-encoding: chunked" in head:
                got = b""
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    chunk = await reader.readexactly(size + 2)
                    if size == 0:
                        break
                    got += chunk[:-2]
            elif method == "HEAD":
                got = b""
            else:
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                got = await reader.readexactly(length)
            assert got == body, (method, path)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
