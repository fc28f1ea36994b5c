"""The MessagingProvider seam: topics of byte messages between controllers and invokers.

Guarantees every provider gives:

- ``send`` returns once the message is accepted by the bus (for a durable provider: once
  it is persisted); it raises ``ProviderError`` when it cannot, never drops silently.
- A topic's messages are delivered to one consumer of that topic each (work queue
  semantics), in send order per producer.
- A received message is redelivered (durable providers) until ``ack`` is called; the
  in-memory provider delivers exactly once within its process and ``ack`` is a no-op.
- After ``close()`` ``send`` raises ``ProviderError`` and ``receive`` raises
  ``ProviderError`` in waiting consumers.
- All methods are safe to call from many tasks of one event loop.
"""

from __future__ import annotations

from typing import Protocol


class Delivery(Protocol):
    @property
    def data(self) -> bytes: ...

    async def ack(self) -> None: ...


class Consumer(Protocol):
    async def receive(self) -> Delivery:
        """Wait for the next message of the topic."""
        ...

    async def close(self) -> None: ...


class MessagingProvider(Protocol):
    async def send(self, topic: str, data: bytes) -> None: ...

    async def consumer(self, topic: str) -> Consumer: ...

    async def close(self) -> None: ...
