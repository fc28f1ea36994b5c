"""Blocking invokes waiting for their completions.

The controller listens on its own completion topic (``completed.<controller id>``: push
delivery, ``bus/contracts.py``) and resolves the future registered for each activation
id: on the in-process bus inside the invoker's ``send``, so the waiting request resumes
in the next loop iteration with no consumer task woken in between; on NATS from the
listener's task. Everything runs on one event loop, so the dict needs no lock; a
completion for an id nobody waits for (the caller already got 202, or the request was
cancelled) is dropped — the invoker stored the record before sending it. Under load the
listener takes the completions waiting in one round trip (``PREFETCH``), and each
acknowledgement is confirmed in a task of its own: the handler never awaits, and the
next completion does not wait a round trip for the previous one's (an ack that fails or
is cut short leaves the message to be delivered again; a second completion of an id
finds nobody waiting, and the listeners ignore ids they do not know). A delivery that is
``settled`` (the in-process bus's: nothing to confirm) gets no ack and no task.

The same topic is this controller's inbox in a cluster: another controller that emptied
a dead invoker's queue hands back the activations this one accepted as ``Redispatch``
messages (``on_redispatch`` routes them again). Each is routed in a task of its own and
acknowledged once routed (a controller that dies meanwhile gets it again when it comes
back): routing may wait for a healthy invoker, and the completions behind it must not
wait with it — the health tests' completions among them are what make an invoker
healthy again. A redelivered copy of one being routed is left to that task.

And since a completion can be late or lost with a controller's connection, a wait that
runs out asks the store for the final record before the caller gets its 202.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from squall.bus.contracts import Delivery, Listener, MessagingProvider
from squall.bus.messages import (
    Completion,
    MessageError,
    Redispatch,
    completion_topic,
    decode_inbox,
)
from squall.bus.push import listen
from squall.entities.activation import Activation
from squall.errors import NotFound, ProviderError, SquallError
from squall.store.contracts import ActivationStore

log = logging.getLogger("squall.controller.waiters")

#: Completions taken from the bus in one round trip when that many are waiting.
PREFETCH = 64


class CompletionWaiters:
    def __init__(
        self,
        bus: MessagingProvider,
        controller_id: str,
        activations: ActivationStore | None = None,
        *,
        listeners: Iterable[Callable[[Completion], None]] = (),
        on_redispatch: Callable[[Redispatch], Awaitable[None]] | None = None,
    ) -> None:
        """``listeners`` as :meth:`add_listener`; ``on_redispatch`` (a cluster's) routes
        again an activation another controller took off a dead invoker's queue."""
        self._bus = bus
        self._topic = completion_topic(controller_id)
        self._activations = activations
        # None: the wait ran out first (``wait``).
        self._waiting: dict[str, asyncio.Future[Activation | None]] = {}
        self._listener: Listener | None = None
        self._acks: set[asyncio.Task[None]] = set()  # acknowledgements being confirmed
        self._routing: dict[str, asyncio.Task[None]] = {}  # redispatches, by activation id
        self._listeners: list[Callable[[Completion], None]] = list(listeners)
        self._on_redispatch = on_redispatch

    @property
    def topic(self) -> str:
        return self._topic

    async def start(self) -> None:
        self._listener = await listen(self._bus, self._topic, self._on_delivery, prefetch=PREFETCH)

    def _on_delivery(self, delivery: Delivery) -> None:
        # The in-process bus carries the invoker's Completion object (bus/contracts.py);
        # any other delivery is decoded once, typed, whichever of the two it is.
        message = getattr(delivery, "message", None)
        try:
            if type(message) is not Completion:
                message = decode_inbox(delivery.data)
        except MessageError:
            log.exception("dropping a malformed message on %s", self._topic)
        else:
            if isinstance(message, Completion):
                self.deliver(message)
            else:
                self._route(message, delivery)
                return
        if delivery.settled:
            return  # nothing to confirm (bus/contracts.py)
        ack = asyncio.create_task(self._ack(delivery))
        self._acks.add(ack)
        ack.add_done_callback(self._acks.discard)

    async def _ack(self, delivery: Delivery) -> None:
        try:
            await delivery.ack()
        except ProviderError:
            # Not confirmed: the bus delivers it again; a second completion for the
            # same id finds nobody waiting and listeners ignore unknown ids.
            log.warning("could not acknowledge a message on %s", self._topic)

    def _route(self, redispatch: Redispatch, delivery: Delivery) -> None:
        """Route ``redispatch`` in a task of its own, acknowledged once routed (the
        module docstring says why); a copy of one already being routed is left to it."""
        activation_id = redispatch.message.activation_id
        if activation_id in self._routing:
            return

        async def route() -> None:
            await self._redispatch(redispatch)
            await self._ack(delivery)

        task = asyncio.create_task(route(), name=f"redispatch-{activation_id}")
        self._routing[activation_id] = task
        task.add_done_callback(lambda _: self._routing.pop(activation_id, None))

    async def _redispatch(self, redispatch: Redispatch) -> None:
        if self._on_redispatch is None:
            log.error("dropping a redispatch of %s: no balancer to route it",
                      redispatch.message.activation_id)  # fmt: skip
            return
        try:
            await self._on_redispatch(redispatch)
        except SquallError as error:
            # Nowhere to send it: end it like any activation that could not be sent.
            log.error("activation %s could not be moved: %s",
                      redispatch.message.activation_id, error.message)  # fmt: skip

    def deliver(self, completion: Completion) -> None:
        """An activation ended: tell the listeners and wake its waiter, if any."""
        for listener in self._listeners:
            try:
                listener(completion)
            except Exception:
                log.exception("a completion listener failed")
        # Left registered: the completion may come before its caller reaches ``wait``
        # (while the publish still waits for the bus's acknowledgement); ``wait`` or
        # ``forget`` removes it.
        future = self._waiting.get(completion.activation_id)
        if future is not None and not future.done():
            future.set_result(completion.record)

    def add_listener(self, listener: Callable[[Completion], None]) -> None:
        """Call ``listener`` (synchronously, on the loop) for every completion that
        reaches this controller, waited for or not (e.g. to count activations in flight)."""
        self._listeners.append(listener)

    def register(self, activation_id: str) -> asyncio.Future[Activation | None]:
        """Register before publishing, so a fast completion cannot be missed; every
        registration ends with ``wait`` or ``forget``."""
        future: asyncio.Future[Activation | None] = asyncio.get_running_loop().create_future()
        self._waiting[activation_id] = future
        return future

    def forget(self, activation_id: str) -> None:
        self._waiting.pop(activation_id, None)

    async def wait(
        self, activation_id: str, timeout_s: float, namespace: str = ""
    ) -> Activation | None:
        """The record, or None when ``timeout_s`` passes first (the action runs on).

        With a store and the record's ``namespace``, a wait that runs out first looks for
        a final record there: its completion may have been lost on the way."""
        future = self._waiting.get(activation_id)
        if future is None:
            return None
        # A timer that resolves the future with None, rather than ``asyncio.timeout``
        # (which looks up the task and cancels it into a TimeoutError): once per blocking
        # invoke. Whichever of the completion and the timer comes first resolves it.
        timer = asyncio.get_running_loop().call_later(timeout_s, _run_out, future)
        try:
            record = await future
        finally:
            timer.cancel()
            self.forget(activation_id)
        if record is None:
            return await self._stored(namespace, activation_id)
        return record

    async def _stored(self, namespace: str, activation_id: str) -> Activation | None:
        if self._activations is None or not namespace:
            return None
        try:
            record = await self._activations.get(namespace, activation_id)
        except (NotFound, ProviderError):
            return None
        if record.pending:
            return None
        # Its completion never came: tell the listeners now (they free its slot and its
        # place in the namespace's count of activations in flight).
        self.deliver(Completion("", activation_id, "", record))
        return record

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        # Redispatches still waiting to be routed stop unacknowledged: the bus delivers
        # them again to this controller's next start.
        routing = list(self._routing.values())
        for task in routing:
            task.cancel()
        await asyncio.gather(*routing, return_exceptions=True)
        # Acks still being confirmed finish (each is bounded by the bus's timeout).
        await asyncio.gather(*self._acks, return_exceptions=True)
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()


def _run_out(future: asyncio.Future[Activation | None]) -> None:
    """A blocking wait's time is up: its waiter gets None, unless its record came first."""
    if not future.done():
        future.set_result(None)
