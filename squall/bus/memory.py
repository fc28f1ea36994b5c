"""The in-process bus: one queue of messages per topic (standalone's provider).

It is first class, not a test double: messages read as the same bytes the NATS provider
carries, so the controller and invoker cannot tell the providers apart. Everything runs
on one event loop, so queues, the key window and the subscriber sets need no lock.

It carries message objects (``send_message``, ``bus/contracts.py``): the consumer gets
the object the sender made, and its bytes are made only if someone reads ``data`` — a
standalone invoke's message and completion are neither encoded nor decoded.

Delivery is exactly once within the process: a message leaves its queue when it is
received, so ``attempt`` is always 1 and ``ack`` has nothing to record (the queue lives
and dies with the process that consumes it).

Push delivery (``listen``, see ``bus/contracts.py``) is native: ``send`` calls the topic's
listener's handler before it returns, so the message reaches its consumer with no task
woken. A topic's messages go to its listeners (in turns) while it has any, and wait for
its pull consumers otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from typing import Any, ClassVar

import msgspec

from squall.bus.contracts import Encodable, Handler
from squall.bus.push import hand
from squall.errors import ProviderError

log = logging.getLogger("squall.bus")

# Keys remembered for deduplication: for ``dedup_window_s``, at most ``_MAX_KEYS`` of them
# (the oldest are forgotten first, so memory stays bounded under any send rate).
_MAX_KEYS = 100_000
# Messages a subscriber may fall behind before it loses the oldest ones.
SUBSCRIPTION_BACKLOG = 10_000


class MemoryDelivery(msgspec.Struct, frozen=True):
    """One message on a topic: its bytes (``raw``) or the object sent (``message``), whose
    bytes are made when ``data`` is read. A Struct: made once per message, and its
    ``__init__`` is msgspec's own (no Python call on the hot path)."""

    raw: bytes | None
    message: Any = None
    # Nothing to confirm: the message left its topic when it was received (contracts.py).
    attempt: ClassVar[int] = 1
    settled: ClassVar[bool] = True

    @property
    def data(self) -> bytes:
        if self.raw is not None:
            return self.raw
        data: bytes = self.message.to_bytes()
        return data

    async def ack(self) -> None:
        return None

    async def ack_unconfirmed(self) -> None:
        return None


class _Topic:
    """A work-queue topic: its messages, oldest first, and its idle consumers' wake-ups.

    A send appends the message and resolves the future of the consumer that has waited
    longest: that consumer's task runs in the next loop iteration and takes the oldest
    message. (``asyncio.Queue`` woke a ``get`` task, whose end woke an ``asyncio.wait``,
    whose end woke the consumer: three iterations per message instead of one.) The
    message stays on the topic until a consumer takes it, so a consumer that runs first
    may take it; a woken consumer that finds nothing waits again, and one that stops
    waiting after it was woken (a poll's timeout, a cancel, its close) passes the
    wake-up on while messages wait, so no message is left with idle consumers.
    """

    __slots__ = ("closed", "handing", "listeners", "messages", "waiters")

    def __init__(self) -> None:
        self.messages: deque[MemoryDelivery] = deque()
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.listeners: deque[MemoryListener] = deque()
        self.handing = False  # a handler runs now (``hand_out`` is on the stack)
        self.closed = False

    def put(self, delivery: MemoryDelivery) -> None:
        if self.listeners and not self.handing and not self.messages:
            # The usual case (a listener, nothing waiting, no handler running): hand it
            # over here, as ``hand_out`` would, without queueing it first. What the
            # handler sends meanwhile is queued and handed by ``hand_out`` after it.
            listener = self.listeners[0]
            self.listeners.rotate(-1)
            self.handing = True
            try:
                listener.handler(delivery)
            except Exception:  # as ``push.hand`` (one call less): the delivery is taken
                log.exception("a listener's handler failed on a delivery")
            finally:
                self.handing = False
            if self.messages:
                self.hand_out()
            return
        self.messages.append(delivery)
        if self.listeners:
            self.hand_out()
        else:
            self.wake_next()

    def hand_out(self) -> None:
        """Hand what waits to the listeners, in turns, oldest first. Not reentrant: a
        message put while a handler runs (by code it called) is handed by this same
        loop after that handler returned, so calls never nest and order is kept."""
        if self.handing:
            return
        self.handing = True
        try:
            while self.messages and self.listeners:
                listener = self.listeners[0]
                self.listeners.rotate(-1)
                hand(listener.handler, self.messages.popleft())
        finally:
            self.handing = False
        if self.messages:
            self.wake_next()  # every listener left meanwhile: the pull consumers' now

    def wake_next(self) -> None:
        """Wake the longest-waiting consumer, if any (one per message waiting)."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Wake every consumer: each takes what is left, then reports the close; drop
        the listeners (no handler is called after the bus closed)."""
        self.closed = True
        self.listeners.clear()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


