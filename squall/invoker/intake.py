"""How the invoker takes messages off its topic: acknowledged before they run (never
twice), redeliveries of what it took dropped, and a message whose acknowledgement was not
confirmed watched until it ends somewhere or counts as lost (see
:mod:`squall.invoker.service`). Part of :class:`~squall.invoker.service.Invoker`."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Coroutine
from typing import Any

from squall.bus.contracts import Delivery, Listener
from squall.bus.messages import ActivationMessage, MessageError, invoker_topic
from squall.bus.push import listen
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

    The invoker listens on its topic (push delivery, ``bus/contracts.py``): the bus calls
    ``_on_delivery`` with each message — the in-process bus inside the controller's
    ``send``, NATS from its listener's task — and it starts a task for the activation,
    whose first step acknowledges it. On the in-process bus that task runs in the next
    loop iteration, with no consumer task woken first nor one to start after it (a
    pulling consumer cost the activation one wake-up, and its successor a step).

    Under load every message still gets a task of its own at once, in send order (their
    first steps, and so their acks, run in that order), and nothing waits for the tasks:
    what a burst brings is taken as it comes. The handler never awaits, so the ack of a
    message that is only dropped (malformed, or a second copy of one taken) is confirmed
    in a task of its own (``_acks``), none for a settled delivery.

    The activations' tasks run in a copy of the context ``listen`` was called in (the
    invoker's start), not the sender's: a controller's request does not leak into them."""

    _running: dict[str, tuple[asyncio.Task[None], ActivationMessage]]
    _listener: Listener | None
    _intake_context: contextvars.Context
    _acks: set[asyncio.Task[bool]]
    _recent: dict[str, None]  # insertion-ordered: oldest first
    _taken: int
    _watchers: set[asyncio.Task[None]]
    _unconfirmed_after_s: float

    async def _start_intake(self) -> None:
        self._intake_context = contextvars.copy_context()
        self._listener = await listen(self._bus, invoker_topic(self.id), self._on_delivery)

    async def _stop_intake(self) -> None:
        """No message is taken once this returned; drop-acks in flight end."""
        if self._listener is not None:
            await self._listener.close()
        await asyncio.gather(*self._acks, return_exceptions=True)

    def _on_delivery(self, delivery: Delivery) -> None:
        # The in-process bus carries the controller's message object (bus/contracts.py):
        # nothing to decode. Any other delivery has its bytes decoded.
        message = getattr(delivery, "message", None)
        if type(message) is not ActivationMessage:
            try:
                message = ActivationMessage.from_bytes(delivery.data)
            except MessageError:
                log.exception("dropping a malformed activation message")
                self._ack_later(delivery)
                return
        if message.activation_id in self._recent:
            self._ack_later(delivery)  # a redelivery of a message already taken
            return
        if message.activation_id in self._running:
            # Taken, its ack not confirmed yet: left unacknowledged, so that if that
            # ack fails the bus still has it (and delivers it again) — acking this
            # copy would consume it with nobody to run it.
            return
        # Registered in ``_running`` before anything awaits: a redelivery handed over
        # while this one is acknowledged finds it running.
        run: Coroutine[Any, Any, None]
        if delivery.settled:
            # Nothing to acknowledge (the in-process bus, bus/contracts.py), so nothing
            # can stop it from running: taken now, and its task runs ``_handle`` itself
            # (``_take`` would only await a no-op ack: one coroutine less on the task's
            # stack, resumed at every await of the activation).
            self._remember(message.activation_id)
            run = self._handle(message)
        else:
            run = self._take(delivery, message)
        # The loop's own create_task: ``asyncio.create_task`` is a Python wrapper (two
        # calls more per activation) that only adds a task name, and none is given.
        loop = asyncio.get_running_loop()
        task = loop.create_task(run, context=self._intake_context.copy())
        self._run_in_task(task, message)

    def _ack_later(self, delivery: Delivery) -> None:
        if delivery.settled:
            return  # nothing to confirm (bus/contracts.py)
        ack = asyncio.create_task(self._ack(delivery))
        self._acks.add(ack)
        ack.add_done_callback(self._acks.discard)

    def _run_in_task(self, task: asyncio.Task[None], message: ActivationMessage) -> None:
        self._running[message.activation_id] = (task, message)
        # A partial of a method, not a closure made by one: a call less per activation.
        task.add_done_callback(functools.partial(self._task_done, message.activation_id))

    def _task_done(self, activation_id: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(activation_id, None)
        self._started.discard(activation_id)

    async def _take(self, delivery: Delivery, message: ActivationMessage) -> None:
        """Acknowledge ``message`` and run it: never run twice (see service.py's docstring).

        A message whose activation is marked started by this invoker (its record stored,
        not marked by a controller that moved it) is acknowledged *while* it is prepared
        and marked, not before: winning the started mark is what lets it run, and the
        store grants it once per id, so a copy the bus delivers again (its ack not
        confirmed) loses the mark wherever it lands and is dropped, and its record ends
        only once — the ack's round trip leaves the warm path (docs/cluster.md).
        Without a mark to fence it (``store_record`` off, or ``started`` set) the ack
        alone keeps it from running twice: it is confirmed first."""
        if not delivery.settled and message.store_record and not message.started:
            await self._ack_beside(delivery, message.activation_id)
            await self._handle(message, redeliverable=True)
            return
        if not await self._ack(delivery):
            # Not confirmed: the bus may redeliver it (to us or to a controller emptying
            # our queue) or may have recorded the ack after all, and then nobody ever
            # runs it. Check later that it did end somewhere.
            self._watch_unconfirmed(message)
            return
        self._remember(message.activation_id)
        await self._handle(message)

    async def _ack_beside(self, delivery: Delivery, activation_id: str) -> None:
        """Acknowledge without waiting for the bus to confirm it (``ack_unconfirmed``:
        sent with this loop iteration's other writes, no task, no answer to read): the
        mark, not the ack, keeps a second copy from running. Lost or forgotten, the ack
        only means the bus may deliver the message again (to this invoker, or to a
        controller emptying the queue), and that copy finds the activation started or
        ended (it loses the mark, or the controller's own mark) and does not run. Taken
        as recorded, as a confirmed ack is: a copy back here is dropped at once."""
        try:
            await delivery.ack_unconfirmed()
        except Exception:
            log.exception("could not acknowledge an activation message")
            return
        self._remember(activation_id)

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
