"""The in-process bus: one ``asyncio.Queue`` per topic (standalone's provider).

It is first class, not a test double: messages are the same bytes the NATS provider
carries, so the controller and invoker cannot tell the providers apart. Everything runs
on one event loop, so a queue needs no lock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from squall.errors import ProviderError

_CLOSED = b""


@dataclass(frozen=True, slots=True)
class MemoryDelivery:
    data: bytes

    async def ack(self) -> None:
        # Nothing to confirm: the message left the queue when it was received, and the
        # queue lives and dies with the process that consumes it.
        return None


class MemoryConsumer:
    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self._queue = queue
        self._closed = False

    async def receive(self) -> MemoryDelivery:
        if self._closed:
            raise ProviderError("consumer is closed")
        data = await self._queue.get()
        if data is _CLOSED:
            # Wake the next waiter too, then report the close.
            self._queue.put_nowait(_CLOSED)
            raise ProviderError("bus is closed")
        return MemoryDelivery(data)

    async def close(self) -> None:
        self._closed = True


class MemoryBus:
    """``MessagingProvider`` over in-process queues."""

    def __init__(self) -> None:
        self._topics: dict[str, asyncio.Queue[bytes]] = {}
        self._closed = False

    def _queue(self, topic: str) -> asyncio.Queue[bytes]:
        queue = self._topics.get(topic)
        if queue is None:
            queue = self._topics[topic] = asyncio.Queue()
        return queue

    async def send(self, topic: str, data: bytes) -> None:
        if self._closed:
            raise ProviderError("bus is closed")
        if not data:
            raise ProviderError("empty message")
        self._queue(topic).put_nowait(data)

    async def consumer(self, topic: str) -> MemoryConsumer:
        if self._closed:
            raise ProviderError("bus is closed")
        return MemoryConsumer(self._queue(topic))

    def pending(self, topic: str) -> int:
        """Messages waiting on ``topic`` (for health and tests)."""
        queue = self._topics.get(topic)
        return queue.qsize() if queue else 0

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for queue in self._topics.values():
            queue.put_nowait(_CLOSED)
