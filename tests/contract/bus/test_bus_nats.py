"""What only the NATS bus has: several processes on one queue, stream set-up racing and
upgrading, the factory's URL, and surviving a NATS server killed and restarted (on a
throwaway server of the test's own, never the machine's)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from _polling import until
from _required import unavailable
from _standalone import free_port
from nats.aio.transport import TcpTransport
from nats.js import api as js_api

from squall.bus.contracts import Consumer, Delivery
from squall.bus.factory import open_bus
from squall.bus.jetstream import Layout
from squall.bus.nats import NatsBus
from squall.bus.push import listen
from squall.config import Settings
from squall.errors import ProviderError

from .bussupport import (
    ARRIVES_S,
    NATS_URL,
    OwnNatsServer,
    nats_server_binary,
    take,
    unique_prefix,
)
from .conftest import ACK_WAIT_S, NatsBuses

pytestmark = pytest.mark.anyio


async def drain(bus: NatsBus, consumer: Consumer, topic: str) -> list[Delivery]:
    """Everything still on ``topic``, acknowledged."""
    got: list[Delivery] = []
    deadline = time.monotonic() + ARRIVES_S * 2
    while time.monotonic() < deadline:
        delivery = await consumer.poll(0.3)
        if delivery is None:
            if await bus.pending(topic) == 0:
                return got
            continue
        await delivery.ack()
        got.append(delivery)
    raise AssertionError(f"{topic} did not drain: {await bus.pending(topic)} pending")


async def test_processes_share_a_topic_and_take_over_unacknowledged_work(
    nats_buses: NatsBuses,
) -> None:
    # Given two processes: an "invoker" holding a message it never acknowledged
    invoker, controller = await nats_buses.open(), await nats_buses.open()
    await controller.send("invoker.7", b"held")
    await controller.send("invoker.7", b"queued")
    invoker_consumer = await invoker.consumer("invoker.7")
    held = await take(invoker_consumer)
    assert held.data == b"held"
    # When the invoker dies and the controller drains its topic
    await invoker.close()
    drainer = await controller.consumer("invoker.7")
    got = await drain(controller, drainer, "invoker.7")
    # Then the controller gets both: the held one again (after the ack wait), once each
    assert sorted((d.data, d.attempt) for d in got) == [(b"held", 2), (b"queued", 1)]


async def test_racing_connections_create_the_streams_once(nats_buses: NatsBuses) -> None:
    # Given nothing on the server for this prefix
    # When three processes connect at the same moment
    buses = await asyncio.gather(*(nats_buses.open() for _ in range(3)))
    # Then all can use the same topic
    await buses[0].send("completed.c", b"x")
    consumer = await buses[2].consumer("completed.c")
    assert (await take(consumer)).data == b"x"


async def test_connecting_upgrades_a_stream_of_an_older_configuration(
    nats_buses: NatsBuses,
) -> None:
    # Given streams made with a one-minute duplicate window, holding a message
    old = await nats_buses.open(dedup_window_s=60.0)
    await old.send("invoker.u", b"kept")
    # When a process with a two-minute window connects
    new = await nats_buses.open(dedup_window_s=120.0)
    # Then the stream now has the new window and the message is still there
    stream = new.layout.stream_name(new.layout.streams[0])
    info = await new._js.stream_info(stream)
    assert info.config.duplicate_window == pytest.approx(120.0)
    assert await new.pending("invoker.u") == 1


async def test_topics_outside_the_layout_and_bad_prefixes_are_refused(
    nats_buses: NatsBuses,
) -> None:
    bus = await nats_buses.open()
    for topic in ("queue.1", "invoker", "invoker.*", "invoker..x", "invoker.a b"):
        with pytest.raises(ProviderError):
            await bus.send(topic, b"x")
    with pytest.raises(ProviderError):
        await NatsBus.connect(NATS_URL, prefix="bad.prefix")


async def test_connecting_to_no_server_fails_within_the_timeout() -> None:
    # Given a port nobody listens on / When connecting / Then ProviderError, no hang
    with pytest.raises(ProviderError):
        await asyncio.wait_for(
            NatsBus.connect(f"nats://127.0.0.1:{free_port()}", connect_timeout_s=1.0), 60
        )


async def test_the_factory_opens_nats_for_a_nats_url(nats_buses: NatsBuses) -> None:
    # Given settings naming the NATS server, with options in the URL
    url = f"{NATS_URL}?prefix={nats_buses.prefix}&ack_wait_s={ACK_WAIT_S}&max_deliver=2"
    # When the bus is opened from them
    bus = await open_bus(Settings(bus_url=url))
    try:
        # Then it is NATS under that prefix with those options
        assert isinstance(bus, NatsBus)
        assert (bus.layout.prefix, bus.ack_wait_s, bus.max_deliver) == (nats_buses.prefix, 2.0, 2)
    finally:
        await bus.close()


async def _send_eventually(bus: NatsBus, topic: str, data: bytes, key: str) -> None:
    """Send until the bus has reconnected; the key makes the retries one message."""
    deadline = time.monotonic() + 60
    while True:
        try:
            await bus.send(topic, data, key=key)
            return
        except ProviderError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[OwnNatsServer]:
    """A started nats-server of the test's own, which the test may kill and restart."""
    binary = nats_server_binary()
    if binary is None:
        unavailable("nats-server is not installed")
    server = OwnNatsServer(binary, tmp_path / "jetstream")
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


