"""The invoker's intake on the in-process bus: the bus hands a message to the invoker
inside the sender's ``send`` and its activation runs in the next loop iteration, every
message still ends with one record and one completion (a burst in send order), a second
copy of a taken message is dropped, and closing the invoker stops its listener.

The activations here name an action that does not exist: the invoker records them as
failures without a container, so the tests need no sandbox (their pool is never used)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from squall.bus.memory import MemoryBus
from squall.bus.messages import ActivationMessage, Completion, completion_topic, invoker_topic
from squall.entities.activation import now_ms
from squall.invoker.activate import ACTION_REMOVED
from squall.invoker.pool import ContainerPool
from squall.invoker.service import Invoker
from squall.sandbox.process import ProcessContainerFactory
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


@dataclass
class Setup:
    bus: MemoryBus
    store: SqliteStore
    invoker: Invoker


@pytest.fixture
async def setup(factory: ProcessContainerFactory, tmp_path: Path) -> AsyncIterator[Setup]:
    bus = MemoryBus()
    store = await SqliteStore.open(tmp_path / "s.db")
    pool = ContainerPool(factory, capacity_mb=256)
    invoker = Invoker("0", bus, store.entities, store.activations, pool)
    await invoker.start()
    try:
        yield Setup(bus, store, invoker)
    finally:
        await invoker.close(grace_s=5)
        await store.close()
        await bus.close()


def _message(n: int) -> ActivationMessage:
    return ActivationMessage(
        transid=f"t{n}",
        activation_id=f"{n:032x}",
        namespace="guest",
        subject="guest",
        action="/guest/missing",
        revision="1-a",
        content={},
        blocking=True,
        controller="c0",
        accepted_ms=now_ms(),
    )


async def _completions(bus: MemoryBus, count: int) -> list[Completion]:
    consumer = await bus.consumer(completion_topic("c0"))
    try:
        return [
            Completion.from_bytes((await asyncio.wait_for(consumer.receive(), 30)).data)
            for _ in range(count)
        ]
    finally:
        await consumer.close()


async def test_an_activation_runs_in_the_iteration_its_message_is_received(
    setup: Setup,
) -> None:
    # Given an idle invoker (its consumer waits on the topic)
    await asyncio.sleep(0)
    # When a message is sent and the loop runs one iteration (the consumer's wake-up)
    await setup.bus.send(invoker_topic("0"), _message(1).to_bytes())
    await asyncio.sleep(0)
    # Then its activation already ran to its end: the record is stored, the completion
    # sent (a task of its own for the activation would only have started)
    record = await setup.store.activations.get("guest", f"{1:032x}")
    assert record.response.result == {"error": ACTION_REMOVED}
    assert await setup.bus.pending(completion_topic("c0")) == 1
    assert setup.invoker.taken == 1


async def test_the_next_consumer_takes_the_next_messages(setup: Setup) -> None:
    # Given messages sent one after another and in one burst
    await setup.bus.send(invoker_topic("0"), _message(1).to_bytes())
    first = await _completions(setup.bus, 1)
    for n in range(2, 12):
        await setup.bus.send(invoker_topic("0"), _message(n).to_bytes())
    # Then each ends once, with its record
    rest = await _completions(setup.bus, 10)
    ids = sorted(c.activation_id for c in first + rest)
    assert ids == [f"{n:032x}" for n in range(1, 12)]
    assert setup.invoker.taken == 11
    for n in range(1, 12):
        assert (await setup.store.activations.get("guest", f"{n:032x}")).response.status_code


async def test_a_second_copy_of_a_taken_message_is_dropped(setup: Setup) -> None:
    # Given a message taken and ended
    await setup.bus.send(invoker_topic("0"), _message(1).to_bytes())
    await _completions(setup.bus, 1)
    # When the same message comes again (a redelivery), then another one
    await setup.bus.send(invoker_topic("0"), _message(1).to_bytes())
    await setup.bus.send(invoker_topic("0"), _message(2).to_bytes())
    # Then only the other one runs: one more completion, for it
    (completion,) = await _completions(setup.bus, 1)
    assert completion.activation_id == f"{2:032x}"
    assert setup.invoker.taken == 2
    assert await setup.bus.pending(completion_topic("c0")) == 0


async def test_the_activation_task_exists_when_the_send_returns(setup: Setup) -> None:
    # Given an idle invoker
    await asyncio.sleep(0)
    # When a message is sent
    await setup.bus.send(invoker_topic("0"), _message(1).to_bytes())
    # Then its activation's task was started inside that send (push delivery: no
    # consumer task had to wake first), and nothing is left on the topic
    assert f"{1:032x}" in setup.invoker._running
    assert await setup.bus.pending(invoker_topic("0")) == 0
    await _completions(setup.bus, 1)


async def test_a_burst_starts_its_activations_in_send_order(setup: Setup) -> None:
    # Given activations running (their tasks not yet past their first step)
    started: list[str] = []
    for n in range(1, 6):
        await setup.bus.send(invoker_topic("0"), _message(n).to_bytes())
        started = list(setup.invoker._running)
    # Then each has a task of its own, in send order, and each ends once
    assert started == [f"{n:032x}" for n in range(1, 6)]
    ids = [c.activation_id for c in await _completions(setup.bus, 5)]
    assert ids == [f"{n:032x}" for n in range(1, 6)]


async def test_close_stops_the_listener(setup: Setup) -> None:
    # Given an invoker that took a few messages
    for n in range(1, 4):
        await setup.bus.send(invoker_topic("0"), _message(n).to_bytes())
    await _completions(setup.bus, 3)
    # When it closes
    await setup.invoker.close(grace_s=5)
    # Then nothing is left running
    assert not setup.invoker._running
    # And a message sent afterwards stays on the topic
    await setup.bus.send(invoker_topic("0"), _message(9).to_bytes())
    await asyncio.sleep(0)
    assert await setup.bus.pending(invoker_topic("0")) == 1
    assert not setup.invoker._running
