"""The MessagingProvider contract, run against every provider (in-process and NATS).

Everything here goes through ``squall.bus.contracts`` only; the few differences between
providers (redelivery exists only on durable ones) are the ``durable`` flag of the kind.
"""

from __future__ import annotations

import asyncio

import pytest

from squall.bus.contracts import Consumer, MessagingProvider
from squall.errors import ProviderError

from .bussupport import ARRIVES_S, take
from .conftest import ACK_WAIT_S, MAX_DELIVER, BusKind

pytestmark = pytest.mark.anyio

# How long to wait for a message that must not come.
QUIET_S = 0.3


async def test_messages_arrive_in_send_order(bus: MessagingProvider) -> None:
    # Given a consumer on a topic
    consumer = await bus.consumer("invoker.order")
    # When one producer sends five messages
    for i in range(5):
        await bus.send("invoker.order", f"m{i}".encode())
    # Then they arrive in send order, each on its first delivery
    received = []
    for _ in range(5):
        delivery = await take(consumer)
        assert delivery.attempt == 1
        await delivery.ack()
        received.append(delivery.data)
    assert received == [f"m{i}".encode() for i in range(5)]
    assert await bus.pending("invoker.order") == 0


async def test_receive_waits_for_the_next_message(bus: MessagingProvider) -> None:
    # Given a consumer waiting on an empty topic
    consumer = await bus.consumer("completed.wait")
    waiting = asyncio.create_task(consumer.receive())
    # When a message is sent
    await bus.send("completed.wait", b"done")
    # Then the waiting receive returns it
    delivery = await asyncio.wait_for(waiting, ARRIVES_S)
    assert delivery.data == b"done"
    await delivery.ack()


async def test_each_message_goes_to_one_of_two_consumers(bus: MessagingProvider) -> None:
    # Given two consumers of one topic
    a = await bus.consumer("invoker.shared")
    b = await bus.consumer("invoker.shared")
    sent = {f"job{i}".encode() for i in range(20)}
    # When twenty messages are sent and both consumers take until the topic is empty
    for data in sorted(sent):
        await bus.send("invoker.shared", data)
    got: list[bytes] = []

    async def drain(consumer: Consumer) -> None:
        while True:
            delivery = await consumer.poll(QUIET_S)
            if delivery is None:
                if await bus.pending("invoker.shared") == 0:
                    return
                continue
            got.append(delivery.data)
            await delivery.ack()

    await asyncio.wait_for(asyncio.gather(drain(a), drain(b)), ARRIVES_S * 2)
    # Then every message was received exactly once
    assert sorted(got) == sorted(sent)


async def test_topics_are_separate(bus: MessagingProvider) -> None:
    # Given a message on one topic
    await bus.send("invoker.x", b"for-x")
    # When a consumer of another topic polls
    other = await bus.consumer("invoker.y")
    await bus.send("invoker.y", b"for-y")
    # Then it sees only its own, and the first one still waits
    assert (await take(other)).data == b"for-y"
    assert await other.poll(QUIET_S) is None
    assert await bus.pending("invoker.x") == 1


async def test_poll_returns_none_when_nothing_arrives(bus: MessagingProvider) -> None:
    # Given an empty topic / When a consumer polls / Then it gets None, not an error
    consumer = await bus.consumer("invoker.empty")
    assert await consumer.poll(QUIET_S) is None
    assert await consumer.poll(0) is None


async def test_a_key_sent_twice_is_delivered_once(bus: MessagingProvider) -> None:
    # Given a message sent with a key
    consumer = await bus.consumer("invoker.keys")
    await bus.send("invoker.keys", b"first", key="act-1")
    # When it is sent again with the same key, and another with a new key
    await bus.send("invoker.keys", b"again", key="act-1")
    await bus.send("invoker.keys", b"second", key="act-2")
    # Then the repeat is accepted but not delivered
    first, second = await take(consumer), await take(consumer)
    assert (first.data, second.data) == (b"first", b"second")
    await first.ack()
    await second.ack()
    assert await consumer.poll(QUIET_S) is None


