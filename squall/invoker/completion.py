"""How the invoker ends an activation: the record stored (unless the namespace stores
none), then the completion sent to the controller that accepted it, each waiting out a
brief store or bus outage; and the record of an activation that failed before it ran.
Part of :class:`~squall.invoker.service.Invoker`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from squall.bus.contracts import MessagingProvider
from squall.bus.messages import ActivationMessage, Completion, completion_topic
from squall.entities.activation import (
    Activation,
    ActivationResponse,
    final_record,
    now_ms,
)
from squall.errors import ProviderError
from squall.metrics.invoker import InvokerMetrics
from squall.store.contracts import ActivationStore

log = logging.getLogger("squall.invoker")

# Attempts at storing a record and sending its completion, a second apart.
FINISH_TRIES = 30


async def _retrying(
    attempt: Callable[[], Awaitable[None]],
    keep_trying: Callable[[], bool],
    tries: int = FINISH_TRIES,
    pause_s: float = 1.0,
) -> None:
    """``attempt()``, again after a ProviderError (up to ``tries`` times in all, and only
    while ``keep_trying()``)."""
    for n in range(tries):
        try:
            await attempt()
            return
        except ProviderError:
            if n == tries - 1 or not keep_trying():
                raise
            log.warning("store or bus unavailable; trying again in %g s", pause_s)
            await asyncio.sleep(pause_s)


class Completing:
    """Ending activations; the attributes are set by the invoker's constructor (all of it
    runs on the event loop's thread)."""

    id: str
    metrics: InvokerMetrics
    _bus: MessagingProvider
    _activations: ActivationStore
    _closing: bool

    async def _finish(self, message: ActivationMessage, record: Activation) -> None:
        self.metrics.observe(record)
        # Store first: a client that got the id must always find the record. Unless the
        # namespace's storeActivations limit is off: then, as in OpenWhisk, the record is
        # only sent to the controller (a blocking caller still gets its result).
        # A store or bus that is briefly unreachable is waited for (a result is not
        # dropped for an outage of a few seconds); the completion is sent even when the
        # record could not be stored, so the waiting caller still gets its result.
        try:
            if message.store_record:
                await _retrying(lambda: self._activations.put(record), self._open)
        finally:
            completion = Completion(message.transid, message.activation_id, self.id, record)
            data = completion.to_bytes()
            # Handed straight to the controller when it is up (nothing stored on the
            # bus, no pull and ack round trips there); stored on its topic otherwise.
            await _retrying(
                lambda: self._bus.send(completion_topic(message.controller), data, direct=True),
                self._open,
            )

    def _failure(self, message: ActivationMessage, error: str | ActivationResponse) -> Activation:
        now = now_ms()
        path = message.action.lstrip("/")
        return final_record(
            namespace=message.namespace,
            name=path.rsplit("/", 1)[-1],
            subject=message.subject,
            activation_id=message.activation_id,
            start=now,
            end=now,
            response=(ActivationResponse.whisk_error(error) if isinstance(error, str) else error),
            annotations=[{"key": "path", "value": path}, *message.caused_by_annotation()],
            cause=message.cause,
        )

    def _open(self) -> bool:
        return not self._closing
