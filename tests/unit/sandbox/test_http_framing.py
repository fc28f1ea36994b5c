"""The Unix-socket HTTP client's framing of answers a runtime gets wrong or makes huge
(a body past the limit in a pipeline, a negative Content-Length, a huge chunk), and a
socket connected ahead handed to it."""

from __future__ import annotations

import asyncio
import socket
import tracemalloc
from pathlib import Path

import pytest
from test_http import answer, echo_forever, read_request, serving

from squall.sandbox.http import ConnectionLost, ProtocolError, UnixHttpClient

pytestmark = pytest.mark.anyio


async def test_a_truncated_answer_ends_its_pipeline(tmp_path: Path) -> None:
    # Given a runtime whose first answer is longer than the client keeps and reads like
    # an answer of its own (a body can hold anything); its real second answer follows
    fake = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfake"

    async def oversized(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await read_request(reader)
        writer.write(answer(fake + b"." * 20) + answer(b"real"))
        await writer.drain()
        await reader.read()  # until the client closes

    async with serving(tmp_path / "s.sock", oversized):
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=10)
        # When two requests are pipelined and both answers are asked for
        pipeline = await client.pipeline([("/init", b"i", {}), ("/run", b"r", {})])
        first = await pipeline.next()
        # Then the first is truncated, and the pipeline ends with it: its body is not read
        # again as the second answer
        assert (first.body, first.truncated, first.full_size) == (fake[:10], True, len(fake) + 20)
        with pytest.raises(ConnectionLost):
            await pipeline.next()
        pipeline.close()
        await client.aclose()


async def test_a_negative_content_length_is_a_protocol_error(tmp_path: Path) -> None:
    # Given a runtime announcing a negative Content-Length
    async def negative(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}")
        await writer.drain()
        await reader.read()

    async with serving(tmp_path / "s.sock", negative):
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000)
        # When the client posts, then the answer is refused
        with pytest.raises(ProtocolError):
            await client.post("/run", b"{}")
        await client.aclose()


async def test_a_huge_chunk_is_not_buffered_whole(tmp_path: Path) -> None:
    # Given a runtime answering one chunk of 8 MiB, sent 64 KiB at a time
    piece = b"y" * 65536
    pieces = 128

    async def one_chunk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % (
            len(piece) * pieces
        ))  # fmt: skip
        for _ in range(pieces):
            writer.write(piece)
            await writer.drain()  # the server's own buffer stays small
        writer.write(b"\r\n3\r\nend\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with serving(tmp_path / "s.sock", one_chunk):
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000)
        # When the client, keeping 1000 bytes, reads it (its allocations traced)
        tracemalloc.start()
        try:
            response = await client.post("/run", b"{}")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await client.aclose()
    # Then it counted all of it and kept its limit, and it never held the chunk whole
    assert (len(response.body), response.truncated) == (1000, True)
    assert response.full_size == len(piece) * pieces + 3
    assert peak < 4 * 1024 * 1024


async def test_a_socket_opened_ahead_is_owned_by_the_client(tmp_path: Path) -> None:
    # Given two sockets connected ahead to an echo server, each handed to a client
    async with serving(tmp_path / "s.sock", echo_forever) as accepted:
        used, unused = (socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2))
        for sock in (used, unused):
            sock.connect(str(tmp_path / "s.sock"))
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000, sock=used)
        idle = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000, sock=unused)
        # When one posts twice, and the other is closed before any request
        bodies = [(await client.post("/run", b"%d" % n)).body for n in range(2)]
        await client.aclose()
        await idle.aclose()
    # Then both requests went over the socket opened ahead, and both sockets are closed
    assert bodies == [b"0", b"1"]
    assert len(accepted) == 2
    assert used.fileno() == unused.fileno() == -1
