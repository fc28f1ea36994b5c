"""The MessagingProvider seam: work-queue topics and broadcast subjects between
controllers and invokers.

Two kinds of channel:

- A *topic* (``invoker.<id>``, ``completed.<controller>``) is a work queue: ``send``
  stores a message, each message goes to one consumer of the topic at a time, and it
  stays on the topic until a consumer acknowledges it. Several consumers (also in
  several processes) on one topic share the same queue.
- A *subject* (``health``, ``cacheInvalidation``) is a broadcast: ``publish`` hands a
  message to every live subscriber and nothing is stored.

Guarantees every provider gives:

- ``send`` returns once the message is accepted by the bus (for a durable provider: once
  it is persisted); it raises ``ProviderError`` when it cannot, within a bounded time
  (the provider's send timeout), never hangs and never drops silently. A
  ``ProviderError`` means *not confirmed*: a durable provider may still deliver the
  message; sending it again with the same ``key`` cannot deliver it twice.
- ``key`` deduplicates: a second ``send`` with a key already sent within the provider's
  duplicate window (two minutes by default) is accepted and not delivered again.
- A topic's messages are delivered to one consumer each at a time, in send order per
  producer (a redelivered message may come after later ones).
- A durable provider redelivers a received message that is not acknowledged within its
  ack wait, at most ``max_deliver`` times in all; ``Delivery.attempt`` counts deliveries
  (1 the first time). ``ack`` is confirmed: it returns once the bus recorded it (a
  message acknowledged is never delivered again, also across a restart of the bus) and
  raises ``ProviderError`` when it cannot say so; ``ack_unconfirmed`` only sends it.
  The in-memory provider delivers exactly once within its process: ``attempt`` is
  always 1 and ``ack`` records nothing.
- ``Delivery.settled`` is True when ``ack`` has nothing to confirm (the in-memory
  provider's deliveries): a consumer may then leave ``ack`` uncalled — e.g. not start a
  task to confirm it. A durable provider's deliveries say False and are acknowledged as
  above.
- ``pending(topic)`` counts the messages on a topic not yet acknowledged (waiting, or
  delivered and not yet acknowledged; the in-memory provider: not yet received).
- ``publish`` is fire-and-forget: never blocks for long, raises only when the provider is
  closed; a message published while the bus is unreachable is dropped. A subscription
  sees the messages published after ``subscribe`` returned, in order per publisher; a
  subscriber too slow to keep up loses the oldest ones.
- After ``close()`` every method raises ``ProviderError``, and consumers and
  subscriptions waiting in ``receive`` / ``poll`` / ``next`` wake with ``ProviderError``;
  closing a consumer or subscription does the same for it alone. ``close`` is
  idempotent.
- All methods are safe to call from many tasks of one event loop.

Push delivery (``listen``, :class:`Pushing`): instead of a task that awaits ``receive``
(a future resolved by the bus, so one loop iteration per wake-up), a consumer may register
a *handler* the bus calls with each delivery. Use ``squall.bus.push.listen``: it takes a
provider's own ``listen`` when it has one (the in-process bus) and otherwise runs the
handler from a task over a ``consumer`` (any provider, NATS included). Guarantees:

- A listener is one more consumer of the topic: each message goes to one of the topic's
  consumers and listeners, with the same order, ``attempt``, ``settled`` and ``ack`` as
  ``receive`` would give it (a durable provider's must be acknowledged as before). A
  provider may prefer listeners: the in-process bus hands every message to a listener
  while the topic has one, and its pull consumers get messages only when it has none.
- The handler is a plain function, called on the event loop: it must return promptly and
  never block — it starts a task or resolves a future for anything that awaits. Calls
  never overlap nor nest: a message sent while a handler runs is handed after it returns.
- The handler may run inside the sender's ``send`` (the in-process bus hands a message
  over before ``send`` returns, in the sender's task and context), so it must not depend
  on the task it runs in nor raise into it: an exception it raises is logged and the
  delivery counts as taken (a durable provider's, unacknowledged, comes back after the
  ack wait; the in-process bus's is gone, as a received message whose consumer failed).
- Messages waiting when ``listen`` is called are handed after it returned, not inside it.
- There is no flow control: the handler is called as messages arrive (a consumer that
  must bound what it holds uses ``consumer``).
- After ``Listener.close()`` returned the handler is not called again; messages not yet
  handed stay on the topic. Closing the bus ends its listeners the same way.

Carrying messages (``send_message``, :class:`Carrying`): a provider whose consumers live in
the sender's process (the in-process bus) may take the message object itself instead of
its bytes. Use ``squall.bus.push.message_sender``: it takes a provider's own
``send_message`` when it has one, and otherwise encodes (``to_bytes``) and calls ``send``
(NATS: bytes as before). Guarantees:

- ``send_message(topic, message, key=..., direct=...)`` is ``send(topic,
  message.to_bytes(), key=..., direct=...)`` in every respect (acceptance, ``key``,
  order, errors, ``pending``); only the bytes are made later, if at all.
- Its delivery's ``message`` is the object sent (the same object, not a copy); its
  ``data`` is ``message.to_bytes()``, made when read. A delivery of a plain ``send`` (any
  provider) has no ``message`` attribute, or ``message`` None: a consumer reads
  ``getattr(delivery, "message", None)`` and decodes ``data`` when that is not the type
  it expects.
- The sender hands the object over: it must not change it (nor anything it holds, e.g. a
  record's lists) after ``send_message`` returned — the consumer reads it as it would
  have read the bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable


class Delivery(Protocol):
    @property
    def data(self) -> bytes:
        """The message's bytes (a carried message's: encoded when read, see above)."""
        ...

    @property
    def attempt(self) -> int:
        """How many times this message has been delivered, this time included (1 first)."""
        ...

    @property
    def settled(self) -> bool:
        """True when ``ack`` has nothing to confirm: it may be left uncalled."""
        ...

    async def ack(self) -> None:
        """Confirm the message: it is never delivered again (``ProviderError`` if the bus
        cannot confirm; the message may then come back after the ack wait)."""
        ...

    async def ack_unconfirmed(self) -> None:
        """Acknowledge the message without waiting for the bus to record it: returns once
        the ack is handed to the connection (``ProviderError`` if it cannot be). The
        message may still come back after the ack wait (the ack lost on the way, or
        forgotten by the bus): for a consumer that keeps a second copy from running by
        itself (the invoker's started mark), which then saves the confirmation's round
        trip and its answer."""
        ...


class Consumer(Protocol):
    async def receive(self) -> Delivery:
        """Wait for the next message of the topic (across bus outages: a durable
        provider keeps waiting until the bus is back)."""
        ...

    async def poll(self, timeout: float) -> Delivery | None:
        """The next message, or None when none arrives within ``timeout`` seconds."""
        ...

    async def close(self) -> None: ...


class Listener(Protocol):
    """A handler registered on a topic (push delivery, see the module docstring)."""

    async def close(self) -> None:
        """Stop: once this returns the handler is not called again."""
        ...


#: Called with each delivery of a listened topic; returns promptly, never awaits.
Handler = Callable[[Delivery], None]


@runtime_checkable
class Pushing(Protocol):
    """A provider that delivers by push natively (the in-process bus); the others are
    adapted by ``squall.bus.push.listen`` over their pull consumers."""

    async def listen(self, topic: str, handler: Handler, *, prefetch: int = 1) -> Listener:
        """Hand each message of ``topic`` to ``handler`` (``prefetch`` as for
        ``MessagingProvider.consumer``), until the returned listener is closed."""
        ...


class Encodable(Protocol):
    """A message that makes its own bytes (``squall.bus.messages``' messages)."""

    def to_bytes(self) -> bytes: ...


@runtime_checkable
class Carrying(Protocol):
    """A provider that carries message objects to its consumers (the in-process bus);
    the others get the bytes from ``squall.bus.push.message_sender``."""

    async def send_message(
        self, topic: str, message: Encodable, *, key: str | None = None, direct: bool = False
    ) -> None:
        """``send(topic, message.to_bytes(), ...)``, the object handed over as it is."""
        ...


class MessageSender(Protocol):
    """``send_message`` of a provider that carries objects, or the stand-in that encodes
    and sends (``squall.bus.push.message_sender``)."""

    def __call__(
        self, topic: str, message: Encodable, *, key: str | None = None, direct: bool = False
    ) -> Awaitable[None]: ...


class Subscription(Protocol):
    async def next(self) -> bytes:
        """Wait for the next message published on the subject."""
        ...

    async def close(self) -> None: ...


class MessagingProvider(Protocol):
    async def send(
        self, topic: str, data: bytes, *, key: str | None = None, direct: bool = False
    ) -> None:
        """Put ``data`` on the work-queue ``topic``; ``key`` deduplicates sends.

        ``direct``: a durable provider may hand the message straight to a live consumer
        of the topic without storing it, and then returns once that consumer acknowledged
        it; otherwise (no consumer, no acknowledgement in a short wait) it stores it as
        any send, with the same id. Delivered at least once: the stored copy of a
        hand-off whose answer came after the wait is dropped by a consumer that saw the
        hand-off first, but one can arrive before the hand-off it copies (a consumer's
        loop stalled past the wait) and both are handed out. Only for topics whose
        consumers acknowledge promptly and take a second copy as a no-op (completions: the
        second finds nobody waiting); the in-memory provider's sends are always direct."""
        ...

    async def consumer(self, topic: str, *, prefetch: int = 1) -> Consumer:
        """The topic's consumer. ``prefetch > 1`` lets a durable provider take up to that
        many waiting messages from the server in one round trip, handed out in order by
        ``receive``; until acknowledged they are as a received message is (this consumer
        dying, they come back after the ack wait). For consumers that take every message
        at once (completions), not for queues others may drain (an invoker's)."""
        ...

    async def pending(self, topic: str) -> int:
        """Messages on ``topic`` not yet acknowledged (queue length, for metrics)."""
        ...

    async def publish(self, subject: str, data: bytes) -> None:
        """Broadcast ``data`` to every live subscriber of ``subject``; nothing is stored."""
        ...

    async def subscribe(self, subject: str) -> Subscription: ...

    async def close(self) -> None: ...
