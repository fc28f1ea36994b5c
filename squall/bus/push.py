"""Push delivery for every provider: ``listen`` (the seam's guarantees are in
``bus/contracts.py``).

A provider that pushes natively (``Pushing``: the in-process bus, whose ``send`` calls
the handler) is used as it is. Any other — NATS, whose deliveries arrive through its
pull consumer — gets a :class:`PullListener`: one task that awaits ``receive`` and calls
the handler with what it got, so the consumer's pull, ack and redelivery rules are
unchanged. For such a provider push saves nothing (its reader is a task anyway); it
lets the invoker and the controller consume every provider through one seam.

Carrying messages likewise: :func:`message_sender` is a provider's own ``send_message``
(the in-process bus hands the object over) or, for any other, one that encodes and sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from squall.bus.contracts import (
    Carrying,
    Consumer,
    Delivery,
    Encodable,
    Handler,
    Listener,
    MessageSender,
    MessagingProvider,
    Pushing,
)
from squall.errors import ProviderError

log = logging.getLogger("squall.bus")


async def listen(
    bus: MessagingProvider, topic: str, handler: Handler, *, prefetch: int = 1
) -> Listener:
    """Hand each message of ``topic`` to ``handler`` until the listener is closed:
    natively where the provider can, over a pull consumer otherwise."""
    if isinstance(bus, Pushing):
        return await bus.listen(topic, handler, prefetch=prefetch)
    return PullListener(await bus.consumer(topic, prefetch=prefetch), handler)


def hand(handler: Handler, delivery: Delivery) -> None:
    """Call ``handler``; what it raises is logged (contracts.py: the delivery is taken)."""
    try:
        handler(delivery)
    except Exception:
        log.exception("a listener's handler failed on a delivery")


class PullListener:
    """A handler fed by a pull consumer's ``receive``, from a task of its own.

    The task is the consumer's only reader, so calls come one at a time in the order the
    consumer hands messages out; it takes the next message as soon as the handler
    returned. It stops when the consumer or its bus is closed (``ProviderError``), and
    on an unexpected error, which it logs."""

    def __init__(self, consumer: Consumer, handler: Handler) -> None:
        self._consumer = consumer
        self._handler = handler
        self._task = asyncio.create_task(self._run(), name="bus-listener")

    async def _run(self) -> None:
        while True:
            try:
                delivery = await self._consumer.receive()
            except ProviderError:
                return
            except Exception:
                log.exception("a listener's consumer failed; it stops")
                return
            hand(self._handler, delivery)

    async def close(self) -> None:
        # Cancelled where it waits in ``receive`` (the only await): a message it had not
        # returned yet stays with the consumer, unacknowledged, as when a consumer's
        # reader stops; the consumer's close then gives it back to the bus.
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._consumer.close()


def message_sender(bus: MessagingProvider) -> MessageSender:
    """How to send message objects on ``bus`` (``bus/contracts.py``, carrying messages):
    the provider's own ``send_message`` when it carries objects, else one that encodes
    and sends the bytes. Asked once, when the sender is built (the ``isinstance`` check
    of a runtime protocol is too dear for every message)."""
    if isinstance(bus, Carrying):
        return bus.send_message

    async def send_bytes(
        topic: str, message: Encodable, *, key: str | None = None, direct: bool = False
    ) -> None:
        await bus.send(topic, message.to_bytes(), key=key, direct=direct)

    return send_bytes
