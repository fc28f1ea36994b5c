"""``send(direct=True)``: handed straight to a live consumer (NATS: core request/reply,
nothing stored), stored as any send otherwise, delivered once either way."""

from __future__ import annotations

import asyncio

import pytest

import squall.bus.nats as nats_bus
from squall.bus.contracts import MessagingProvider

from .bussupport import ARRIVES_S, take
from .conftest import ACK_WAIT_S, NatsBuses

pytestmark = pytest.mark.anyio


async def test_a_direct_send_reaches_a_waiting_consumer_once(
    bus: MessagingProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (a hand-off waits long enough for a loaded machine's consumer: none is stored)
    monkeypatch.setattr(nats_bus, "DIRECT_WAIT_S", ARRIVES_S)
    # Given a consumer waiting on a completion topic
    consumer = await bus.consumer("completed.0")
    receiving = asyncio.create_task(take(consumer))
    await asyncio.sleep(0.2)
    # When a message is sent directly, and the consumer acknowledges it
    sending = asyncio.create_task(bus.send("completed.0", b"done", direct=True))
    delivery = await receiving
    await delivery.ack()
    await asyncio.wait_for(sending, ARRIVES_S)
    # Then it came once, and nothing is left on the topic
    assert (delivery.data, delivery.attempt) == (b"done", 1)
    assert await consumer.poll(0.5) is None
    assert await bus.pending("completed.0") == 0


async def test_a_direct_send_is_not_stored_and_returns_once_acknowledged(
    nats_buses: NatsBuses, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (a hand-off waits long enough for a loaded machine's consumer: none is stored)
    monkeypatch.setattr(nats_bus, "DIRECT_WAIT_S", ARRIVES_S)
    # Given a controller consuming its completion topic, and an invoker
    controller, invoker = await nats_buses.open(), await nats_buses.open()
    consumer = await controller.consumer("completed.3")
    receiving = asyncio.create_task(take(consumer))
    await asyncio.sleep(0.2)
    # When the invoker sends a completion directly
    sending = asyncio.create_task(invoker.send("completed.3", b"done", direct=True))
    delivery = await receiving
    # Then it is not on the stream, and the send waits for the acknowledgement
    assert await invoker.pending("completed.3") == 0
    await asyncio.sleep(0.2)
    assert not sending.done()
    await delivery.ack()
    await asyncio.wait_for(sending, ARRIVES_S)
    assert await consumer.poll(ACK_WAIT_S + 1) is None


async def test_a_direct_send_with_no_consumer_is_stored(nats_buses: NatsBuses) -> None:
    # Given no consumer of the topic is up (a controller restarting)
    controller, invoker = await nats_buses.open(), await nats_buses.open()
    # When a completion is sent directly
    await invoker.send("completed.4", b"done", direct=True)
    # Then it waits on the stream for the consumer, and comes once
    assert await invoker.pending("completed.4") == 1
    consumer = await controller.consumer("completed.4")
    delivery = await take(consumer)
    await delivery.ack()
    assert (delivery.data, delivery.attempt) == (b"done", 1)
    assert await consumer.poll(ACK_WAIT_S + 1) is None
    assert await invoker.pending("completed.4") == 0


async def test_topics_other_than_completions_take_no_hand_offs(nats_buses: NatsBuses) -> None:
    # Given an invoker consuming its queue
    controller, invoker = await nats_buses.open(), await nats_buses.open()
    consumer = await invoker.consumer("invoker.5")
    # When a controller sends to it with direct=True
    await controller.send("invoker.5", b"run", direct=True)
    # Then the message is stored first (an invoker's work must be durable), then taken
    delivery = await take(consumer)
    assert await controller.pending("invoker.5") == 1  # delivered, not yet acknowledged
    await delivery.ack()
    assert await controller.pending("invoker.5") == 0


async def test_a_hand_off_acknowledged_too_late_is_stored_and_still_delivered_once(
    nats_buses: NatsBuses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nats_bus, "DIRECT_WAIT_S", 0.3)
    # Given a controller that takes a completion handed to it but is slow to acknowledge
    controller, invoker = await nats_buses.open(), await nats_buses.open()
    consumer = await controller.consumer("completed.6")
    receiving = asyncio.create_task(take(consumer))
    await asyncio.sleep(0.2)
    sending = asyncio.create_task(invoker.send("completed.6", b"done", direct=True))
    delivery = await receiving
    # When the sender gives up waiting and stores it (same id)
    await asyncio.wait_for(sending, ARRIVES_S)
    assert await invoker.pending("completed.6") == 1
    # Then the stored copy is not handed out while the hand-off is being handled,
    assert await consumer.poll(1.0) is None
    # nor after it was acknowledged (it comes back after the ack wait and is dropped)
    await delivery.ack()
    assert await consumer.poll(ACK_WAIT_S + 2) is None
    assert await invoker.pending("completed.6") == 0
