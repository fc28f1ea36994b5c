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
