"""Recovery of an invoker that went offline (squall.controller.recovery), driven by pings
through a real registry, balancer and store on the in-process bus: the controller's side
of a cluster, with the test taking messages off an invoker's topic as that invoker does."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from msgspec import structs

import squall.controller.recovery as recovery_module
from squall.bus.memory import MemoryBus
from squall.bus.messages import INVOKER_STOPPING, INVOKER_UP, ActivationMessage, InvokerPing
from squall.bus.messages import invoker_topic as topic
from squall.config import Settings
from squall.controller.health import OFFLINE, InvokerRegistry
from squall.controller.recovery import Recovery
from squall.controller.recovery_moves import invoker_lost
from squall.controller.sharding import ShardingBalancer
from squall.controller.waiters import CompletionWaiters
from squall.entities.activation import new_activation_id, now_ms, pending_record
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

SETTINGS = replace(Settings(), unresponsive_after_s=3.0, offline_after_s=10.0)


def ping(invoker: str, state: str = INVOKER_UP) -> InvokerPing:
    return InvokerPing(invoker, 1024, state, 0, incarnation=f"{invoker}-1")


# Bounds a wait that only a hang reaches (the recovery's stop grace is 15 s).
DEADLINE_S = 90.0


async def keep_pinging(registry: InvokerRegistry, invoker: str) -> None:
    """``invoker`` alive: a ping a second, as an invoker sends them."""
    while True:
        await asyncio.sleep(1.0)
        registry.on_ping(ping(invoker))


def accepted() -> ActivationMessage:
    """A non-blocking activation accepted by controller 0, its record stored pending."""
    return ActivationMessage(
        transid="t" * 32,
        activation_id=new_activation_id(),
        namespace="guest",
        subject="guest",
        action="/guest/a",
        revision="1",
        content={},
        blocking=False,
        controller="0",
        accepted_ms=now_ms(),
    )


async def test_a_silent_invoker_back_only_to_stop_has_its_unstarted_work_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (the stop grace cut to a second: nothing completes here, so the grace is waited
    # through in full whatever its length, which changes nothing this test checks)
    monkeypatch.setattr(recovery_module, "STOP_GRACE_S", 1.0)
    # Given two healthy invokers, and an activation that invoker "a" took off its queue
    # and holds, never started (it waited there for a container)
    bus, store = MemoryBus(), await SqliteStore.open(tmp_path / "squall.db")
    registry = InvokerRegistry(bus, SETTINGS)
    balancer = ShardingBalancer(bus, registry, SETTINGS)
    waiters = CompletionWaiters(bus, "0", store.activations)
    recovery = Recovery("0", bus, balancer, waiters, store.activations, lost_after_s=600.0)
    registry.add_listener(recovery.on_state)
    try:
        registry.on_ping(ping("a"))
        message = accepted()
        path = message.action.lstrip("/")
        record = pending_record(
            namespace="guest", subject="guest", activation_id=message.activation_id,
            name="a", path=path, version="1", accepted_ms=message.accepted_ms,
        )  # fmt: skip
        await store.activations.put_pending(record, message.to_bytes())
        assert await balancer.publish(message, 256) == "a"
        taken = await (await bus.consumer(topic("a"))).receive()
        await taken.ack()
        registry.on_ping(ping("b"))
        pinging = asyncio.create_task(keep_pinging(registry, "b"))
        status = registry.get("a")
        assert status is not None and registry.get("b") is not None
        # When "a" goes silent past the offline limit (its recovery is started) and its
        # next ping, before that recovery looks at what it held, says it stops: its
        # state stays offline, so no other recovery comes
        status.last_ping -= SETTINGS.offline_after_s + 1
        registry.refresh()
        assert status.state == OFFLINE
        registry.on_ping(ping("a", INVOKER_STOPPING))
        assert status.state == OFFLINE
        # Then, its grace over, what it held and never started goes to "b" (marked
        # started by this controller, so "a" can never start it too)
        b = await bus.consumer(topic("b"))
        moved = await asyncio.wait_for(b.receive(), DEADLINE_S)
        again = ActivationMessage.from_bytes(moved.data)
        assert (again.activation_id, again.started) == (message.activation_id, True)
        assert balancer.dispatched[message.activation_id].invoker == "b"
        pinging.cancel()
    finally:
        await recovery.close()
        await waiters.close()
        await store.close()


async def test_a_queued_message_its_invoker_marked_started_is_ended_not_moved(
    tmp_path: Path,
) -> None:
    # Given two healthy invokers, and an activation on invoker "a"'s queue that "a"
    # marked started while its ack was on the way — and then went silent for good (the
    # ack never confirmed: the message is still on the queue)
    bus, store = MemoryBus(), await SqliteStore.open(tmp_path / "squall.db")
    registry = InvokerRegistry(bus, SETTINGS)
    balancer = ShardingBalancer(bus, registry, SETTINGS)
    waiters = CompletionWaiters(bus, "0", store.activations)
    recovery = Recovery("0", bus, balancer, waiters, store.activations, lost_after_s=1.0)
    registry.add_listener(recovery.on_state)
    try:
        registry.on_ping(ping("a"))
        message = structs.replace(accepted(), blocking=True)  # no record before it runs
        assert await balancer.publish(message, 256) == "a"
        registry.on_ping(ping("b"))
        record = pending_record(
            namespace="guest", subject="guest", activation_id=message.activation_id,
            name="a", path="guest/a", version="1", accepted_ms=message.accepted_ms,
        )  # fmt: skip
        assert await store.activations.start(record)
        pinging = asyncio.create_task(keep_pinging(registry, "b"))
        status = registry.get("a")
        assert status is not None
        # When "a" goes offline and stays silent past lost_after_s
        status.last_ping -= SETTINGS.offline_after_s + 1
        registry.refresh()
        assert status.state == OFFLINE
        # Then its queue is emptied, but the activation is not moved (it may have run):
        # it ends with the error saying its invoker stopped, and "b" gets nothing
        for _ in range(int(DEADLINE_S / 0.1)):
            ended = await store.activations.get("guest", message.activation_id)
            if not ended.pending:
                break
            await asyncio.sleep(0.1)
        assert ended.response.result == {"error": invoker_lost("a")}
        assert await bus.pending(topic("a")) == 0
        assert await bus.pending(topic("b")) == 0
        pinging.cancel()
    finally:
        await recovery.close()
        await waiters.close()
        await store.close()