async def test_pending_counts_unacknowledged_messages(bus: MessagingProvider) -> None:
    # Given three messages on a topic nobody consumed yet
    for i in range(3):
        await bus.send("invoker.count", f"{i}".encode())
    assert await bus.pending("invoker.count") == 3
    # When one is received and acknowledged
    consumer = await bus.consumer("invoker.count")
    delivery = await take(consumer)
    await delivery.ack()
    # Then two are pending; other topics have none
    assert await bus.pending("invoker.count") == 2
    assert await bus.pending("invoker.nothing") == 0


async def test_acknowledged_messages_are_not_delivered_again(
    bus: MessagingProvider, bus_kind: BusKind
) -> None:
    # Given a message received and acknowledged
    consumer = await bus.consumer("completed.acked")
    await bus.send("completed.acked", b"once")
    delivery = await take(consumer)
    await delivery.ack()
    await delivery.ack()  # a second ack changes nothing
    # When a consumer polls for longer than a durable bus's ack wait
    # Then nothing comes back
    quiet = ACK_WAIT_S * 1.5 if bus_kind.durable else QUIET_S
    assert await consumer.poll(quiet) is None


async def test_a_message_acknowledged_unconfirmed_is_not_delivered_again(
    bus: MessagingProvider, bus_kind: BusKind
) -> None:
    # Given a message received and acknowledged without waiting for a confirmation
    consumer = await bus.consumer("invoker.nowait")
    await bus.send("invoker.nowait", b"once")
    delivery = await take(consumer)
    await delivery.ack_unconfirmed()
    await delivery.ack_unconfirmed()  # a second ack changes nothing
    # When a consumer polls for longer than a durable bus's ack wait
    # Then nothing comes back: the bus recorded the ack all the same
    quiet = ACK_WAIT_S * 1.5 if bus_kind.durable else QUIET_S
    assert await consumer.poll(quiet) is None
    assert await bus.pending("invoker.nowait") == 0


async def test_unacknowledged_messages_come_back_a_bounded_number_of_times(
    bus: MessagingProvider, bus_kind: BusKind
) -> None:
    # Given a message received and never acknowledged
    consumer = await bus.consumer("invoker.unacked")
    await bus.send("invoker.unacked", b"lost")
    first = await take(consumer)
    assert first.attempt == 1
    if not bus_kind.durable:
        # The in-process bus delivers exactly once: the message left the queue.
        assert await consumer.poll(QUIET_S) is None
        assert await bus.pending("invoker.unacked") == 0
        return
    # When the consumer keeps polling
    # Then the message comes back after the ack wait, counted, up to max_deliver times
    attempts = [first.attempt]
    for _ in range(MAX_DELIVER - 1):
        again = await take(consumer, ACK_WAIT_S + ARRIVES_S)
        assert again.data == b"lost"
        attempts.append(again.attempt)
    assert attempts == list(range(1, MAX_DELIVER + 1))
    assert await consumer.poll(ACK_WAIT_S * 1.5) is None


async def test_published_messages_reach_every_subscriber(bus: MessagingProvider) -> None:
    # Given two subscribers of a subject and one of another subject
    one, two = await bus.subscribe("health"), await bus.subscribe("health")
    other = await bus.subscribe("cacheInvalidation")
    # When two messages are published on the first subject, then a marker on both
    await bus.publish("health", b"ping-1")
    await bus.publish("health", b"ping-2")
    await bus.publish("cacheInvalidation", b"marker")
    # Then both subscribers get both, in order, and the other subject only its marker
    for subscription in (one, two):
        got = [await asyncio.wait_for(subscription.next(), ARRIVES_S) for _ in range(2)]
        assert got == [b"ping-1", b"ping-2"]
    assert await asyncio.wait_for(other.next(), ARRIVES_S) == b"marker"
    # And nothing was stored on a topic
    assert await bus.pending("invoker.health") == 0


