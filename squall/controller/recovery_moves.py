"""Moving one activation off an offline invoker, or ending it: the steps
:class:`~squall.controller.recovery.Recovery` takes for each activation it finds (see
its module for when and in which order).

- :meth:`Moves.route_again`: a message that was still queued goes to a healthy invoker,
  unless it already ended, was moved or started there (marked started by its invoker
  while its ack was on the way: this controller's own mark is then refused); a health
  test fails at once.
- :meth:`Moves.move_unstarted`: an activation the invoker took but never marked started
  is marked started by this controller (the store grants ``start`` once per id, so the
  dead invoker can no longer start it) and sent on with ``started`` set.
- :meth:`Moves.fail`: an activation that may have run ends with a ``whisk internal
  error`` record, written only if no final record exists (``put_unless_final``); its
  waiter gets whichever record is stored.

Work waits for a healthy invoker (:meth:`Moves.healthy_elsewhere`) for at most
``route_wait_s`` in all per invoker moved off, then ends with an error, never pending.

Concurrency: called on the controller's loop only (the balancer's table is changed on
that loop); several recoveries and redispatch tasks may await in here at once, each on
its own activation.
"""

from __future__ import annotations

import asyncio
import logging
import time

from msgspec import structs

from squall.bus.messages import ActivationMessage, Completion
from squall.controller.cluster import is_health_test
from squall.controller.sharding import Dispatched, ShardingBalancer
from squall.controller.waiters import CompletionWaiters
from squall.entities.activation import (
    ActivationResponse,
    final_record,
    is_pending,
    now_ms,
)
from squall.errors import NotFound, ProviderError, SquallError
from squall.metrics.controller import ControllerMetrics
from squall.store.contracts import ActivationStore

log = logging.getLogger("squall.controller.recovery")

POLL_S = 0.2
# How long work to be moved off an invoker waits for a healthy invoker when none is.
ROUTE_WAIT_S = 30.0


HEALTH_TEST_DRAINED = "The health test was not run: its invoker was offline."


def invoker_lost(invoker_id: str) -> str:
    return (
        f"The invoker running this activation ({invoker_id}) stopped before it completed; "
        "it was not run again, as that could repeat its side effects."
    )


class Moves:
    """The per-activation steps of a recovery, for one controller."""

    def __init__(
        self,
        balancer: ShardingBalancer,
        waiters: CompletionWaiters,
        activations: ActivationStore,
        *,
        route_wait_s: float = ROUTE_WAIT_S,
        metrics: ControllerMetrics | None = None,
    ) -> None:
        self._balancer = balancer
        self._waiters = waiters
        self._activations = activations
        self._route_wait_s = route_wait_s
        self._metrics = metrics
        self._waiting_since: dict[str, float] = {}  # by invoker moved off (monotonic)

    def forget_wait(self, invoker_id: str) -> None:
        """A recovery of ``invoker_id`` ended: a later outage waits anew."""
        self._waiting_since.pop(invoker_id, None)

    def count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.recovered(outcome)

    async def route_again(self, message: ActivationMessage, from_invoker: str) -> bool:
        """Route a message found on ``from_invoker``'s queue to another invoker; False
        when it is not moved (a health test, moved already, ended, or started there).

        A message still on the queue may have started all the same: the invoker marks
        an activation started while its ack is on the way (``invoker/intake.py``), and
        an ack not confirmed leaves the message on the queue. So one whose record is
        stored is marked started here first, as :meth:`move_unstarted` does: if the mark
        is refused it started there (or ended) and stays that invoker's — ended by the
        recovery once the invoker is known gone, or by the invoker itself if it is back —
        and never runs again; if granted, it goes out with ``started`` set."""
        if is_health_test(message):
            # A probe of that very invoker, not work to move: it fails now, never held
            # waiting for a healthy invoker (which it may be what makes one healthy); its
            # controller tests again shortly (health.py), on a queue no longer emptied.
            await self.fail(Dispatched(message, from_invoker, 0), HEALTH_TEST_DRAINED)
            return False
        current = self._balancer.dispatched.get(message.activation_id)
        if current is not None and current.invoker != from_invoker:
            return False  # already moved (a redelivered copy)
        if current is None and await self.ended(message):
            return False  # it ran and ended: nothing to move
        await self.healthy_elsewhere(from_invoker)
        if message.store_record and not message.started:
            try:
                if not await self._activations.start(message.unstarted_record()):
                    log.warning("activation %s not moved off invoker %s: it started there",
                                message.activation_id, from_invoker)  # fmt: skip
                    return False
                message = structs.replace(message, started=True)
            except ProviderError:
                # Cannot tell: sent on unmarked (its new invoker marks it, or drops it
                # when the mark is refused).
                log.exception("could not mark activation %s started", message.activation_id)
        try:
            await self._balancer.reroute(message, from_invoker)
        except SquallError as error:
            # No healthy invoker left: end it now rather than leave it pending.
            dispatched = self._balancer.dispatched.get(message.activation_id)
            await self.fail(
                dispatched or Dispatched(message, from_invoker, 0),
                f"The activation could not be moved off invoker {from_invoker}: {error.message}",
            )
        return True

    async def move_unstarted(self, dispatched: Dispatched, invoker_id: str) -> bool:
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
        await self.healthy_elsewhere(invoker_id)
        try:
            if not await self._activations.start(message.unstarted_record()):
                return False  # it started there (or ended meanwhile)
        except ProviderError:
            log.exception("could not tell whether activation %s started",
                          message.activation_id)  # fmt: skip
            return False
        try:
            await self._balancer.reroute(structs.replace(message, started=True), invoker_id)
        except SquallError as error:
            current = self._balancer.dispatched.get(message.activation_id)
            await self.fail(
                current or dispatched,
                f"The activation could not be moved off invoker {invoker_id}: {error.message}",
            )
        return True

    async def healthy_elsewhere(self, from_invoker: str) -> None:
        """Wait until a healthy invoker other than ``from_invoker`` can take what is
        moved off it — for at most ``route_wait_s`` in all per invoker moved off, however
        many activations wait — rather than end them at once: a controller that just
        started has tested no invoker yet (the activations other controllers hand back
        to it arrive first), and every invoker may have been slow at once. Once the time
        is up, what cannot be moved ends with an error (``fail``), never stays pending."""
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

    async def ended(self, message: ActivationMessage) -> bool:
        try:
            record = await self._activations.get(message.namespace, message.activation_id)
        except NotFound:
            return False
        return not is_pending(record)

    async def fail(self, dispatched: Dispatched, error: str) -> None:
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
