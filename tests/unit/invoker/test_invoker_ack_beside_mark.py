"""The invoker acknowledges a message while it marks the activation started (intake.py),
on the real bus and store of a cluster (the machine's NATS JetStream and PostgreSQL) and
real runtimes.

The crash case this opens: an invoker marks an activation started, its ack is never
confirmed, and it dies. The message comes back after the bus's ack wait — here to the
invoker restarted under the same id. Whatever its activation's record says by then
(started by the dead invoker, or already ended by a controller's recovery), the copy must
not run, nor overwrite that record, nor send a completion. The dead invoker is played by
a consumer on its own connection that takes the message and never acknowledges it, and by
the one write its mark makes (``ActivationStore.start``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from _postgres import PG_DSN, fresh_schema, require_postgres
from _required import reachable, unavailable
from poolsupport import PY

from squall.bus.contracts import Delivery
from squall.bus.messages import ActivationMessage, Completion, completion_topic, invoker_topic
from squall.bus.nats import NatsBus
from squall.bus.nats_consumer import NatsDelivery
from squall.entities.action import Action, pending_invocation
from squall.entities.activation import Activation, ActivationResponse, final_record, now_ms
from squall.entities.names import EntityPath
from squall.invoker.pool import ContainerPool
from squall.invoker.service import Invoker
from squall.sandbox.process import ProcessContainerFactory
from squall.store.contracts import EntityStore
from squall.store.postgres import PostgresStore

pytestmark = pytest.mark.anyio

NATS_HOST, NATS_PORT = "127.0.0.1", 4222
ACK_WAIT_S = 1.0
# Bounds a wait that only a hang reaches.
DEADLINE_S = 60.0
CODE = "def main(args):\n    return {'ran': args.get('n')}\n"


@dataclass
class Cluster:
    prefix: str
    store: PostgresStore
    factory: ProcessContainerFactory
    action: Action
    buses: list[NatsBus]

    async def bus(self) -> NatsBus:
        bus = await NatsBus.connect(
            f"nats://{NATS_HOST}:{NATS_PORT}", prefix=self.prefix, ack_wait_s=ACK_WAIT_S
        )
        self.buses.append(bus)
        return bus

    async def invoker(self, max_wait_ms: int = 0, entities: EntityStore | None = None) -> Invoker:
        pool = ContainerPool(self.factory, capacity_mb=512)
        bus = await self.bus()
        entities = self.store.entities if entities is None else entities
        invoker = Invoker("a", bus, entities, self.store.activations, pool, max_wait_ms=max_wait_ms)
        await invoker.start()
        return invoker

    def message(self, n: int, accepted_ms: int | None = None) -> ActivationMessage:
        return ActivationMessage(
            transid=f"t{n}",
            activation_id=uuid.uuid4().hex,
            namespace="guest",
            subject="guest",
            action="/guest/echo",
            revision=self.action.rev,
            content={"n": n},
            blocking=True,
            controller="c0",
            accepted_ms=now_ms() if accepted_ms is None else accepted_ms,
        )

    async def record(self, message: ActivationMessage) -> Activation:
        return await self.store.activations.get("guest", message.activation_id)


@pytest.fixture
async def cluster(factory: ProcessContainerFactory) -> AsyncIterator[Cluster]:
    require_postgres()
    if not reachable(NATS_HOST, NATS_PORT):
        unavailable(f"NATS JetStream is not reachable at {NATS_HOST}:{NATS_PORT}")
    with fresh_schema() as schema:
        store = await PostgresStore.open(PG_DSN, schema=schema, max_size=4)
        path = EntityPath("guest", "", "echo")
        body = {"exec": {"kind": PY, "code": CODE}}
        stored = await store.entities.put(
            "guest", "actions", "echo", Action.create(path, body).to_store(), None
        )
        action = Action.from_store(path, stored.body, stored.rev, stored.updated)
        cluster = Cluster(f"ackmark{uuid.uuid4().hex[:8]}", store, factory, action, [])
        try:
            yield cluster
        finally:
            if cluster.buses:
                await cluster.buses[0].delete_streams()
            for bus in cluster.buses:
                await bus.close()
            await store.close()


async def died_after_taking(cluster: Cluster, message: ActivationMessage) -> None:
    """The dead invoker: it took ``message`` off its queue and never acknowledged it."""
    dead = await cluster.bus()
    await dead.send(invoker_topic("a"), message.to_bytes(), key=message.activation_id)
    consumer = await dead.consumer(invoker_topic("a"))
    delivery = await consumer.poll(DEADLINE_S)
    assert delivery is not None and delivery.data == message.to_bytes()
    await consumer.close()  # no ack: back on the queue after the ack wait


async def settled(invoker: Invoker, bus: NatsBus) -> None:
    """Until the invoker took everything on its queue and ended or dropped it."""
    for _ in range(int(DEADLINE_S / 0.05)):
        idle = invoker.taken >= 1 and not invoker._running and not invoker._acks
        if idle and await bus.pending(invoker_topic("a")) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the invoker did not take its queue")


async def completions(bus: NatsBus) -> list[Completion]:
    consumer = await bus.consumer(completion_topic("c0"))
    try:
        found = []
        while (delivery := await consumer.poll(0.5)) is not None:
            found.append(Completion.from_bytes(delivery.data))
            await delivery.ack()
        return found
    finally:
        await consumer.close()


async def test_a_message_runs_once_its_ack_and_mark_both_went_out(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an invoker on NATS and PostgreSQL, the start of its handling of a message (up
    # to its mark) and its acks recorded as they happen
    invoker = await cluster.invoker()
    bus = invoker._bus
    assert isinstance(bus, NatsBus)
    events: list[str] = []
    handle, ack = invoker._handle, invoker._ack
    unconfirmed = NatsDelivery.ack_unconfirmed

    async def handled(message: ActivationMessage, *, redeliverable: bool = False) -> None:
        events.append("handling")
        await handle(message, redeliverable=redeliverable)

    async def acked(delivery: Delivery) -> bool:
        events.append("ack confirmed")
        return await ack(delivery)

    async def sent(delivery: NatsDelivery) -> None:
        events.append("ack sent")
        await unconfirmed(delivery)

    monkeypatch.setattr(invoker, "_handle", handled)
    monkeypatch.setattr(invoker, "_ack", acked)
    monkeypatch.setattr(NatsDelivery, "ack_unconfirmed", sent)
    try:
        # When a message comes
        message = cluster.message(1)
        await bus.send(invoker_topic("a"), message.to_bytes(), key=message.activation_id)
        await settled(invoker, bus)
        # Then it ran once: its record is final, its completion sent, its ack recorded by
        # the bus (nothing pending on the topic)
        assert (await cluster.record(message)).response.result == {"ran": 1}
        assert [c.activation_id for c in await completions(bus)] == [message.activation_id]
        assert invoker.taken == 1
        # And its ack was only sent, with the handling's first writes: no confirmation was
        # waited for (the mark fences a second copy)
        assert events == ["ack sent", "handling"]
    finally:
        await invoker.close(grace_s=5)


async def test_a_message_back_after_its_invoker_marked_it_and_died_does_not_run(
    cluster: Cluster,
) -> None:
    # Given an activation its invoker marked started, then died before its ack was
    # confirmed: the message is on the queue again, the record says started
    message = cluster.message(2)
    await died_after_taking(cluster, message)
    started = pending_invocation(
        cluster.action, namespace="guest", subject="guest",
        activation_id=message.activation_id, accepted_ms=message.accepted_ms,
    )  # fmt: skip
    assert await cluster.store.activations.start(started)
    # When the invoker comes back under the same id and gets the message again
    invoker = await cluster.invoker()
    bus = invoker._bus
    assert isinstance(bus, NatsBus)
    try:
        await settled(invoker, bus)
        # Then it did not run it: the record is still the dead invoker's started one (the
        # controllers' recovery ends it), no completion was sent, the message is consumed
        record = await cluster.record(message)
        assert record.pending
        assert await completions(bus) == []
        assert await bus.pending(invoker_topic("a")) == 0
    finally:
        await invoker.close(grace_s=5)


async def test_a_message_back_after_recovery_ended_its_activation_keeps_that_record(
    cluster: Cluster,
) -> None:
    # Given an activation its invoker marked started and died with, already ended by a
    # controller's recovery, whose message comes back stale (older than the blocking
    # wait: the invoker would record it as expired, a record of its own)
    message = cluster.message(3, accepted_ms=now_ms() - 120_000)
    await died_after_taking(cluster, message)
    lost = final_record(
        namespace="guest", name="echo", subject="guest",
        activation_id=message.activation_id, start=message.accepted_ms, end=now_ms(),
        response=ActivationResponse.whisk_error("The invoker running this activation stopped"),
        annotations=[{"key": "path", "value": "guest/echo"}],
    )  # fmt: skip
    await cluster.store.activations.put(lost)
    # When the restarted invoker gets it again
    invoker = await cluster.invoker(max_wait_ms=60_000)
    bus = invoker._bus
    assert isinstance(bus, NatsBus)
    try:
        await settled(invoker, bus)
        # Then the recovery's record stands (not replaced by "expired"), and no
        # completion was sent
        record = await cluster.record(message)
        assert record.response == lost.response
        assert await completions(bus) == []
    finally:
        await invoker.close(grace_s=5)


async def test_a_message_back_after_recovery_that_fails_here_keeps_that_record(
    cluster: Cluster,
) -> None:
    # Given an activation its invoker marked started and died with, already ended by a
    # controller's recovery, whose message comes back
    message = cluster.message(4)
    await died_after_taking(cluster, message)
    lost = final_record(
        namespace="guest", name="echo", subject="guest",
        activation_id=message.activation_id, start=message.accepted_ms, end=now_ms(),
        response=ActivationResponse.whisk_error("The invoker running this activation stopped"),
        annotations=[{"key": "path", "value": "guest/echo"}],
    )  # fmt: skip
    await cluster.store.activations.put(lost)
    # When the restarted invoker gets it again and fails before it could mark it: its
    # entity store cannot read the action (a real store, closed: every read raises)
    with fresh_schema() as schema:
        broken = await PostgresStore.open(PG_DSN, schema=schema, max_size=1)
        await broken.close()
    invoker = await cluster.invoker(entities=broken.entities)
    bus = invoker._bus
    assert isinstance(bus, NatsBus)
    try:
        await settled(invoker, bus)
        # Then the recovery's record stands (not replaced by an internal error), and no
        # completion was sent: a copy that did not win the mark ends nothing
        record = await cluster.record(message)
        assert record.response == lost.response
        assert await completions(bus) == []
    finally:
        await invoker.close(grace_s=5)
