"""The in-process bus: one ``asyncio.Queue`` per topic (standalone's provider).

It is first class, not a test double: messages are the same bytes the NATS provider
carries, so the controller and invoker cannot tell the providers apart. Everything runs
on one event loop, so queues, the key window and the subscriber sets need no lock.

Delivery is exactly once within the process: a message leaves its queue when it is
received, so ``attempt`` is always 1 and ``ack`` has nothing to record (the queue lives
and dies with the process that consumes it).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from squall.errors import ProviderError

_CLOSED = b""  # wakes waiters at close; sends refuse empty messages, so it is unambiguous

# Keys remembered for deduplication: for ``dedup_window_s``, at most ``_MAX_KEYS`` of them
# (the oldest are forgotten first, so memory stays bounded under any send rate).
_MAX_KEYS = 100_000
# Messages a subscriber may fall behind before it loses the oldest ones.
SUBSCRIPTION_BACKLOG = 10_000


@dataclass(frozen=True, slots=True)
class MemoryDelivery:
    data: bytes
    attempt: int = 1

    async def ack(self) -> None:
        return None


class MemoryConsumer:
    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self._queue = queue
        self._closed = asyncio.Event()

    async def receive(self) -> MemoryDelivery:
        delivery = await self._next(None)
        assert delivery is not None  # no timeout: only a message or an error ends the wait
        return delivery

    async def poll(self, timeout: float) -> MemoryDelivery | None:
        return await self._next(max(0.0, timeout))

    async def _next(self, timeout: float | None) -> MemoryDelivery | None:
        if self._closed.is_set():
            raise ProviderError("consumer is closed")
        if not self._queue.empty():
            # A message is waiting (a consumer under load): take it without the two tasks
            # and the wait below, which only serve to wait for one or for the close.
            return self._delivered(self._queue.get_nowait())
        get = asyncio.ensure_future(self._queue.get())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({get, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not get.done():
                # Queue.get is cancellation safe: a message it had been woken for stays
                # on the queue for the next getter.
                get.cancel()
        if not get.done() or get.cancelled():
            if self._closed.is_set():
                raise ProviderError("consumer is closed")
            return None
        return self._delivered(get.result())

    def _delivered(self, data: bytes) -> MemoryDelivery:
        """``data`` taken off the queue: a delivery, or the close it stands for."""
        if data is _CLOSED:
            # Wake the next waiter too, then report the close.
            self._queue.put_nowait(_CLOSED)
            raise ProviderError("bus is closed")
        if self._closed.is_set():
            # Closed while the message arrived: leave it for the topic's other consumers.
            self._queue.put_nowait(data)
            raise ProviderError("consumer is closed")
        return MemoryDelivery(data)

    async def close(self) -> None:
        self._closed.set()


class MemorySubscription:
    def __init__(self, bus: MemoryBus, subject: str) -> None:
        self._bus = bus
        self._subject = subject
        self._backlog: deque[bytes] = deque(maxlen=SUBSCRIPTION_BACKLOG)
        self._ready = asyncio.Event()
        self._closed = False

    def _offer(self, data: bytes) -> None:
        self._backlog.append(data)  # a full deque drops its oldest message
        self._ready.set()

    async def next(self) -> bytes:
        while True:
            if self._closed:
                raise ProviderError("subscription is closed")
            if self._backlog:
                return self._backlog.popleft()
            self._ready.clear()
            await self._ready.wait()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._unsubscribe(self._subject, self)
            self._ready.set()


class MemoryBus:
    """``MessagingProvider`` over in-process queues."""

    def __init__(self, *, dedup_window_s: float = 120.0) -> None:
        self._topics: dict[str, asyncio.Queue[bytes]] = {}
        self._subscribers: dict[str, set[MemorySubscription]] = {}
        # key -> monotonic time it was first sent, oldest first.
        self._keys: OrderedDict[str, float] = OrderedDict()
        self._dedup_window_s = dedup_window_s
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ProviderError("bus is closed")

    def _queue(self, topic: str) -> asyncio.Queue[bytes]:
        queue = self._topics.get(topic)
        if queue is None:
            queue = self._topics[topic] = asyncio.Queue()
        return queue

    def _seen(self, key: str) -> bool:
        """Whether ``key`` was sent within the window; remembers it if not."""
        now = time.monotonic()
        while self._keys:
            oldest, sent = next(iter(self._keys.items()))
            if now - sent < self._dedup_window_s and len(self._keys) < _MAX_KEYS:
                break
            del self._keys[oldest]
        if key in self._keys:
            return True
        self._keys[key] = now
        return False

    async def send(
        self, topic: str, data: bytes, *, key: str | None = None, direct: bool = False
    ) -> None:
        self._check_open()
        if not data:
            raise ProviderError("empty message")
        if key is not None and self._seen(key):
            return
        self._queue(topic).put_nowait(data)

    async def consumer(self, topic: str, *, prefetch: int = 1) -> MemoryConsumer:
        self._check_open()
        return MemoryConsumer(self._queue(topic))

    async def pending(self, topic: str) -> int:
        """Messages waiting on ``topic`` (not yet received)."""
        self._check_open()
        queue = self._topics.get(topic)
        return queue.qsize() if queue else 0

    async def publish(self, subject: str, data: bytes) -> None:
        self._check_open()
        for subscription in tuple(self._subscribers.get(subject, ())):
            subscription._offer(data)

    async def subscribe(self, subject: str) -> MemorySubscription:
        self._check_open()
        subscription = MemorySubscription(self, subject)
        self._subscribers.setdefault(subject, set()).add(subscription)
        return subscription

    def _unsubscribe(self, subject: str, subscription: MemorySubscription) -> None:
        subscribers = self._subscribers.get(subject)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subject]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for queue in self._topics.values():
            queue.put_nowait(_CLOSED)
        for subscribers in tuple(self._subscribers.values()):
            for subscription in tuple(subscribers):
                await subscription.close()
