"""The lean request path of the NATS client (``bus/nats_client.py``) against the
machine's NATS server and the installed nats-py: it answers, fails and parses headers as
nats-py's own ``request``, ``publish`` and header parser do (it relies on nats-py
internals, which these tests hold)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats.errors as nats_errors
import pytest
from _required import unavailable
from nats.aio.client import Client
from nats.aio.msg import Msg

from squall.bus.nats_client import LeanClient, header_block

from .bussupport import NATS_URL, reachable

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[LeanClient]:
    if not reachable(NATS_URL):
        unavailable(f"NATS is not reachable at {NATS_URL}")
    nc = LeanClient()
    await nc.connect(servers=[NATS_URL], pending_size=0)
    try:
        yield nc
    finally:
        await nc.close()


def subject() -> str:
    return f"test.lean.{uuid.uuid4().hex}"


async def test_a_lean_request_carries_its_headers_and_gets_the_answer(client: LeanClient) -> None:
    # Given a responder that answers with what it got
    seen: list[Msg] = []

    async def answer(msg: Msg) -> None:
        seen.append(msg)
        await client.publish(msg.reply, b"got " + msg.data)

    target = subject()
    await client.subscribe(target, cb=answer)
    await client.flush()
    # When two lean requests and one of nats-py's are made at once
    header = header_block({"Nats-Msg-Id": "a1/1", "Nats-Expected-Stream": "S\r\nX"})
    answers = await asyncio.gather(
        client.lean_request(target, b"one", header, 5.0),
        client.lean_request(target, b"two", None, 5.0),
        client.request(target, b"three", timeout=5.0, headers={"Nats-Msg-Id": "a1/1"}),
    )
    # Then each got its own answer
    assert [a.data for a in answers] == [b"got one", b"got two", b"got three"]
    # And the headers arrived as nats-py sends them (newlines in a value become spaces)
    by_data = {m.data: m.headers for m in seen}
    assert by_data[b"one"] == {"Nats-Msg-Id": "a1/1", "Nats-Expected-Stream": "S  X"}
    assert by_data[b"two"] is None
    assert by_data[b"three"] == {"Nats-Msg-Id": "a1/1"}
    # And nothing is left waiting in the response map
    assert not client._resp_map


@pytest.fixture
async def one_slot_client() -> AsyncIterator[LeanClient]:
    """A client whose flusher queue holds one wake-up (``flusher_queue_size=1``): with
    it taken (:func:`take_flush_slot`), nats-py's next ``_flush_pending`` suspends until
    the flusher's next step, as it does whenever that queue is full."""
    if not reachable(NATS_URL):
        unavailable(f"NATS is not reachable at {NATS_URL}")
    nc = LeanClient()
    await nc.connect(servers=[NATS_URL], pending_size=0, flusher_queue_size=1)
    try:
        yield nc
    finally:
        await nc.close()


def take_flush_slot(client: LeanClient) -> None:
    """Fill the flusher queue until the flusher's next step (scheduled now, so after the
    tasks created before this call have run their first step)."""
    assert client._flush_queue is not None
    client._flush_queue.put_nowait(asyncio.get_running_loop().create_future())


async def test_a_lean_request_made_while_another_sets_up_replies_gets_its_answer(
    one_slot_client: LeanClient,
) -> None:
    # Given a responder
    client = one_slot_client

    async def answer(msg: Msg) -> None:
        await client.publish(msg.reply, b"got " + msg.data)

    target = subject()
    await client.subscribe(target, cb=answer)
    await client.flush()
    # When the first lean request subscribes to the replies and waits in that SUB's
    # flush, and a second is made meanwhile
    first = asyncio.ensure_future(client.lean_request(target, b"one", None, 5.0))
    second = asyncio.ensure_future(client.lean_request(target, b"two", None, 5.0))
    take_flush_slot(client)
    # Then each gets its answer (the second's reply subject is the replies' one)
    answers = await asyncio.gather(first, second)
    assert [a.data for a in answers] == [b"got one", b"got two"]
    assert not client._resp_map


