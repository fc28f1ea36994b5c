"""Standalone's invoke path carries message objects (bus/contracts.py, "Carrying
messages"): on the in-process bus, the invoker's intake takes the controller's
ActivationMessage itself, and the controller's completion waiters the invoker's
Completion itself — neither is encoded nor decoded.

Seen by identity: a consumer that decoded the delivery's bytes would hold an equal copy,
not the object sent. A real in-process bus, a real invoker and real waiters; the
activation names an action that does not exist, so it ends without a container."""

from __future__ import annotations

import pytest

from squall.bus.memory import MemoryBus
from squall.bus.messages import ActivationMessage, Completion, invoker_topic
from squall.bus.push import message_sender
from squall.controller.waiters import CompletionWaiters
from squall.entities.activation import (
    ActivationResponse,
    final_record,
    new_activation_id,
    now_ms,
)
from squall.invoker.pool import ContainerPool
from squall.invoker.service import Invoker
from squall.sandbox.process import ProcessContainerFactory
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


async def test_the_invoker_takes_the_activation_message_object_sent(
    factory: ProcessContainerFactory, sqlite_store: SqliteStore
) -> None:
    store = sqlite_store
    # Given a real invoker on the in-process bus
    bus = MemoryBus()
    invoker = Invoker("0", bus, store.entities, store.activations, ContainerPool(factory, 256))
    await invoker.start()
    try:
        message = ActivationMessage(
            transid="t1",
            activation_id=new_activation_id(),
            namespace="guest",
            subject="guest",
            action="/guest/missing",
            revision="1-a",
            content={},
            blocking=True,
            controller="c0",
            accepted_ms=now_ms(),
        )
        # When the controller's sender sends it (standalone's: the object is handed over)
        await message_sender(bus)(invoker_topic("0"), message, key=message.activation_id)
        # Then the activation the intake started is that very object (push delivery: it
        # was taken inside the send), not a copy decoded from its bytes
        _, taken = invoker._running[message.activation_id]
        assert taken is message
    finally:
        await invoker.close(grace_s=5)
        await bus.close()


async def test_the_waiters_take_the_completion_object_sent() -> None:
    # Given a controller's completion waiters on the in-process bus, and a listener
    bus = MemoryBus()
    seen: list[Completion] = []
    waiters = CompletionWaiters(bus, "0", listeners=[seen.append])
    await waiters.start()
    try:
        activation_id = new_activation_id()
        future = waiters.register(activation_id)
        now = now_ms()
        record = final_record(
            namespace="guest", name="a", subject="guest", activation_id=activation_id,
            start=now, end=now, response=ActivationResponse.whisk_error("it ended"),
        )  # fmt: skip
        completion = Completion("t" * 32, activation_id, "invoker0", record)
        # When the invoker's sender sends its completion
        await message_sender(bus)(waiters.topic, completion)
        # Then the waiters were handed that very object, and its record, not copies
        assert len(seen) == 1 and seen[0] is completion
        assert future.done() and future.result() is record
    finally:
        await waiters.close()
        await bus.close()