class MemoryConsumer:
    def __init__(self, topic: _Topic) -> None:
        self._topic = topic
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None

    async def receive(self) -> MemoryDelivery:
        delivery = await self._next(None)
        assert delivery is not None  # no timeout: only a message or an error ends the wait
        return delivery

    async def poll(self, timeout: float) -> MemoryDelivery | None:
        return await self._next(max(0.0, timeout))

    async def _next(self, timeout: float | None) -> MemoryDelivery | None:
        topic = self._topic
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._closed:
                # Closed while a message arrived: leave it to the topic's other consumers.
                if topic.messages:
                    topic.wake_next()
                raise ProviderError("consumer is closed")
            if topic.messages:
                return topic.messages.popleft()
            if topic.closed:
                raise ProviderError("bus is closed")
            if deadline is not None and deadline <= loop.time():
                return None
            waiter: asyncio.Future[None] = loop.create_future()
            topic.waiters.append(waiter)
            self._waiter = waiter
            try:
                if deadline is None:
                    await waiter  # a receive: no timer (most waits, once per message)
                else:
                    async with asyncio.timeout_at(deadline):
                        await waiter
            except (asyncio.CancelledError, TimeoutError) as stopped:
                if waiter.done() and not waiter.cancelled() and topic.messages:
                    topic.wake_next()  # woken, but not taking the message: pass it on
                if isinstance(stopped, TimeoutError):
                    return None
                raise
            finally:
                self._waiter = None
                if not waiter.done():
                    waiter.cancel()
                if waiter.cancelled() and waiter in topic.waiters:
                    # Not woken (a woken waiter has left the deque). Checked first, not
                    # ``remove`` in a ``suppress``: its ValueError formats the future's repr.
                    topic.waiters.remove(waiter)

    async def close(self) -> None:
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # its receive raises "consumer is closed"


class MemoryListener:
    """A handler registered on a topic; ``_Topic.put`` and ``hand_out`` call it inside
    the sender's ``send``, as ``push.hand`` does: a failing handler does not fail the
    send."""

    __slots__ = ("_topic", "handler")

    def __init__(self, topic: _Topic, handler: Handler) -> None:
        self._topic = topic
        self.handler = handler

    async def close(self) -> None:
        topic = self._topic
        if self in topic.listeners:
            topic.listeners.remove(self)
        if not topic.listeners and topic.messages:
            topic.wake_next()  # left by a handler that ran while this one closed


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
        self._topics: dict[str, _Topic] = {}
        self._subscribers: dict[str, set[MemorySubscription]] = {}
        # key -> monotonic time it was first sent, oldest first.
        self._keys: OrderedDict[str, float] = OrderedDict()
        self._dedup_window_s = dedup_window_s
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ProviderError("bus is closed")

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic()
        return topic

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
        if self._closed:
            raise ProviderError("bus is closed")
        if not data:
            raise ProviderError("empty message")
        if key is not None and self._seen(key):
            return
        (self._topics.get(topic) or self._topic(topic)).put(MemoryDelivery(data))

    async def send_message(
        self, topic: str, message: Encodable, *, key: str | None = None, direct: bool = False
    ) -> None:
        """``send`` of ``message.to_bytes()``, the object carried instead (contracts.py).
        The messages of ``squall.bus.messages`` are never empty (their JSON is an object)."""
        if self._closed:
            raise ProviderError("bus is closed")
        if key is not None and self._seen(key):
            return
        (self._topics.get(topic) or self._topic(topic)).put(MemoryDelivery(None, message))

    async def consumer(self, topic: str, *, prefetch: int = 1) -> MemoryConsumer:
        self._check_open()
        return MemoryConsumer(self._topic(topic))

    async def listen(self, topic: str, handler: Handler, *, prefetch: int = 1) -> MemoryListener:
        """Push delivery (``bus/contracts.py``): ``send`` calls ``handler`` at once."""
        self._check_open()
        queue = self._topic(topic)
        listener = MemoryListener(queue, handler)
        queue.listeners.append(listener)
        if queue.messages:
            # Sent before anybody listened: handed once this returned, not inside it.
            asyncio.get_running_loop().call_soon(queue.hand_out)
        return listener

    async def pending(self, topic: str) -> int:
        """Messages waiting on ``topic`` (not yet received)."""
        self._check_open()
        queue = self._topics.get(topic)
        return len(queue.messages) if queue else 0

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
        for topic in self._topics.values():
            topic.close()
        for subscribers in tuple(self._subscribers.values()):
            for subscription in tuple(subscribers):
                await subscription.close()