async def test_a_lean_request_without_a_responder_fails_as_nats_py_does(
    client: LeanClient,
) -> None:
    # When nobody listens on the subject / Then: no responders, as with request()
    with pytest.raises(nats_errors.NoRespondersError):
        await client.lean_request(subject(), b"x", None, 5.0)
    with pytest.raises(nats_errors.NoRespondersError):
        await client.request(subject(), b"x", timeout=5.0)
    assert not client._resp_map


async def test_a_lean_request_nobody_answers_times_out(client: LeanClient) -> None:
    # Given a responder that never answers
    async def ignore(msg: Msg) -> None:
        return None

    target = subject()
    await client.subscribe(target, cb=ignore)
    await client.flush()
    # When a lean request waits for it / Then it times out (an asyncio.TimeoutError)
    with pytest.raises(asyncio.TimeoutError):
        await client.lean_request(target, b"x", None, 0.2)
    assert not client._resp_map


async def test_a_closed_client_refuses_a_lean_request(client: LeanClient) -> None:
    await client.close()
    with pytest.raises(nats_errors.ConnectionClosedError):
        await client.lean_request(subject(), b"x", None, 1.0)
    with pytest.raises(nats_errors.ConnectionClosedError):
        await client.lean_publish(subject(), b"x")


async def test_a_pull_whose_client_closed_says_so_when_its_wait_ends(client: LeanClient) -> None:
    # Given a pull subscription on a stream of its own, waiting for a message
    js = client.jetstream()
    name = f"LEAN{uuid.uuid4().hex[:12]}"
    topic = subject()
    await js.add_stream(name=name, subjects=[topic])
    try:
        sub = await js.pull_subscribe(topic, durable=name.lower(), stream=name)
        pull = asyncio.ensure_future(client.lean_fetch_one(sub, 0.5))
        await asyncio.sleep(0.05)
        # When the connection closes meanwhile
        await client.close()
        # Then the pull ends as closed, not as "no message"
        with pytest.raises(nats_errors.ConnectionClosedError):
            await pull
    finally:
        cleanup = LeanClient()  # the test's own client is closed
        await cleanup.connect(servers=[NATS_URL])
        await cleanup.jetstream().delete_stream(name)
        await cleanup.close()


async def _wait(event: asyncio.Event) -> None:
    async with asyncio.timeout(30):
        await event.wait()


async def test_the_sends_of_one_loop_iteration_keep_their_order(client: LeanClient) -> None:
    # Given a subscriber on another connection
    target = subject()
    got: list[bytes] = []
    done = asyncio.Event()
    receiver = LeanClient()
    await receiver.connect(servers=[NATS_URL])

    async def take(msg: Msg) -> None:
        got.append(msg.data)
        if len(got) == 300:
            done.set()

    try:
        await receiver.subscribe(target, cb=take)
        await receiver.flush()
        # When lean sends and nats-py's own publishes are made in the same loop
        # iterations (each path queues in nats-py's buffer; either one writes it)
        sends = []
        for i in range(300):
            data = b"%d" % i
            if i % 3 == 0:
                sends.append(client.publish(target, data))
            else:
                sends.append(client.lean_publish(target, data))
        await asyncio.gather(*sends)
        # Then every message arrives once, in the order it was sent
        await _wait(done)
        assert got == [b"%d" % i for i in range(300)]
        assert not client._pending
    finally:
        await receiver.close()


