"""Carrying messages (``squall.bus.push.message_sender``, guarantees in
``bus/contracts.py``), run against every provider: the in-process bus hands the object
over, NATS gets its bytes; either way a consumer reads the same ``data``.
"""

from __future__ import annotations

import asyncio

import pytest

from squall.bus.contracts import Carrying, Delivery, MessagingProvider
from squall.bus.memory import MemoryBus
from squall.bus.messages import ActivationMessage
from squall.bus.push import listen, message_sender

from .bussupport import ARRIVES_S, take

pytestmark = pytest.mark.anyio


def _message(activation_id: str) -> ActivationMessage:
    return ActivationMessage(
        transid="t1",
        activation_id=activation_id,
        namespace="guest",
        subject="guest",
        action="/guest/a",
        revision="1-x",
        content={"n": 1},
        blocking=True,
        controller="c0",
        accepted_ms=1,
    )


async def test_a_sent_message_reaches_a_consumer_as_its_bytes(bus: MessagingProvider) -> None:
    # Given a consumer on a topic and the provider's message sender
    consumer = await bus.consumer("invoker.carry-pull")
    send = message_sender(bus)
    # When two messages are sent, one with a key sent twice
    first, second = _message("a1"), _message("a2")
    await send("invoker.carry-pull", first, key="k1")
    await send("invoker.carry-pull", first, key="k1")  # a duplicate: not delivered again
    await send("invoker.carry-pull", second)
    # Then the consumer reads each once, in order, as the bytes ``to_bytes`` makes
    got = [await take(consumer), await take(consumer)]
    assert [d.data for d in got] == [first.to_bytes(), second.to_bytes()]
    for delivery in got:
        await delivery.ack()
    assert await consumer.poll(0.2) is None
    # And a carrying provider hands the very object sent beside the bytes
    if isinstance(bus, Carrying):
        assert [getattr(d, "message", None) for d in got] == [first, second]
        assert got[0].message is first  # type: ignore[attr-defined]
    await consumer.close()


async def test_a_listener_gets_the_message_or_its_bytes(bus: MessagingProvider) -> None:
    # Given a listener on a topic
    handed: list[Delivery] = []
    acks: list[asyncio.Future[None]] = []
    arrived = asyncio.Event()

    def handler(delivery: Delivery) -> None:
        handed.append(delivery)
        if not delivery.settled:
            acks.append(asyncio.ensure_future(delivery.ack()))
        arrived.set()

    listener = await listen(bus, "invoker.carry-push", handler)
    # When a message is sent through the message sender
    message = _message("b1")
    await message_sender(bus)("invoker.carry-push", message)
    async with asyncio.timeout(ARRIVES_S):
        await arrived.wait()
    await asyncio.gather(*acks)
    # Then the handler decodes the same message from what it was handed
    (delivery,) = handed
    carried = getattr(delivery, "message", None)
    decoded = carried if carried is not None else ActivationMessage.from_bytes(delivery.data)
    assert decoded == message
    assert delivery.data == message.to_bytes()
    await listener.close()


async def test_the_in_process_bus_carries_objects_and_plain_sends_do_not() -> None:
    # Given the in-process bus (a carrying provider) and a consumer
    bus = MemoryBus()
    assert isinstance(bus, Carrying)
    consumer = await bus.consumer("invoker.carry-plain")
    # When one message is sent as bytes and one as an object
    message = _message("c1")
    await bus.send("invoker.carry-plain", b"raw")
    await bus.send_message("invoker.carry-plain", message)
    # Then the plain send's delivery carries no object, the other the one sent
    plain, carried = await take(consumer), await take(consumer)
    assert (plain.data, getattr(plain, "message", None)) == (b"raw", None)
    assert getattr(carried, "message", None) is message
    assert await bus.pending("invoker.carry-plain") == 0
    await bus.close()
