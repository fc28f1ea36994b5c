"""When an invoker goes offline: move its queued work, and end what it was running.

Squall's answer to OpenWhisk's weakest spot (an invoker that dies takes its queued and
running activations with it, and their ids answer 404 for ever). The invoker acknowledges
a message on the bus *before* it runs the action, and marks the activation started in
the store (``ActivationStore.start``) once a container is ready for it, before any of its
code runs. So for a dead invoker:

- a message still on its queue is moved to a healthy invoker, marked started by the
  controller that moves it — unless that mark is refused: the invoker marked it while
  its ack was on the way (``invoker/intake.py``), so it started there and is ended as
  below, once the invoker is known gone (it stays counted on that invoker). Every
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

The steps taken for each activation (move, mark started and move, end with an error) are
:mod:`squall.controller.recovery_moves`'s.

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

from squall.bus.contracts import MessagingProvider
from squall.bus.messages import (
    ActivationMessage,
    MessageError,
    Redispatch,
    completion_topic,
    invoker_topic,
)
from squall.controller.health import OFFLINE, InvokerStatus, Silence
from squall.controller.recovery_moves import POLL_S, ROUTE_WAIT_S, Moves, invoker_lost
from squall.controller.sharding import Dispatched, ShardingBalancer
from squall.controller.waiters import CompletionWaiters
from squall.errors import ProviderError
from squall.metrics.controller import LOST, MOVED, REQUEUED, ControllerMetrics
from squall.store.contracts import ActivationStore

log = logging.getLogger("squall.controller.recovery")

# How long to keep asking for a dead invoker's queued messages: a message it received but
# had not yet acknowledged comes back only after the bus's acknowledgement wait.
DRAIN_DEADLINE_S = 45.0
# An invoker that stops cleanly finishes its runs for 10 s, then records the rest.
STOP_GRACE_S = 15.0
# How long an invoker that went offline by its silence must stay silent before what it
# started is ended as lost (Settings.lost_after_s).
LOST_AFTER_S = 30.0


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
        self._drain_deadline_s = drain_deadline_s
        self._lost_after_s = lost_after_s
        self._moves = Moves(
            balancer, waiters, activations, route_wait_s=route_wait_s, metrics=metrics
        )
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
        self._moves.forget_wait(invoker_id)
        status = self._again.pop(invoker_id, None)
        if status is not None and status.state == OFFLINE and not self._closing:
            self._start(status)

    async def on_redispatch(self, redispatch: Redispatch) -> None:
        """Route again an activation of this controller that another one took off a
        dead invoker's queue (the ``CompletionWaiters``' redispatch hook)."""
        if await self._moves.route_again(redispatch.message, redispatch.from_invoker):
            self._moves.count(REQUEUED)

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
            elif await self._moves.move_unstarted(dispatched, invoker_id):
                moved += 1
                self._moves.count(MOVED)
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
            self._moves.count(LOST)
            await self._moves.fail(current, invoker_lost(invoker_id))
        log.warning("invoker %s: %d activations that never started moved, %d that had "
                    "started recorded as failed", invoker_id, moved, lost)  # fmt: skip

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
                if await self._moves.ended(message):
                    pass  # a redelivery of work that did run (a bus restarted uncleanly)
                elif message.controller == self._id:
                    if await self._moves.route_again(message, invoker_id):
                        self._moves.count(REQUEUED)
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

    async def _settle_inbox(self) -> None:
        """Wait until every message handed back to this controller has been routed."""
        deadline = time.monotonic() + self._drain_deadline_s
        while time.monotonic() < deadline:
            if await self._bus.pending(self._waiters.topic) == 0:
                return
            await asyncio.sleep(POLL_S)

    async def close(self) -> None:
        self._closing = True
        self._again.clear()
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