async def test_a_closed_subscription_gets_no_more_messages(bus: MessagingProvider) -> None:
    # Given a subscriber waiting, and a second one
    first, second = await bus.subscribe("health"), await bus.subscribe("health")
    waiting = asyncio.create_task(first.next())
    # When the first closes
    await first.close()
    await first.close()
    # Then its waiting next() fails, and messages still reach the other one
    with pytest.raises(ProviderError):
        await asyncio.wait_for(waiting, ARRIVES_S)
    await bus.publish("health", b"after")
    assert await asyncio.wait_for(second.next(), ARRIVES_S) == b"after"
    with pytest.raises(ProviderError):
        await first.next()


async def test_closing_a_consumer_wakes_its_receive_and_leaves_the_topic(
    bus: MessagingProvider,
) -> None:
    # Given two consumers of one topic, one waiting in receive
    leaving, staying = await bus.consumer("invoker.leave"), await bus.consumer("invoker.leave")
    waiting = asyncio.create_task(leaving.receive())
    await asyncio.sleep(0)
    # When the waiting one closes
    await leaving.close()
    # Then its receive fails and later messages go to the other one
    with pytest.raises(ProviderError):
        await asyncio.wait_for(waiting, ARRIVES_S)
    await bus.send("invoker.leave", b"for-staying")
    delivery = await take(staying, ARRIVES_S)
    assert delivery.data == b"for-staying"
    await delivery.ack()
    with pytest.raises(ProviderError):
        await leaving.poll(0)


async def test_close_wakes_everyone_and_refuses_everything(bus: MessagingProvider) -> None:
    # Given consumers and a subscriber waiting
    c1, c2 = await bus.consumer("invoker.closing"), await bus.consumer("invoker.closing")
    subscription = await bus.subscribe("health")
    waits = [
        asyncio.create_task(c1.receive()),
        asyncio.create_task(c2.poll(ARRIVES_S)),
        asyncio.create_task(subscription.next()),
    ]
    await asyncio.sleep(0)
    # When the bus closes (twice: close is idempotent)
    await bus.close()
    await bus.close()
    # Then every waiter fails with ProviderError, and so does every later call
    for task in waits:
        with pytest.raises(ProviderError):
            await asyncio.wait_for(task, ARRIVES_S)
    with pytest.raises(ProviderError):
        await bus.send("invoker.closing", b"late")
    with pytest.raises(ProviderError):
        await bus.consumer("invoker.closing")
    with pytest.raises(ProviderError):
        await bus.pending("invoker.closing")
    with pytest.raises(ProviderError):
        await bus.publish("health", b"late")
    with pytest.raises(ProviderError):
        await bus.subscribe("health")
    with pytest.raises(ProviderError):
        await c1.receive()


async def test_empty_messages_are_refused(bus: MessagingProvider) -> None:
    with pytest.raises(ProviderError):
        await bus.send("invoker.empty", b"")


async def test_a_settled_delivery_needs_no_ack(bus: MessagingProvider, bus_kind: BusKind) -> None:
    # Given a message received and never acknowledged, its consumer closed
    consumer = await bus.consumer("completed.settled")
    await bus.send("completed.settled", b"once")
    delivery = await take(consumer)
    settled = delivery.settled
    assert isinstance(settled, bool)
    # (the in-process bus's deliveries are settled: nothing to confirm)
    assert settled is (not bus_kind.durable)
    await consumer.close()
    if not settled:
        return  # acknowledged as any delivery: the tests above
    # Then nothing is pending, and another consumer never gets it again
    assert await bus.pending("completed.settled") == 0
    other = await bus.consumer("completed.settled")
    assert await other.poll(QUIET_S) is None
    await other.close()
