"""When an invoker goes offline: move its queued work, and end what it was running.

Squall's answer to OpenWhisk's weakest spot (an invoker that dies takes its queued and
running activations with it, and their ids answer 404 for ever). The invoker acknowledges
a message on the bus *before* it runs the action, and marks the activation started in
the store (``ActivationStore.start``) once a container is ready for it, before any of its
code runs. So for a dead invoker:

- a message still on its queue never started: it is moved to a healthy invoker. Every
  controller empties the queue; a message another controller accepted goes back to that
  controller (``Redispatch`` on its completion topic), which routes it again and keeps
  counting it as its own — only the controller that accepted an activation knows whether
  a caller waits for it;
- an activation this controller sent there, that is no longer queued and whose completion
  never came, was taken by the invoker. If it was never marked started (it waited there
  for a container), this controller marks it started itself — which the store grants
  once per id, so the dead invoker can no longer start it, should it be alive after all —
  and moves it to a healthy invoker with ``started`` set on the message;
- one that had started may have had effects: running it again could repeat them, so it
  is ended with a ``whisk internal error`` record saying why — written only if no final
  record exists (``put_unless_final``), so a result stored just before the death wins.
  So is one whose record is not stored (``storeActivations`` off: nobody can tell).
  But only once the invoker is known gone. Offline says that its pings stopped, which a
  loaded or paused machine also does: an invoker that went offline by its silence may
  still be running what it started. Those are ended once it pings as another process
  (its incarnation changed: it restarted, the process that ran them is dead) or stayed
  silent ``lost_after_s`` since its last ping; if the same process pings first, they are
  left to it, and its completions end them with their real results (OpenWhisk, which
  never ends them, also only stops sending work to an offline invoker). An invoker that
  said it is stopping is waited for through its grace instead (it records what it could
  not finish).

Order matters: the queue is emptied first (everyone's), then this controller's inbox, so
that every message handed back to it has been routed before it decides that whatever is
left must have started on the dead invoker.

Work to be moved goes to a healthy invoker; when there is none, it waits for one (up to
``route_wait_s`` in all per invoker moved off), then ends with an error, never pending.
A health test on the queue is a probe of that invoker, not work: it fails at once (and
is sent again by its controller). An invoker that went offline by its silence and pings
again as the same process keeps the rest of its queue and what it had taken.

Concurrency: one recovery task per offline invoker, on the controller's loop; the
balancer's table is only changed on that loop. ``on_redispatch`` runs in a task of its
own per activation handed back (``CompletionWaiters``), so while it waits for a healthy
invoker this controller's completions go on — the health tests' among them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from msgspec import structs

from squall.bus.contracts import MessagingProvider
from squall.bus.messages import (
    ActivationMessage,
    Completion,
    MessageError,
    Redispatch,
    completion_topic,
    invoker_topic,
)
from squall.controller.cluster import is_health_test
from squall.controller.health import OFFLINE, InvokerStatus, Silence
from squall.controller.sharding import Dispatched, ShardingBalancer
from squall.controller.waiters import CompletionWaiters
from squall.entities.activation import (
    Activation,
    ActivationResponse,
    final_record,
    is_pending,
    now_ms,
    pending_record,
)
from squall.errors import NotFound, ProviderError, SquallError
from squall.metrics.controller import LOST, MOVED, REQUEUED, ControllerMetrics
from squall.store.contracts import ActivationStore

log = logging.getLogger("squall.controller.recovery")

# How long to keep asking for a dead invoker's queued messages: a message it received but
# had not yet acknowledged comes back only after the bus's acknowledgement wait.
DRAIN_DEADLINE_S = 45.0
POLL_S = 0.2
# An invoker that stops cleanly finishes its runs for 10 s, then records the rest.
STOP_GRACE_S = 15.0
# How long an invoker that went offline by its silence must stay silent before what it
# started is ended as lost (Settings.lost_after_s).
LOST_AFTER_S = 30.0
# How long work to be moved off an invoker waits for a healthy invoker when none is.
ROUTE_WAIT_S = 30.0


HEALTH_TEST_DRAINED = "The health test was not run: its invoker was offline."


def invoker_lost(invoker_id: str) -> str:
    return (
        f"The invoker running this activation ({invoker_id}) stopped before it completed; "
        "it was not run again, as that could repeat its side effects."
    )


class Recovery:
    def __init__(
        self,
        controller_id: str,
        bus: MessagingProvider,
        balancer: ShardingBalancer,
        waiters: CompletionWaiters,
        activations: ActivationStore,
        *,
        drain_deadline_s: float = DRAIN_DEADLINE_S,
        lost_after_s: float = LOST_AFTER_S,
        route_wait_s: float = ROUTE_WAIT_S,
        metrics: ControllerMetrics | None = None,
    ) -> None:
        """``lost_after_s``: how long an invoker that went offline by its silence must
        stay silent (from its last ping) before what it had started is ended as lost;
        ``route_wait_s``: how long work to be moved off an invoker waits for a healthy
        one when there is none."""
        self._id = controller_id
        self._bus = bus
        self._balancer = balancer
        self._waiters = waiters
        self._activations = activations
        self._drain_deadline_s = drain_deadline_s
        self._lost_after_s = lost_after_s
        self._route_wait_s = route_wait_s
        self._waiting_since: dict[str, float] = {}  # by invoker moved off (monotonic)
        self._metrics = metrics
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Invokers that went offline again while their recovery ran: recovered once more
        # when it ends (what was sent there meanwhile is not the running one's to end).
        self._again: dict[str, InvokerStatus] = {}
        self._closing = False

    def on_state(self, status: InvokerStatus, previous: str) -> None:
        """An invoker's state changed (an ``InvokerRegistry`` listener): recover one
        that went offline."""
        if status.state != OFFLINE or self._closing:
            return
        running = self._tasks.get(status.id)
        if running is not None and not running.done():
            self._again[status.id] = status
            return
        self._start(status)

    def _start(self, status: InvokerStatus) -> None:
        # Taken now: what is sent there after this moment (it may come back while we
        # drain) is not this recovery's to end.
        suspects = {d.message.activation_id for d in self._balancer.on_invoker(status.id)}
        silent = None if status.stopping else Silence.of(status)
        task = asyncio.create_task(
            self.recover(status.id, suspects, graceful=status.stopping, silent=silent),
            name=f"recover-{status.id}",
        )
        self._tasks[status.id] = task
        task.add_done_callback(lambda _: self._recover_again(status.id))

    def _recover_again(self, invoker_id: str) -> None:
        """A recovery ended: its wait for a healthy invoker is forgotten, and the next
        one starts if the invoker went offline again meanwhile and still is."""
        self._waiting_since.pop(invoker_id, None)
        status = self._again.pop(invoker_id, None)
        if status is not None and status.state == OFFLINE and not self._closing:
            self._start(status)

    async def on_redispatch(self, redispatch: Redispatch) -> None:
        """Route again an activation of this controller that another one took off a
        dead invoker's queue (the ``CompletionWaiters``' redispatch hook)."""
        await self._route_again(redispatch.message, redispatch.from_invoker)
        self._count(REQUEUED)

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.recovered(outcome)

    async def _route_again(self, message: ActivationMessage, from_invoker: str) -> None:
        if is_health_test(message):
            # A probe of that very invoker, not work to move: it fails now, never held
            # waiting for a healthy invoker (which it may be what makes one healthy); its
            # controller tests again shortly (health.py), on a queue no longer emptied.
            await self._fail(Dispatched(message, from_invoker, 0), HEALTH_TEST_DRAINED)
            return
        current = self._balancer.dispatched.get(message.activation_id)
        if current is not None and current.invoker != from_invoker:
            return  # already moved (a redelivered copy)
        if current is None and await self._ended(message):
            return  # it ran and ended: nothing to move
        await self._healthy_elsewhere(from_invoker)
        try:
            await self._balancer.reroute(message, from_invoker)
        except SquallError as error:
            # No healthy invoker left: end it now rather than leave it pending.
            dispatched = self._balancer.dispatched.get(message.activation_id)
            await self._fail(
                dispatched or Dispatched(message, from_invoker, 0),
                f"The activation could not be moved off invoker {from_invoker}: {error.message}",
            )

    async def recover(
        self,
        invoker_id: str,
        suspects: set[str] | None = None,
        *,
        graceful: bool = False,
        silent: Silence | None = None,
    ) -> None:
        """Move ``invoker_id``'s queued work, then end this controller's lost activations
        (of ``suspects``, those sent there before it went offline; all when None).

        ``graceful``: it announced it is stopping; it finishes (or records) what it runs
        within its grace, so the completions are awaited before anything is ended.
        ``silent``: it went offline because its pings stopped; what it started is ended
        only once it is known gone (:meth:`Silence.gone`), never while it may still be running
        it."""
        log.warning("invoker %s is offline: moving its queue", invoker_id)
        try:
            moved = await self._drain(invoker_id, silent)
            await self._settle_inbox()
        except ProviderError as error:
            log.error("recovery of invoker %s stopped: %s", invoker_id, error)
            return
        if silent is not None and silent.pinged_again() and silent.status.stopping:
            # Back only to say it stops (its state stays offline: no new recovery comes):
            # as for any stopping invoker, its completions are awaited through its grace,
            # then what it left queued is moved and what it ran ended.
            graceful, silent = True, None
        if graceful:
            for _ in range(int(STOP_GRACE_S / POLL_S)):
                if not self._balancer.on_invoker(invoker_id):
                    break
                await asyncio.sleep(POLL_S)
        held = [
            d
            for d in self._balancer.on_invoker(invoker_id)
            if suspects is None or d.message.activation_id in suspects
        ]
        started: list[Dispatched] = []
        for dispatched in held:
            if silent is not None and silent.pinged_again():
                started.append(dispatched)  # back: it runs what it took (below)
            elif await self._move_unstarted(dispatched, invoker_id):
                moved += 1
                self._count(MOVED)
            else:
                started.append(dispatched)
        if started and silent is not None and not await silent.gone(self._lost_after_s):
            if silent.status.stopping:
                # Back only to say it stops: recovered as a graceful stop (see above).
                await self.recover(
                    invoker_id, {d.message.activation_id for d in started}, graceful=True
                )
                return
            # The same process pings again: it was slow, not dead. What it took is its
            # own to run and finish; its completions end them (and free their slots).
            log.warning("invoker %s: %d activations that never started moved; it is back "
                        "(the same process): the %d it had taken are left to it",
                        invoker_id, moved, len(started))  # fmt: skip
            return
        lost = 0
        for dispatched in started:
            current = self._balancer.dispatched.get(dispatched.message.activation_id)
            if current is None or current.invoker != invoker_id:
                continue  # its completion came meanwhile
            lost += 1
            self._count(LOST)
            await self._fail(current, invoker_lost(invoker_id))
        log.warning("invoker %s: %d activations that never started moved, %d that had "
                    "started recorded as failed", invoker_id, moved, lost)  # fmt: skip

    async def _move_unstarted(self, dispatched: Dispatched, invoker_id: str) -> bool:
        """Move an activation the dead invoker took off its queue but never started (it
        waited there for a container) to another invoker; False when it may have started
        (or its record is not stored, so nobody can tell): then it must not run again.

        This controller marks it started itself (``ActivationStore.start``), so the dead
        invoker — should it be alive after all, cut off or paused — can never start it
        (its own mark is refused); the message then goes out with ``started`` set, and
        the invoker that gets it runs it without marking it again."""
        message = dispatched.message
        if not message.store_record or message.started:
            return False
        await self._healthy_elsewhere(invoker_id)
        try:
            if not await self._activations.start(self._pending(message)):
                return False  # it started there (or ended meanwhile)
        except ProviderError:
            log.exception("could not tell whether activation %s started",
                          message.activation_id)  # fmt: skip
            return False
        try:
            await self._balancer.reroute(structs.replace(message, started=True), invoker_id)
        except SquallError as error:
            current = self._balancer.dispatched.get(message.activation_id)
            await self._fail(
                current or dispatched,
                f"The activation could not be moved off invoker {invoker_id}: {error.message}",
            )
        return True

    async def _healthy_elsewhere(self, from_invoker: str) -> None:
        """Wait until a healthy invoker other than ``from_invoker`` can take what is
        moved off it — for at most ``route_wait_s`` in all per invoker moved off, however
        many activations wait — rather than end them at once: a controller that just
        started has tested no invoker yet (the activations other controllers hand back
        to it arrive first), and every invoker may have been slow at once. Once the time
        is up, what cannot be moved ends with an error (``_fail``), never stays pending."""
        if self._balancer.routable(exclude=from_invoker):
            self._waiting_since.pop(from_invoker, None)
            return
        since = self._waiting_since.setdefault(from_invoker, time.monotonic())
        while not self._balancer.routable(exclude=from_invoker):
            if time.monotonic() - since >= self._route_wait_s:
                # Spent: the rest of this outage's moves fail at once (the caller ends
                # them); forgotten when its recovery ends, so a later outage waits anew.
                return
            await asyncio.sleep(POLL_S)
        self._waiting_since.pop(from_invoker, None)

    @staticmethod
    def _pending(message: ActivationMessage) -> Activation:
        """The pending record to mark started: a blocking activation has none stored yet
        (its final record, or the error record, replaces this one)."""
        path = message.action.lstrip("/")
        return pending_record(
            namespace=message.namespace,
            subject=message.subject,
            activation_id=message.activation_id,
            name=path.rsplit("/", 1)[-1],
            path=path,
            version="",
            accepted_ms=message.accepted_ms,
            annotations=[{"key": "causedBy", "value": message.caused_by}]
            if message.caused_by
            else [],
            cause=message.cause,
        )

    async def _drain(self, invoker_id: str, silent: Silence | None = None) -> int:
        """Move what is on ``invoker_id``'s queue, until it is empty — or, for one that
        went offline by its silence (``silent``), until the same process pings again: it
        takes its queue itself then (its health test comes on that queue too)."""
        topic = invoker_topic(invoker_id)
        consumer = await self._bus.consumer(topic)
        moved = 0
        deadline = time.monotonic() + self._drain_deadline_s
        try:
            while time.monotonic() < deadline:
                if silent is not None and silent.pinged_again():
                    break
                delivery = await consumer.poll(POLL_S)
                if delivery is None:
                    if await self._bus.pending(topic) == 0:
                        break
                    continue
                try:
                    message = ActivationMessage.from_bytes(delivery.data)
                except MessageError:
                    log.exception("dropping a malformed message of invoker %s", invoker_id)
                    await delivery.ack()
                    continue
                if await self._ended(message):
                    pass  # a redelivery of work that did run (a bus restarted uncleanly)
                elif message.controller == self._id:
                    await self._route_again(message, invoker_id)
                    self._count(REQUEUED)
                else:
                    # Handed over before the ack: if this controller dies in between, the
                    # message comes back to the queue and someone else hands it over.
                    await self._bus.send(
                        completion_topic(message.controller),
                        Redispatch(message, invoker_id).to_bytes(),
                        key=f"redispatch/{message.activation_id}/{invoker_id}",
                    )
                await delivery.ack()
                moved += 1
        finally:
            with contextlib.suppress(ProviderError):
                await consumer.close()
        return moved

    async def _ended(self, message: ActivationMessage) -> bool:
        try:
            record = await self._activations.get(message.namespace, message.activation_id)
        except NotFound:
            return False
        return not is_pending(record)

    async def _settle_inbox(self) -> None:
        """Wait until every message handed back to this controller has been routed."""
        deadline = time.monotonic() + self._drain_deadline_s
        while time.monotonic() < deadline:
            if await self._bus.pending(self._waiters.topic) == 0:
                return
            await asyncio.sleep(POLL_S)

    async def _fail(self, dispatched: Dispatched, error: str) -> None:
        message = dispatched.message
        now = now_ms()
        path = message.action.lstrip("/")
        record = final_record(
            namespace=message.namespace,
            name=path.rsplit("/", 1)[-1],
            subject=message.subject,
            activation_id=message.activation_id,
            start=message.accepted_ms,
            end=now,
            response=ActivationResponse.whisk_error(error),
            annotations=[
                {"key": "path", "value": path},
                *([{"key": "causedBy", "value": message.caused_by}] if message.caused_by else []),
            ],
            cause=message.cause,
        )
        try:
            stored = await self._activations.put_unless_final(record)
        except ProviderError:
            log.exception("could not record the loss of activation %s", message.activation_id)
            return
        if not stored:
            # It did finish (its completion was lost): the waiter gets the real record.
            try:
                record = await self._activations.get(message.namespace, message.activation_id)
            except SquallError:
                return
        self._waiters.deliver(Completion(message.transid, message.activation_id,
                                         dispatched.invoker, record))  # fmt: skip

    async def close(self) -> None:
        self._closing = True
        self._again.clear()
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
