"""How the invoker ends an activation: the record stored (unless the namespace stores
none), then the completion sent to the controller that accepted it, each waiting out a
brief store or bus outage; and the record of an activation that failed before it ran.
Part of :class:`~squall.invoker.service.Invoker`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from squall.bus.contracts import MessageSender, MessagingProvider
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
    *,
    failed: ProviderError | None = None,
) -> None:
    """``attempt()``, again after a ProviderError (up to ``tries`` times in all, and only
    while ``keep_trying()``). ``failed``: the caller made the first attempt itself, and it
    raised ``failed`` (the caller tries inline: the usual attempt succeeds with neither
    this coroutine nor a closure made for it)."""
    first = 0
    if failed is not None:
        if tries <= 1 or not keep_trying():
            raise failed
        log.warning("store or bus unavailable; trying again in %g s", pause_s)
        await asyncio.sleep(pause_s)
        first = 1
    for n in range(first, tries):
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
    _send_message: MessageSender  # message_sender(_bus)
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
                try:
                    await self._activations.put(record)
                except ProviderError as error:
                    await _retrying(lambda: self._activations.put(record), self._open, failed=error)
        finally:
            # The in-process bus carries the object to the controller (bus/contracts.py);
            # nothing here touches the record after it is sent.
            completion = Completion(message.transid, message.activation_id, self.id, record)
            topic = completion_topic(message.controller)
            # Handed straight to the controller when it is up (nothing stored on the
            # bus, no pull and ack round trips there); stored on its topic otherwise.
            try:
                await self._send_message(topic, completion, direct=True)
            except ProviderError as error:
                await _retrying(
                    lambda: self._send_message(topic, completion, direct=True),
                    self._open,
                    failed=error,
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
