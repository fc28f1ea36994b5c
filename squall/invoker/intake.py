"""How the invoker takes messages off its topic: acknowledged before they run (never
twice), redeliveries of what it took dropped, and a message whose acknowledgement was not
confirmed watched until it ends somewhere or counts as lost (see
:mod:`squall.invoker.service`). Part of :class:`~squall.invoker.service.Invoker`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from squall.bus.contracts import Consumer, Delivery
from squall.bus.messages import ActivationMessage, MessageError
from squall.invoker.activate import Activating

log = logging.getLogger("squall.invoker")

UNCONFIRMED = (
    "The activation was lost: the message bus could not confirm it was taken, and it was not run."
)
# Activation ids taken recently, to drop a redelivery of a message already taken.
RECENT_IDS = 10_000
# How long an unconfirmed message may take to come back before it counts as lost: well
# past the bus's acknowledgement wait (30 s for NATS), and the blocking wait.
UNCONFIRMED_AFTER_S = 90.0


class Intake(Activating):
    """Taking messages; the attributes are set by the invoker's constructor.

    One task at a time consumes the topic (``_consume``; ``_loop_task`` is it), and every
    activation runs in a task of its own (``_running``), whose first step acknowledges it.
    Which task that is depends on the load:

    - *Idle* (nothing else running: a warm invoke at c=1): the consumer hands the topic
      over to a new consumer task and runs the activation itself, at once — it starts in
      the loop iteration that received it, and the new consumer's first step runs in the
      next one, which the activation needs anyway (it awaits its container). A task of
      its own started by the consumer would cost the activation one more iteration.
    - *Busy* (others running): the consumer starts a task for the activation and goes on
      taking what waits on the topic, so a burst is taken in one step. Handing the topic
      over for each message would take one message per loop iteration (measured: at c=50
      the server's CPU per invoke rose and its throughput fell).

    Either way one consumer receives at a time, and the acknowledgement is awaited in the
    activation's task, so the next message is pulled while it is confirmed."""

    _running: dict[str, tuple[asyncio.Task[None], ActivationMessage]]
    _loop_task: asyncio.Task[None] | None
    _recent: dict[str, None]  # insertion-ordered: oldest first
    _taken: int
    _watchers: set[asyncio.Task[None]]
    _unconfirmed_after_s: float

    def _consume_in_new_task(self, consumer: Consumer) -> None:
        """Start the task that consumes the topic next (``close`` cancels this one)."""
        self._loop_task = asyncio.create_task(self._consume(consumer), name="invoker")

    async def _consume(self, consumer: Consumer) -> None:
        while True:
            try:
                delivery = await consumer.receive()
            except Exception:
                return
            try:
                message = ActivationMessage.from_bytes(delivery.data)
            except MessageError:
                log.exception("dropping a malformed activation message")
                await self._ack(delivery)
                continue
            if message.activation_id in self._recent:
                await self._ack(delivery)  # a redelivery of a message already taken
                continue
            if message.activation_id in self._running:
                # Taken, its ack not confirmed yet: left unacknowledged, so that if that
                # ack fails the bus still has it (and delivers it again) — acking this
                # copy would consume it with nobody to run it.
                continue
            # Registered in ``_running`` before anything awaits: a redelivery pulled
            # while this one is acknowledged finds it running.
            if self._running:
                # Busy: its own task; this one goes on taking what waits.
                self._run_in_task(asyncio.create_task(self._take(delivery, message)), message)
                continue
            # Idle: this task becomes the activation's, and a new one consumes the topic.
            # Nothing awaited since the receive: close either cancelled this task before
            # it took the message, or finds the new one in ``_loop_task``.
            task = asyncio.current_task()
            assert task is not None  # a coroutine run by a task (Invoker.start's)
            self._run_in_task(task, message)
            self._consume_in_new_task(consumer)
            await self._take(delivery, message)
            return

    def _run_in_task(self, task: asyncio.Task[None], message: ActivationMessage) -> None:
        self._running[message.activation_id] = (task, message)
        task.add_done_callback(self._forget_task(message.activation_id))

    async def _take(self, delivery: Delivery, message: ActivationMessage) -> None:
        """Acknowledge ``message``, then run it: never run twice (see service.py's docstring)."""
        if not await self._ack(delivery):
            # Not confirmed: the bus may redeliver it (to us or to a controller emptying
            # our queue) or may have recorded the ack after all, and then nobody ever
            # runs it. Check later that it did end somewhere.
            self._watch_unconfirmed(message)
            return
        self._remember(message.activation_id)
        await self._handle(message)

    @staticmethod
    async def _ack(delivery: Delivery) -> bool:
        try:
            await delivery.ack()
        except Exception:
            log.exception("could not acknowledge an activation message")
            return False
        return True

    def _watch_unconfirmed(self, message: ActivationMessage) -> None:
        task = asyncio.create_task(self._unconfirmed(message), name="unconfirmed-ack")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _unconfirmed(self, message: ActivationMessage) -> None:
        """A message whose acknowledgement was not confirmed: if after a long while it
        was neither taken again nor ended anywhere, record it as lost (not run)."""
        await asyncio.sleep(self._unconfirmed_after_s)
        if message.activation_id in self._recent or message.activation_id in self._running:
            return  # redelivered to us and taken
        record = self._failure(message, UNCONFIRMED)
        try:
            if await self._activations.put_unless_final(record):
                log.warning("activation %s recorded as lost: its message's acknowledgement "
                            "was never confirmed", message.activation_id)  # fmt: skip
        except Exception:
            log.exception("could not record the loss of activation %s", message.activation_id)

    def _durably_queued(self, message: ActivationMessage) -> bool:
        """Whether an activation this invoker holds is queued in the store, message and
        all, and has not started: a non-blocking one (its pending record and message were
        stored before it was sent) not marked started here."""
        return (
            message.store_record
            and not message.blocking
            and not message.started
            and message.activation_id not in self._started
        )

    @property
    def taken(self) -> int:
        """Activations taken off the bus since start (for ``/ping``)."""
        return self._taken

    def _remember(self, activation_id: str) -> None:
        self._taken += 1
        self._recent[activation_id] = None
        if len(self._recent) > RECENT_IDS:
            del self._recent[next(iter(self._recent))]

    def _forget_task(self, activation_id: str) -> Any:
        def done(_task: asyncio.Task[None]) -> None:
            self._running.pop(activation_id, None)
            self._started.discard(activation_id)

        return done
