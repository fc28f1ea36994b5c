"""The Unix-socket HTTP client against small scripted servers."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvloop

from squall.sandbox.http import ConnectionLost, ProtocolError, UnixHttpClient

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(path: Path | str, handler: Handler) -> AsyncIterator[list[int]]:
    """Serve ``handler`` on ``path``; yields a list that counts accepted connections."""
    accepted: list[int] = []
    handlers: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_unix_server(on_connect, str(path))
    try:
        yield accepted
    finally:
        server.close()
        # Handlers still waiting on their connection end here, closing their sockets.
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


def answer(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def echo_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            body = await read_request(reader)
        except asyncio.IncompleteReadError:
            return
        writer.write(answer(body))


async def test_keeps_the_connection_alive_between_requests(tmp_path: Path) -> None:
    # Given an echo server
    async with serving(tmp_path / "s.sock", echo_forever) as accepted:
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000)
        # When three requests are posted one after the other
        bodies = [(await client.post("/run", f'{{"n":{n}}}'.encode())).body for n in range(3)]
        await client.aclose()
    # Then each got its answer over one single connection
    assert bodies == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert len(accepted) == 1


async def test_concurrent_requests_use_separate_connections(tmp_path: Path) -> None:
    # Given an echo server that answers only once two requests are waiting
    both = asyncio.Event()
    waiting: list[int] = []

    async def slow_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await read_request(reader)
        waiting.append(1)
        if len(waiting) == 2:
            both.set()
        await both.wait()
        writer.write(answer(body))

    async with serving(tmp_path / "s.sock", slow_echo) as accepted:
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000)
        # When two requests run at once
        first, second = await asyncio.gather(client.post("/run", b"1"), client.post("/run", b"2"))
        await client.aclose()
    # Then each got its own answer on its own connection
    assert (first.body, second.body) == (b"1", b"2")
    assert len(accepted) == 2


async def test_a_large_body_is_truncated_and_its_size_reported(tmp_path: Path) -> None:
    # Given a server answering 5000 bytes
    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"x" * 5000))

    async with serving(tmp_path / "s.sock", big):
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000)
        # When the client, limited to 1000 bytes, posts
        response = await client.post("/run", b"{}")
        await client.aclose()
    # Then it kept 1000 bytes and knows the full size
    assert (len(response.body), response.truncated, response.full_size) == (1000, True, 5000)


async def test_chunked_and_close_delimited_bodies(tmp_path: Path) -> None:
    # Given a server answering chunked first, then with a body ended by closing
    async def framed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        await read_request(reader)
        writer.write(b'HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n{"a":1}')

    async with serving(tmp_path / "s.sock", framed):
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=8)
        # When two requests are posted
        chunked = await client.post("/run", b"{}")
        closed = await client.post("/run", b"{}")
        await client.aclose()
    # Then both bodies were read (and capped at 8 bytes)
    assert (chunked.status, chunked.body, chunked.truncated, chunked.full_size) == (
        200,
        b"hello wo",
        True,
        11,
    )
    assert (closed.status, closed.body, closed.truncated) == (502, b'{"a":1}', False)


async def test_a_peer_closing_before_answering_is_connection_lost(tmp_path: Path) -> None:
    # Given a server that reads the request and hangs up
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with serving(tmp_path / "s.sock", hang_up):
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000)
        # When the client posts, Then the connection is reported lost
        with pytest.raises(ConnectionLost):
            await client.post("/run", b"{}")
        await client.aclose()


async def test_nobody_listening_is_connection_lost(tmp_path: Path) -> None:
    # Given no server at all
    client = UnixHttpClient(tmp_path / "missing.sock", max_response_bytes=1000)
    # When the client posts, Then it cannot connect
    with pytest.raises(ConnectionLost):
        await client.post("/run", b"{}")
    await client.aclose()


async def test_garbage_is_a_protocol_error(tmp_path: Path) -> None:
    # Given a server that does not speak HTTP
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")

    async with serving(tmp_path / "s.sock", garbage):
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000)
        # When the client posts, Then the answer is rejected
        with pytest.raises(ProtocolError):
            await client.post("/run", b"{}")
        await client.aclose()


async def test_an_idle_connection_closed_by_the_peer_is_replaced(tmp_path: Path) -> None:
    # Given a server that answers one request per connection without saying so
    async def one_shot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer(await read_request(reader)))
        await writer.drain()

    async with serving(tmp_path / "s.sock", one_shot) as accepted:
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000)
        # When two requests are posted one after the other
        first = await client.post("/run", b"1")
        second = await client.post("/run", b"2")
        await client.aclose()
    # Then the second went out on a fresh connection and got its answer
    assert (first.body, second.body) == (b"1", b"2")
    assert len(accepted) == 2


async def test_a_connection_opened_ahead_is_fresh_a_loss_on_it_is_not_retried(
    tmp_path: Path,
) -> None:
    # Given a runtime that reads the first request of its first connection and dies
    # before answering (an /init that crashes), and answers on any later connection
    requests: list[bytes] = []

    async def dies_on_the_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = not requests
        requests.append(await read_request(reader))
        if not first:
            writer.write(answer(b"again"))
            await writer.drain()

    path = tmp_path / "s.sock"
    async with serving(path, dies_on_the_first) as accepted:
        # And a client given a connection opened ahead (a zygote's started spare)
        ahead = await asyncio.open_unix_connection(str(path))
        client = UnixHttpClient(path, max_response_bytes=1000, connection=ahead)
        # When its first request is lost on that connection
        with pytest.raises(ConnectionLost):
            await client.post("/init", b"init")
        await client.aclose()
    # Then it was sent once: the runtime had read it there
    assert requests == [b"init"]
    assert len(accepted) == 1


async def test_a_socket_path_longer_than_sun_path_works(tmp_path: Path) -> None:
    # Given a server listening in a directory whose path is too long for sun_path
    directory = tmp_path / ("d" * 60) / ("e" * 60)
    directory.mkdir(parents=True)
    path = directory / "s.sock"
    assert len(str(path)) > 108
    dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    try:
        async with serving(f"/proc/self/fd/{dir_fd}/s.sock", echo_forever):
            client = UnixHttpClient(path, max_response_bytes=1000)
            # When the client posts to it by its long path
            response = await client.post("/run", b"ok")
            await client.aclose()
    finally:
        os.close(dir_fd)
    # Then the request went through
    assert response.body == b"ok"


async def test_a_pipeline_writes_its_requests_at_once_and_reads_the_answers_in_order(
    tmp_path: Path,
) -> None:
    # Given a server that reads two requests before it answers either (so they must have
    # been written together) and shows the second's extra header
    async def both_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await read_request(reader)
        head = await reader.readuntil(b"\r\n\r\n")
        second = await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r")[0]))
        deadline = head.split(b"X-Deadline: ")[1].split(b"\r")[0]
        writer.write(answer(first) + answer(second + b"+" + deadline))
        await echo_forever(reader, writer)

    async with serving(tmp_path / "s.sock", both_first) as accepted:
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000)
        # When two requests are pipelined, then one more posted
        pipeline = await client.pipeline([("/init", b"i", {}), ("/run", b"r", {"X-Deadline": "7"})])
        answers = [(await pipeline.next()).body, (await pipeline.next()).body]
        pipeline.close()
        later = await client.post("/run", b"again")
        await client.aclose()
    # Then the answers came in order, and the connection, read whole, was used again
    assert answers == [b"i", b"r+7"]
    assert later.body == b"again"
    assert accepted == [1]


async def test_a_pipeline_closed_before_its_last_answer_drops_its_connection(
    tmp_path: Path,
) -> None:
    # Given an echo server
    async with serving(tmp_path / "s.sock", echo_forever) as accepted:
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000)
        # When a pipeline's first answer only is read before it is closed
        pipeline = await client.pipeline([("/init", b"i", {}), ("/run", b"r", {})])
        first = (await pipeline.next()).body
        pipeline.close()
        # Then the next request does not read the dropped answer: a new connection
        later = await client.post("/run", b"next")
        await client.aclose()
    assert (first, later.body) == (b"i", b"next")
    assert accepted == [1, 1]


async def test_a_request_past_its_timeout_fails_and_its_connection_is_not_reused(
    tmp_path: Path,
) -> None:
    # Given a server that never answers its first request and echoes on later connections
    stuck = asyncio.Event()

    async def first_hangs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not stuck.is_set():
            stuck.set()
            await read_request(reader)
            await asyncio.Event().wait()  # until the test's server stops
        await echo_forever(reader, writer)

    async with serving(tmp_path / "s.sock", first_hangs) as accepted:
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000)
        # When the first request is given 50 ms
        with pytest.raises(TimeoutError):
            await client.post("/run", b"1", timeout=0.05)
        # Then the next one goes out on a new connection and gets its answer
        second = await client.post("/run", b"2", timeout=5)
        await client.aclose()
    assert second.body == b"2"
    assert len(accepted) == 2


async def test_a_connection_made_as_a_stream_is_adopted_and_reused(tmp_path: Path) -> None:
    # Given a client given a connection opened ahead as asyncio streams (a zygote's spare)
    async with serving(tmp_path / "s.sock", echo_forever) as accepted:
        ahead = await asyncio.open_unix_connection(str(tmp_path / "s.sock"))
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000, connection=ahead)
        del ahead  # the client keeps what it needs (a dropped writer closes its transport)
        # When three requests are posted one after the other
        bodies = [(await client.post("/run", b"%d" % n)).body for n in range(3)]
        await client.aclose()
    # Then all went over that one connection
    assert bodies == [b"0", b"1", b"2"]
    assert len(accepted) == 1


def _answer_each_request_from_a_thread(listener: socket.socket) -> None:
    """Accept one connection and answer each request on it at once (echo), off the loop."""
    conn, _ = listener.accept()
    with conn:
        pending = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            pending += chunk
            while b"\r\n\r\n" in pending:
                head, _, rest = pending.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) < length:
                    break
                time.sleep(0.02)  # the invoker's loop is in its poll by then
                conn.sendall(answer(rest[:length]))
                pending = rest[length:]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_an_answer_written_before_the_deadline_counts_when_the_loop_reads_it_late(
    tmp_path: Path, loop: str
) -> None:
    # Given a runtime (a thread, so it answers while the client's loop is busy) and a
    # client with an open connection to it
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    server = threading.Thread(target=_answer_each_request_from_a_thread, args=(listener,))
    server.start()

    async def scenario() -> bytes:
        client = UnixHttpClient(path, max_response_bytes=1000)
        try:
            await client.post("/run", b"warm", timeout=5)
            # When a request with a 100 ms deadline is written and answered 20 ms later,
            # while the loop is busy for 300 ms in a callback of its poll phase (so uvloop,
            # which runs due timers before it polls, comes to the deadline's timer first)
            busy, wake = socket.socketpair()
            busy.setblocking(False)

            def be_busy() -> None:
                busy.recv(1)
                time.sleep(0.3)

            asyncio.get_running_loop().add_reader(busy.fileno(), be_busy)
            request = asyncio.ensure_future(client.post("/run", b"answered", timeout=0.1))
            await asyncio.sleep(0)  # the request is written
            wake.send(b"x")
            try:
                return (await request).body
            finally:
                asyncio.get_running_loop().remove_reader(busy.fileno())
                busy.close()
                wake.close()
        finally:
            await client.aclose()

    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            body = runner.run(scenario())
    finally:
        server.join(timeout=10)
        listener.close()
    # Then the answer, in the socket before the deadline, is the request's answer
    assert body == b"answered"
