"""The in-process bus: work-queue delivery per topic, in order, and a clean close."""

from __future__ import annotations

import asyncio

import pytest

from squall.bus.memory import MemoryBus
from squall.errors import ProviderError

pytestmark = pytest.mark.anyio


async def test_messages_arrive_in_order_once() -> None:
    # Given a bus with one consumer on a topic
    bus = MemoryBus()
    consumer = await bus.consumer("invoker.0")
    # When three messages are sent
    for i in range(3):
        await bus.send("invoker.0", f"m{i}".encode())
    # Then they arrive in send order
    received = [(await consumer.receive()).data for _ in range(3)]
    assert received == [b"m0", b"m1", b"m2"]
    assert await bus.pending("invoker.0") == 0


async def test_two_consumers_share_the_work() -> None:
    # Given two consumers of one topic
    bus = MemoryBus()
    a, b = await bus.consumer("t"), await bus.consumer("t")
    await bus.send("t", b"1")
    await bus.send("t", b"2")
    # When both receive / Then each message went to exactly one of them
    got = {(await a.receive()).data, (await b.receive()).data}
    assert got == {b"1", b"2"}


async def test_topics_are_separate() -> None:
    bus = MemoryBus()
    await bus.send("x", b"for-x")
    consumer = await bus.consumer("y")
    await bus.send("y", b"for-y")
    assert (await consumer.receive()).data == b"for-y"
    assert await bus.pending("x") == 1


async def test_close_wakes_waiting_consumers_and_refuses_sends() -> None:
    # Given two consumers waiting on an empty topic
    bus = MemoryBus()
    c1, c2 = await bus.consumer("t"), await bus.consumer("t")
    waits = [asyncio.create_task(c.receive()) for c in (c1, c2)]
    await asyncio.sleep(0)
    # When the bus closes
    await bus.close()
    # Then both waiters fail with ProviderError and sending is refused
    for task in waits:
        with pytest.raises(ProviderError):
            await task
    with pytest.raises(ProviderError):
        await bus.send("t", b"late")


async def test_empty_messages_are_refused() -> None:
    bus = MemoryBus()
    with pytest.raises(ProviderError):
        await bus.send("t", b"")


async def test_a_queued_message_is_taken_at_once_even_by_a_zero_poll() -> None:
    bus = MemoryBus()
    consumer = await bus.consumer("t")
    await bus.send("t", b"waiting")
    delivery = await consumer.poll(0)
    assert delivery is not None and delivery.data == b"waiting"
    assert await consumer.poll(0) is None


async def test_a_closed_consumer_leaves_queued_messages_to_the_others() -> None:
    bus = MemoryBus()
    closing, other = await bus.consumer("t"), await bus.consumer("t")
    await bus.send("t", b"m")
    await closing.close()
    with pytest.raises(ProviderError):
        await closing.receive()
    assert (await other.receive()).data == b"m"


async def test_a_waiter_whose_message_was_taken_waits_for_the_next() -> None:
    # Given a consumer waiting on an empty topic, and another one that is not
    bus = MemoryBus()
    waiting, busy = await bus.consumer("t"), await bus.consumer("t")
    first = asyncio.create_task(waiting.receive())
    await asyncio.sleep(0)
    # When a message arrives and the busy consumer takes it before the waiter runs
    await bus.send("t", b"1")
    assert (await busy.receive()).data == b"1"
    # Then the waiter gets the next message, and nothing is lost or repeated
    await bus.send("t", b"2")
    assert (await asyncio.wait_for(first, 10)).data == b"2"
    assert await bus.pending("t") == 0


async def test_a_waiter_cancelled_after_it_was_woken_passes_the_message_on() -> None:
    # Given two consumers waiting on an empty topic
    bus = MemoryBus()
    first, second = await bus.consumer("t"), await bus.consumer("t")
    woken = asyncio.create_task(first.receive())
    await asyncio.sleep(0)
    other = asyncio.create_task(second.receive())
    await asyncio.sleep(0)
    # When a message wakes the longest waiter, which is cancelled before it runs
    await bus.send("t", b"m")
    woken.cancel()
    # Then the other waiter gets the message and the cancelled one got nothing
    assert (await asyncio.wait_for(other, 10)).data == b"m"
    with pytest.raises(asyncio.CancelledError):
        await woken
    assert await bus.pending("t") == 0


async def test_a_poll_that_runs_out_leaves_later_messages_to_the_next_receive() -> None:
    bus = MemoryBus()
    consumer = await bus.consumer("t")
    assert await consumer.poll(0.01) is None
    await bus.send("t", b"after")
    assert (await consumer.receive()).data == b"after"


async def test_closing_a_waiting_consumer_wakes_it_and_leaves_messages_to_the_others() -> None:
    bus = MemoryBus()
    closing, other = await bus.consumer("t"), await bus.consumer("t")
    waiting = asyncio.create_task(closing.receive())
    await asyncio.sleep(0)
    await closing.close()
    with pytest.raises(ProviderError):
        await asyncio.wait_for(waiting, 10)
    await bus.send("t", b"m")
    assert (await other.receive()).data == b"m"


async def test_a_message_wakes_its_waiting_consumer_in_one_loop_iteration() -> None:
    # Given a consumer waiting on an empty topic
    bus = MemoryBus()
    consumer = await bus.consumer("t")
    waiting = asyncio.create_task(consumer.receive())
    await asyncio.sleep(0)
    # When a message is sent, Then the consumer has it after one pass of the loop
    # (a hop costs a loop iteration each: see _Topic)
    await bus.send("t", b"m")
    await asyncio.sleep(0)
    assert waiting.done() and waiting.result().data == b"m"