async def test_a_sender_faster_than_the_socket_loses_nothing(client: LeanClient) -> None:
    # Given a subscriber on another connection that takes everything, however much
    target = subject()
    count, size = 48, 512 * 1024  # 24 MiB: far more than the socket takes at once
    got: list[bytes] = []
    done = asyncio.Event()
    receiver = LeanClient()
    await receiver.connect(servers=[NATS_URL])

    async def take(msg: Msg) -> None:
        got.append(msg.data[:8])
        if len(got) == count:
            done.set()

    try:
        await receiver.subscribe(target, cb=take, pending_bytes_limit=-1)
        await receiver.flush()
        # When that much is sent at once (the socket's buffer fills: the writes then go
        # through nats-py's flusher, which waits for the socket)
        payloads = [b"%08d" % i + bytes(size - 8) for i in range(count)]
        await asyncio.gather(*(client.lean_publish(target, p) for p in payloads))
        # Then all of it arrives, in order
        await _wait(done)
        assert got == [b"%08d" % i for i in range(count)]
    finally:
        await receiver.close()


async def test_a_lean_subscription_hands_each_message_to_its_function(
    client: LeanClient,
) -> None:
    # Given a lean subscription whose function notes each message, and one that fails
    target = subject()
    got: list[tuple[bytes, str, dict[str, str] | None]] = []
    arrived = asyncio.Event()

    def note(msg: Msg) -> None:
        got.append((msg.data, msg.reply, msg.headers))
        if len(got) == 3:
            arrived.set()

    def fail(msg: Msg) -> None:
        raise RuntimeError("a handler that fails")

    sub = await client.lean_subscribe(target, note, queue="q")
    await client.lean_subscribe(f"{target}.other", fail)
    await client.flush()
    # When messages arrive, with and without headers and replies, one for the failing one
    sender = LeanClient()
    await sender.connect(servers=[NATS_URL])
    try:
        await sender.lean_publish(f"{target}.other", b"lost")
        await sender.lean_publish(target, b"one", header_block({"Nats-Msg-Id": "m1"}), "r.1")
        await sender.publish(target, b"two")
        await sender.lean_publish(target, b"three")
        await _wait(arrived)
        # Then each reached the function once, in order, as nats-py builds it
        assert got == [
            (b"one", "r.1", {"Nats-Msg-Id": "m1"}),
            (b"two", "", None),
            (b"three", "", None),
        ]
        # And once unsubscribed, the function gets nothing more
        await client.lean_unsubscribe(sub)
        await client.flush()
        await sender.lean_publish(target, b"four")
        await sender.flush()
        await client.flush()  # a round trip after the server routed "four"
        assert len(got) == 3
        assert not client._lean_handlers or sub._id not in client._lean_handlers
    finally:
        await sender.close()


async def test_a_message_arriving_while_a_lean_subscription_subscribes_reaches_its_function(
    one_slot_client: LeanClient,
) -> None:
    # Given a lean subscription waiting in its SUB's flush (the SUB queued, and sent by
    # the flusher's step that frees the slot)
    client = one_slot_client
    got: list[bytes] = []
    target = subject()
    subscribing = asyncio.ensure_future(
        client.lean_subscribe(target, lambda msg: got.append(msg.data))
    )
    take_flush_slot(client)
    await asyncio.sleep(0)  # its first step, up to the full flusher queue
    assert not subscribing.done()
    sid = client._sid
    # When the read loop gets a message of that subscription meanwhile (the step it runs
    # for the server's MSG, which can arrive once the SUB is out)
    await client._process_msg(sid, target.encode(), b"", b"early", None)
    sub = await subscribing
    # Then the function got it, not the subscription's unread queue
    assert sub._id == sid
    assert got == [b"early"]
    assert sub._pending_queue.empty()
    await client.lean_unsubscribe(sub)


@pytest.mark.parametrize(
    "raw",
    [
        b"Nats-Msg-Id: a1/1\r\nNats-Expected-Stream: S\r\n\r\n",
        b"A:b\r\nC:\tvalue with spaces \r\n\r\n",
        b"no colon here\r\nBad Name: x\r\nOk: \xff\xfe\r\n\r\n",
        b"\xc3\xa9: x\r\n: empty\r\nA\x1c: y\r\nDup: 1\r\nDup: 2\r\n",
        b"",
    ],
)
def test_the_header_parser_gives_what_nats_py_gives(raw: bytes) -> None:
    assert LeanClient._parse_header_lines(raw) == Client._parse_header_lines(raw)
