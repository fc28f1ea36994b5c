"""CompletionWaiters.wait: the completion, or None when the wait runs out first (then
the record from the store, if its completion was lost), on the in-process bus and a
real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from squall.bus.memory import MemoryBus
from squall.bus.messages import Completion
from squall.controller.waiters import CompletionWaiters
from squall.entities.activation import (
    Activation,
    ActivationResponse,
    final_record,
    new_activation_id,
    now_ms,
)
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


def record(activation_id: str) -> Activation:
    now = now_ms()
    response = ActivationResponse.whisk_error("it ended")
    return final_record(
        namespace="guest", name="a", subject="guest", activation_id=activation_id,
        start=now, end=now, response=response,
    )  # fmt: skip


async def test_a_completion_before_the_wait_runs_out_is_the_answer(tmp_path: Path) -> None:
    bus, store = MemoryBus(), await SqliteStore.open(tmp_path / "squall.db")
    waiters = CompletionWaiters(bus, "0", store.activations)
    try:
        activation_id = new_activation_id()
        waiters.register(activation_id)
        waiting = asyncio.create_task(waiters.wait(activation_id, 60.0, "guest"))
        await asyncio.sleep(0)
        waiters.deliver(Completion("t" * 32, activation_id, "invoker0", record(activation_id)))
        got = await asyncio.wait_for(waiting, 10)
        assert got is not None and got.activation_id == activation_id
        # and the waiter is gone: a second completion of the id finds nobody
        waiters.deliver(Completion("t" * 32, activation_id, "invoker0", record(activation_id)))
    finally:
        await waiters.close()
        await store.close()


async def test_a_wait_that_runs_out_is_none_unless_the_store_has_the_final_record(
    tmp_path: Path,
) -> None:
    bus, store = MemoryBus(), await SqliteStore.open(tmp_path / "squall.db")
    ended: list[str] = []
    waiters = CompletionWaiters(
        bus, "0", store.activations, listeners=[lambda c: ended.append(c.activation_id)]
    )
    try:
        # A wait with nothing stored runs out: None, and nobody is told it ended
        lost = new_activation_id()
        waiters.register(lost)
        assert await asyncio.wait_for(waiters.wait(lost, 0.05, "guest"), 10) is None
        assert ended == []
        # A wait whose completion never came, its final record stored: that record,
        # and the listeners are told it ended
        stored = new_activation_id()
        await store.activations.put(record(stored))
        waiters.register(stored)
        got = await asyncio.wait_for(waiters.wait(stored, 0.05, "guest"), 10)
        assert got is not None and got.activation_id == stored
        assert ended == [stored]
    finally:
        await waiters.close()
        await store.close()


async def test_a_cancelled_wait_leaves_nobody_waiting(tmp_path: Path) -> None:
    bus = MemoryBus()
    waiters = CompletionWaiters(bus, "0")
    activation_id = new_activation_id()
    future = waiters.register(activation_id)
    waiting = asyncio.create_task(waiters.wait(activation_id, 60.0))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert future.cancelled()
    # a late completion finds nobody waiting (and does not fail)
    waiters.deliver(Completion("t" * 32, activation_id, "invoker0", record(activation_id)))
    await waiters.close()


async def test_completions_of_the_in_process_bus_need_no_ack_task(tmp_path: Path) -> None:
    # Given waiters consuming their topic on the in-process bus (settled deliveries)
    bus, store = MemoryBus(), await SqliteStore.open(tmp_path / "squall.db")
    waiters = CompletionWaiters(bus, "0", store.activations)
    acks_seen: list[int] = []  # acknowledgements in flight as each completion arrives
    waiters.add_listener(lambda _: acks_seen.append(len(waiters._acks)))
    await waiters.start()
    try:
        ids = [new_activation_id() for _ in range(3)]
        waiting = []
        for activation_id in ids:
            waiters.register(activation_id)
            waiting.append(asyncio.create_task(waiters.wait(activation_id, 60.0, "guest")))
        # When their completions come over the bus (taken in one step of the consumer)
        for activation_id in ids:
            completion = Completion("t" * 32, activation_id, "invoker0", record(activation_id))
            await bus.send(waiters.topic, completion.to_bytes())
        got = await asyncio.wait_for(asyncio.gather(*waiting), 10)
        # Then each wait has its record, and no task was started to acknowledge them
        assert [r.activation_id for r in got if r is not None] == ids
        assert acks_seen == [0, 0, 0]
    finally:
        await waiters.close()
        await bus.close()
        await store.close()


async def test_a_completion_resolves_its_waiter_inside_the_send(tmp_path: Path) -> None:
    # Given waiters listening on the in-process bus and a registered activation
    bus = MemoryBus()
    waiters = CompletionWaiters(bus, "0")
    await waiters.start()
    try:
        activation_id = new_activation_id()
        future = waiters.register(activation_id)
        # When the invoker sends its completion
        completion = Completion("t" * 32, activation_id, "invoker0", record(activation_id))
        await bus.send(waiters.topic, completion.to_bytes())
        # Then the waiter has its record when the send returns (push delivery: no
        # consumer task had to wake first), and nothing is left on the topic
        assert future.done() and future.result() is not None
        assert await bus.pending(waiters.topic) == 0
        got = await asyncio.wait_for(waiters.wait(activation_id, 60.0), 10)
        assert got is not None and got.activation_id == activation_id
    finally:
        await waiters.close()
        await bus.close()