@contextlib.asynccontextmanager
async def bus_on(server: OwnNatsServer, **options: Any) -> AsyncIterator[NatsBus]:
    """A bus on ``server`` under a fresh prefix, reconnecting quickly after a restart."""
    bus = await NatsBus.connect(
        server.url, prefix=unique_prefix(), ack_wait_s=ACK_WAIT_S, reconnect_wait_s=0.1, **options
    )
    try:
        yield bus
    finally:
        await bus.close()


async def test_a_connection_sets_up_the_streams_once_jetstream_answers(
    server: OwnNatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a server whose JetStream does not answer (as one that just started and
    # restarts, or is not ready)
    await server.kill()
    await server.start(jetstream=False)
    caplog.set_level(logging.WARNING, logger="squall.bus.nats")
    connecting = asyncio.create_task(
        NatsBus.connect(server.url, prefix=unique_prefix(), connect_timeout_s=120.0,
                        reconnect_wait_s=0.1)
    )  # fmt: skip
    try:
        # When its set-up of the streams has failed once
        assert await until(lambda: "setting up the streams failed" in caplog.text, 60)
        # And the server is back, with JetStream, on the same port
        await server.kill()
        await server.start()
        # Then the connection sets the streams up and is usable
        bus = await asyncio.wait_for(connecting, 120)
    finally:
        if not connecting.done():
            connecting.cancel()
    try:
        await bus.send("invoker.s", b"x")
        assert await bus.pending("invoker.s") == 1
    finally:
        await bus.close()


async def test_a_stream_the_server_will_not_change_fails_with_its_reason(
    server: OwnNatsServer,
) -> None:
    # Given the activations stream made in memory (this version keeps it in files, and
    # JetStream cannot change a stream's storage)
    prefix = unique_prefix()
    layout = Layout(prefix=prefix)
    wrong = layout.stream_config(layout.streams[0])
    wrong.storage = js_api.StorageType.MEMORY
    nc = await nats.connect(server.url)
    try:
        await nc.jetstream().add_stream(wrong)
    finally:
        await nc.close()
    # When a process connects / Then it fails at once, saying what the server refused
    with pytest.raises(ProviderError) as refused:
        await asyncio.wait_for(NatsBus.connect(server.url, prefix=prefix), 60)
    assert "stream configuration update can not change storage type" in str(refused.value)


async def test_a_killed_and_restarted_server_loses_nothing_and_repeats_nothing(
    server: OwnNatsServer,
) -> None:
    # Given five messages received and acknowledged, and one received but not
    async with bus_on(server, max_deliver=5, send_timeout_s=2.0) as bus:
        consumer = await bus.consumer("invoker.r")
        for i in range(5):
            await bus.send("invoker.r", f"acked{i}".encode(), key=f"acked{i}")
        for _ in range(5):
            await (await take(consumer)).ack()
        await bus.send("invoker.r", b"unacked", key="unacked")
        held = await take(consumer)
        assert held.data == b"unacked"

        # When the server is killed (SIGKILL: no clean shutdown)
        await server.kill()
        # Then a send fails within its timeout, an ack cannot be confirmed, a broadcast is
        # dropped quietly, and a consumer keeps waiting
        with pytest.raises(ProviderError):
            await asyncio.wait_for(bus.send("invoker.r", b"during", key="during"), 60)
        with pytest.raises(ProviderError):
            await asyncio.wait_for(held.ack(), 60)
        await bus.publish("health", b"dropped")
        waiting = asyncio.create_task(consumer.receive())

        # When it comes back with its store
        await server.start()
        # Then sends work again, the waiting consumer resumes, the unacknowledged message
        # comes back, and no acknowledged one does
        await _send_eventually(bus, "invoker.r", b"after", key="after")
        first = await asyncio.wait_for(waiting, ARRIVES_S * 2)
        await first.ack()
        got = [first, *await drain(bus, consumer, "invoker.r")]
        counts = Counter(d.data for d in got)
        assert counts[b"unacked"] == 1
        assert counts[b"after"] == 1
        # "during" was not confirmed; had it reached the server, it would be there once.
        assert counts[b"during"] <= 1
        assert not {data for data in counts if data.startswith(b"acked")}
        assert sum(counts.values()) == len(got)


async def test_a_server_killed_under_load_runs_nothing_twice(server: OwnNatsServer) -> None:
    """The invoker's pattern under a restart: acknowledge first, run only when the ack is
    confirmed; the producer retries each send with its key until it is accepted."""
    total = 200
    async with bus_on(server, max_deliver=20, send_timeout_s=1.0) as bus:
        consumer = await bus.consumer("invoker.load")
        ran: Counter[bytes] = Counter()
        unconfirmed: set[bytes] = set()
        a_third_sent = asyncio.Event()

        async def produce() -> None:
            for i in range(total):
                await _send_eventually(bus, "invoker.load", f"job{i}".encode(), key=f"job{i}")
                if i == total // 3:
                    a_third_sent.set()

        async def run() -> None:
            while sum(ran.values()) + len(unconfirmed - set(ran)) < total:
                delivery = await consumer.poll(0.5)
                if delivery is None:
                    continue
                try:
                    await delivery.ack()
                except ProviderError:
                    unconfirmed.add(delivery.data)  # not run: the bus will deliver it again
                    continue
                ran[delivery.data] += 1

        # Given a producer and a consumer at work
        producer, runner = asyncio.create_task(produce()), asyncio.create_task(run())
        await asyncio.wait_for(a_third_sent.wait(), ARRIVES_S)
        # When the server is killed mid-way and started again
        await server.kill()
        await server.start()
        await asyncio.wait_for(producer, ARRIVES_S * 4)
        await asyncio.wait_for(runner, ARRIVES_S * 4)
        # Then no job ran twice, and every job ran (a job may be lost only when the server
        # recorded its ack but died before confirming it)
        assert max(ran.values()) == 1
        lost = {f"job{i}".encode() for i in range(total)} - set(ran)
        assert lost <= unconfirmed
        assert await consumer.poll(ACK_WAIT_S * 1.5) is None


async def test_streams_deleted_under_a_running_bus_are_made_again(nats_buses: NatsBuses) -> None:
    # Given a bus with a consumer, whose streams another process deletes (as a server
    # that came back without its store would have lost them)
    bus, admin = await nats_buses.open(), await nats_buses.open()
    consumer = await bus.consumer("invoker.gone")
    await admin.delete_streams()
    # When the bus sends and receives on the topic again
    await bus.send("invoker.gone", b"after")
    # Then the streams and the consumer are recreated and the message arrives
    delivery = await take(consumer)
    assert delivery.data == b"after"
    await delivery.ack()


class _Handed:
    """A listener's handler: what it got, and in which task the read loop called it."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.tasks: list[asyncio.Task[Any] | None] = []
        self.arrived = asyncio.Event()

    def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self.tasks.append(asyncio.current_task())
        self.arrived.set()

    async def next(self, timeout: float) -> Delivery:
        async with asyncio.timeout(timeout):
            while not self.arrived.is_set():
                await self.arrived.wait()
        self.arrived.clear()
        return self.deliveries[-1]


async def test_an_invoker_queue_listener_is_handed_messages_by_the_read_loop(
    nats_buses: NatsBuses,
) -> None:
    # Given a listener on an invoker's queue (no direct hand-offs, one at a time)
    bus = await nats_buses.open()
    handed = _Handed()
    listener = await listen(bus, "invoker.readloop", handed)
    # When three messages are sent
    for i in range(3):
        await bus.send("invoker.readloop", f"m{i}".encode())
    assert await until(lambda: len(handed.deliveries) == 3, ARRIVES_S)
    # Then the client's read loop called the handler itself, with each in order (no
    # task of the listener's own between the socket and the handler)
    assert [d.data for d in handed.deliveries] == [b"m0", b"m1", b"m2"]
    assert set(handed.tasks) == {bus._nc._reading_task}
    for delivery in handed.deliveries:
        await delivery.ack()
    assert await bus.pending("invoker.readloop") == 0
    await listener.close()


async def test_a_listener_takes_its_topic_again_after_its_streams_were_deleted(
    nats_buses: NatsBuses,
) -> None:
    # Given a listener whose streams another process deletes (a server back without its
    # store), its pull in flight lost with them
    bus, admin = await nats_buses.open(), await nats_buses.open()
    handed = _Handed()
    listener = await listen(bus, "invoker.lgone", handed)
    await admin.delete_streams()
    # When a message is sent on the topic again
    await _send_eventually(bus, "invoker.lgone", b"after", key="after")
    # Then the streams and the consumer are made again and the listener gets it
    delivery = await handed.next(ARRIVES_S * 3)
    assert delivery.data == b"after"
    await delivery.ack()
    await listener.close()


async def test_a_listener_goes_on_after_a_server_restart(server: OwnNatsServer) -> None:
    async with bus_on(server, max_deliver=5, send_timeout_s=2.0) as bus:
        # Given a listener that got a message
        handed = _Handed()
        listener = await listen(bus, "invoker.lrestart", handed)
        await bus.send("invoker.lrestart", b"before", key="before")
        await (await handed.next(ARRIVES_S)).ack()
        # When the server is killed and started again with its store
        await server.kill()
        await server.start()
        # Then the listener gets what is sent afterwards, once
        await _send_eventually(bus, "invoker.lrestart", b"after", key="after")
        delivery = await handed.next(ARRIVES_S * 3)
        assert delivery.data == b"after"
        await delivery.ack()
        await asyncio.sleep(0.3)
        assert [d.data for d in handed.deliveries] == [b"before", b"after"]
        await listener.close()


def _has(items: list[Delivery], count: int) -> bool:
    return len(items) == count


async def test_a_listener_sends_its_next_pull_in_one_write_with_the_handlers_ack(
    nats_buses: NatsBuses,
) -> None:
    # Given a listener on an invoker's queue whose handler acknowledges each message in a
    # task (as the invoker's activation task does first), and its connection's writes
    # recorded
    bus, sender = await nats_buses.open(), await nats_buses.open()
    writes: list[bytes] = []
    transport = bus._nc._transport
    assert isinstance(transport, TcpTransport)
    writer = transport._io_writer
    assert writer is not None
    write_lines = writer.writelines

    def record(lines: Any) -> None:
        writes.append(b"".join(lines))
        write_lines(lines)

    writer.writelines = record  # type: ignore[method-assign,assignment]
    acks: set[asyncio.Task[None]] = set()
    handed: list[Delivery] = []

    def handler(delivery: Delivery) -> None:
        handed.append(delivery)
        acks.add(asyncio.ensure_future(delivery.ack_unconfirmed()))

    listener = await listen(bus, "invoker.onewrite", handler)
    await asyncio.sleep(0.2)  # its first pull is out
    writes.clear()
    # When messages arrive one at a time
    for i in range(5):
        await sender.send("invoker.onewrite", f"m{i}".encode())
        assert await until(functools.partial(_has, handed, i + 1), ARRIVES_S)
        await asyncio.gather(*acks)
    # Then each message's ack and the next pull request went out in the same write
    # (one system call and one wake-up of the server per message, not two)
    assert await until(lambda: sum(b"+ACK" in w for w in writes) == 5, ARRIVES_S)
    assert [b"+ACK" in w and b'"batch":1' in w for w in writes] == [True] * 5
    await listener.close()
