"""Push delivery (``squall.bus.push.listen``, guarantees in ``bus/contracts.py``), run
against every provider: the in-process bus natively, NATS from its read loop (an
invoker's queue) or through the pull adapter (a completion topic), and the adapter over
each provider's consumer too (``*-pull``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from squall.bus.contracts import Delivery, Handler, Listener, MessagingProvider
from squall.bus.memory import MemoryBus
from squall.bus.push import PullListener, listen

from .bussupport import ARRIVES_S, take
from .conftest import ACK_WAIT_S, KINDS, BusKind

pytestmark = pytest.mark.anyio

QUIET_S = 0.3

OpenListener = Callable[[str, Handler], Awaitable[Listener]]


class Taken:
    """A handler that records what it is handed (and acknowledges it unless told not)."""

    def __init__(self, *, ack: bool = True) -> None:
        self.deliveries: list[Delivery] = []
        self._ack = ack
        self._acks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if self._ack and not delivery.settled:
            task = asyncio.ensure_future(delivery.ack())
            self._acks.add(task)
            task.add_done_callback(self._acks.discard)
        self._changed.set()

    @property
    def data(self) -> list[bytes]:
        return [d.data for d in self.deliveries]

    async def until(self, count: int, timeout: float = ARRIVES_S) -> list[bytes]:
        async with asyncio.timeout(timeout):
            while len(self.deliveries) < count:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.gather(*self._acks)
        return self.data


# Every provider through ``listen`` (the in-process bus natively; NATS from its read loop
# for an invoker's queue, through the pull adapter for a completion topic), and the
# adapter over each provider's consumer too (NATS's completion topics use it).
EVERY_WAY = pytest.mark.parametrize(
    ("bus_kind", "mode"),
    [(kind, "native") for kind in KINDS] + [(kind, "pull") for kind in KINDS],
    ids=[f"{kind.name}-native" for kind in KINDS] + [f"{kind.name}-pull" for kind in KINDS],
)


@pytest.fixture
async def listening(bus: MessagingProvider, mode: str) -> AsyncIterator[OpenListener]:
    """``listen`` as the invoker calls it, or (``mode`` "pull") the pull adapter."""

    async def open_listener(topic: str, handler: Handler) -> Listener:
        if mode == "pull":
            return PullListener(await bus.consumer(topic), handler)
        return await listen(bus, topic, handler)

    yield open_listener


@EVERY_WAY
async def test_a_listener_is_handed_every_message_in_send_order(
    bus: MessagingProvider, listening: OpenListener
) -> None:
    # Given a listener on a topic
    taken = Taken()
    listener = await listening("invoker.push-order", taken)
    # When one producer sends five messages
    for i in range(5):
        await bus.send("invoker.push-order", f"m{i}".encode())
    # Then the handler gets them in send order, each once, on its first delivery
    assert await taken.until(5) == [f"m{i}".encode() for i in range(5)]
    assert [d.attempt for d in taken.deliveries] == [1] * 5
    assert await bus.pending("invoker.push-order") == 0
    await listener.close()


@EVERY_WAY
async def test_messages_sent_before_listen_are_handed_after_it_returned(
    bus: MessagingProvider, listening: OpenListener
) -> None:
    # Given messages waiting on a topic nobody consumes
    for i in range(3):
        await bus.send("invoker.push-early", f"e{i}".encode())
    # When a listener starts
    taken = Taken()
    listener = await listening("invoker.push-early", taken)
    # Then none was handed inside listen, and all come afterwards, in order
    assert taken.data == []
    assert await taken.until(3) == [b"e0", b"e1", b"e2"]
    await listener.close()


@EVERY_WAY
async def test_a_closed_listener_is_handed_nothing_and_the_topic_keeps_it(
    bus: MessagingProvider, listening: OpenListener
) -> None:
    # Given a listener that took one message, then closed
    taken = Taken()
    listener = await listening("invoker.push-closed", taken)
    await bus.send("invoker.push-closed", b"before")
    await taken.until(1)
    await listener.close()
    await listener.close()  # idempotent
    # When another message is sent
    await bus.send("invoker.push-closed", b"after")
    await asyncio.sleep(QUIET_S)
    # Then the closed listener does not get it; a consumer of the topic does
    assert taken.data == [b"before"]
    consumer = await bus.consumer("invoker.push-closed")
    delivery = await take(consumer)
    assert delivery.data == b"after"
    await delivery.ack()
    await consumer.close()


@EVERY_WAY
async def test_a_listener_shares_the_topic_with_a_consumer(
    bus: MessagingProvider, listening: OpenListener
) -> None:
    # Given a listener and a pull consumer on one topic
    taken = Taken()
    listener = await listening("invoker.push-shared", taken)
    consumer = await bus.consumer("invoker.push-shared")
    sent = {f"job{i}".encode() for i in range(10)}
    # When ten messages are sent
    for data in sorted(sent):
        await bus.send("invoker.push-shared", data)
    # Then each goes to exactly one of them
    pulled: list[bytes] = []
    while len(taken.deliveries) + len(pulled) < len(sent):
        delivery = await consumer.poll(0.2)
        if delivery is not None:
            await delivery.ack()
            pulled.append(delivery.data)
    await asyncio.sleep(QUIET_S)
    assert sorted(taken.data + pulled) == sorted(sent)
    await listener.close()
    await consumer.close()


@EVERY_WAY
async def test_an_unacknowledged_delivery_comes_back_on_a_durable_bus(
    bus: MessagingProvider, bus_kind: BusKind, listening: OpenListener
) -> None:
    # Given a listener whose handler never acknowledges
    taken = Taken(ack=False)
    listener = await listening("invoker.push-unacked", taken)
    await bus.send("invoker.push-unacked", b"lost")
    await taken.until(1)
    first = taken.deliveries[0]
    # Then the in-process bus's delivery is settled and never comes again; a durable
    # bus's is not, and comes back after the ack wait, counted (ack semantics unchanged)
    assert first.settled is (not bus_kind.durable)
    if not bus_kind.durable:
        await asyncio.sleep(QUIET_S)
        assert taken.data == [b"lost"]
    else:
        await taken.until(2, ACK_WAIT_S + ARRIVES_S)
        assert [d.attempt for d in taken.deliveries] == [1, 2]
        await taken.deliveries[1].ack()
    await listener.close()


@EVERY_WAY
async def test_a_failing_handler_fails_neither_the_send_nor_the_listener(
    bus: MessagingProvider, listening: OpenListener
) -> None:
    # Given a handler that raises on its first message
    taken = Taken()

    def handler(delivery: Delivery) -> None:
        taken(delivery)
        if delivery.data == b"bad":
            raise RuntimeError("a bug in the handler")

    listener = await listening("completed.push-failing", handler)
    # When two messages are sent
    await bus.send("completed.push-failing", b"bad")
    await bus.send("completed.push-failing", b"good")
    # Then both sends returned and the listener goes on with the next message
    assert await taken.until(2) == [b"bad", b"good"]
    await listener.close()


@EVERY_WAY
async def test_closing_the_bus_ends_its_listeners(
    bus: MessagingProvider, listening: OpenListener
) -> None:
    taken = Taken()
    listener = await listening("completed.push-bus-closed", taken)
    await bus.close()
    await asyncio.sleep(QUIET_S)
    assert taken.data == []
    await listener.close()  # still fine after the bus closed


async def test_the_in_process_bus_hands_a_message_over_inside_send() -> None:
    # Given the in-process bus and a listener on a topic
    bus = MemoryBus()
    taken = Taken()
    listener = await listen(bus, "invoker.push-at-once", taken)
    # When a message is sent
    await bus.send("invoker.push-at-once", b"now")
    # Then the handler had it before send returned: no loop iteration in between
    assert taken.data == [b"now"]
    await listener.close()
    await bus.close()


async def test_the_in_process_bus_never_nests_handler_calls() -> None:
    # Given a handler that sends to its own topic while it runs (run to its end at once:
    # the in-process bus's send does not suspend)
    bus = MemoryBus()
    order: list[str] = []

    def handler(delivery: Delivery) -> None:
        order.append(f"start {delivery.data.decode()}")
        if delivery.data == b"first":
            with pytest.raises(StopIteration):
                bus.send("invoker.push-nested", b"second").send(None)
        order.append(f"end {delivery.data.decode()}")

    listener = await listen(bus, "invoker.push-nested", handler)
    await bus.send("invoker.push-nested", b"first")
    # Then the second message is handed after the first call returned, not inside it
    assert order == ["start first", "end first", "start second", "end second"]
    await listener.close()
    await bus.close()
