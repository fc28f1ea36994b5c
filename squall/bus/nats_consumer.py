"""Consuming a work-queue topic from NATS JetStream: a pull subscription bound to the
topic's durable consumer, and its deliveries with confirmed acks (see ``nats.py`` for the
bus as a whole).

A consumer of a topic that takes direct hand-offs (``Layout.direct_subject``: completion
topics) also listens on that core NATS subject, in a queue group of the topic's
consumers (one of them gets each hand-off). A hand-off is delivered like a stored
message; its ``ack`` answers the sender, whose ``send`` returns only then (no answer in
time: the sender stores the message on the stream, with the same id). Its id is then
remembered as acknowledged (``AckedIds``), so a stored copy pulled later is dropped, and
a stored copy pulled while the hand-off is still unacknowledged is left unacknowledged
(it comes back after the ack wait, and is dropped then if the hand-off was acknowledged).

Concurrency: a consumer pulls under a lock, so concurrent ``receive`` calls each get
their own message; ``close`` wakes a waiting pull at once. A pull in flight when a
hand-off arrives is not cancelled (that would cost a new pull request per hand-off): it
stays in flight for the next ``receive``, and a message it brings meanwhile waits there
unacknowledged, as a prefetched one does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import nats.errors as nats_errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSub
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from squall.bus.jetstream import Route
from squall.errors import ProviderError

if TYPE_CHECKING:
    from squall.bus.nats import NatsBus

log = logging.getLogger(__name__)

# Errors that mean "the server cannot be reached right now"; anything may work again
# after a reconnect.
UNREACHABLE: tuple[type[BaseException], ...] = (
    asyncio.TimeoutError,  # nats.errors.TimeoutError is one
    nats_errors.OutboundBufferLimitError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.NoRespondersError,
    nats_errors.StaleConnectionError,
    js_errors.NoStreamResponseError,
    js_errors.ServiceUnavailableError,
    OSError,
)
UNREACHABLE_OR_API: tuple[type[BaseException], ...] = (*UNREACHABLE, js_errors.APIError)
# Anything nats-py raises, closed connections included.
ANY_NATS: tuple[type[BaseException], ...] = (*UNREACHABLE, nats_errors.Error)
# How long one pull request waits on the server before it is renewed; also bounds how
# late a consumer notices that the server lost its durable consumer.
_PULL_S = 5.0
# How often an idle consumer checks that the server still has its durable consumer.
_VERIFY_S = 5.0
MIN_WAIT_S = 0.05
# Retry pause while the server is unreachable: doubles up to the maximum.
BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0


MSG_ID = "Nats-Msg-Id"
# JetStream's ack, as nats-py's ``Msg.ack`` sends it.
_ACK = b"+ACK"


def _msg_id(msg: Msg) -> str | None:
    return msg.headers.get(MSG_ID) if msg.headers else None


def acked_before(bus: NatsBus, stream: str, msg_id: str | None) -> bool:
    """Whether a message pulled from ``stream`` was acknowledged here before (forgotten
    by a server that restarted uncleanly, or the stored copy of a hand-off whose answer
    came too late for its sender): it is then acknowledged again (:func:`ack_again`),
    not handed out a second time. Logged."""
    if msg_id is None or (stream, msg_id) not in bus._acked_ids:
        return False
    log.warning("NATS delivered acknowledged message %s again; dropped", msg_id)
    return True


async def ack_again(bus: NatsBus, msg: Msg) -> None:
    """Acknowledge a message :func:`acked_before` dropped; a failure is left to the ack
    wait (it comes back, and is dropped again)."""
    with contextlib.suppress(*ANY_NATS):
        await msg.ack_sync(timeout=bus._request_timeout_s)


class _Received:
    """What both kinds of delivery hold: the message, its stream (for the acked ids) and
    the bus."""

    def __init__(self, msg: Msg, stream: str, bus: NatsBus) -> None:
        self._msg = msg
        self._stream = stream
        self._bus = bus
        self._acked = False

    @property
    def data(self) -> bytes:
        return self._msg.data

    @property
    def settled(self) -> bool:
        return False  # an ack is confirmed by the server (the stored one) or the sender


class NatsDelivery(_Received):
    """A message pulled from its stream; ``ack`` is confirmed by the server."""

    @property
    def attempt(self) -> int:
        return self._msg.metadata.num_delivered

    async def ack(self) -> None:
        if self._acked:
            return
        try:
            # A request on the ack subject: the server answers once the ack is recorded.
            await self._bus._nc.lean_request(
                self._msg.reply, b"", None, self._bus._request_timeout_s
            )
        except ANY_NATS as e:
            raise ProviderError(f"NATS did not confirm an ack: {e!r}") from e
        self._taken_as_acked()

    async def ack_unconfirmed(self) -> None:
        if self._acked:
            return
        try:
            # A plain ack (no reply subject): the server records it and answers nothing.
            await self._bus._nc.lean_publish(self._msg.reply, _ACK)
        except ANY_NATS as e:
            raise ProviderError(f"NATS did not take an ack: {e!r}") from e
        # Taken as recorded (the common case): a copy the server delivers again anyway is
        # acknowledged again and dropped by the consumer, as after a confirmed ack.
        self._taken_as_acked()

    def _taken_as_acked(self) -> None:
        """This delivery is acknowledged: its id joins the bus's acknowledged ids, so a
        copy delivered again is acknowledged again and dropped, not handed over."""
        self._acked = True
        msg_id = _msg_id(self._msg)
        if msg_id is not None:
            self._bus._acked_ids.add(self._stream, msg_id)


class DirectDelivery(_Received):
    """A message handed to this consumer directly (core NATS request); ``ack`` answers the
    sender, which waits for that answer before its ``send`` returns."""

    def __init__(self, msg: Msg, stream: str, bus: NatsBus, on_done: Any) -> None:
        super().__init__(msg, stream, bus)
        self._on_done = on_done

    @property
    def attempt(self) -> int:
        return 1

    async def ack(self) -> None:
        if self._acked:
            return
        msg_id = _msg_id(self._msg)
        # Remembered first: a stored copy (the sender's fallback, should this answer be
        # late) pulled from now on is dropped rather than delivered a second time.
        if msg_id is not None:
            self._bus._acked_ids.add(self._stream, msg_id)
        try:
            # (Without the hand-off's headers, which ``respond`` would send back.)
            await self._bus._nc.lean_publish(self._msg.reply, b"+")
        except ANY_NATS as e:
            # The sender times out and stores it; the stored copy is dropped as acked.
            raise ProviderError(f"NATS did not take the answer to a hand-off: {e!r}") from e
        finally:
            self._on_done(msg_id)
        self._acked = True

    async def ack_unconfirmed(self) -> None:
        await self.ack()  # the answer to a hand-off is not confirmed anyway


class NatsConsumer:
    """A pull subscription bound to a topic's durable consumer."""

    def __init__(self, bus: NatsBus, route: Route, topic: str, *, prefetch: int = 1) -> None:
        self._bus = bus
        self._route = route
        self._topic = topic
        # Messages fetched ahead (prefetch > 1), handed out before the next pull.
        self._prefetch = max(1, prefetch)
        self._ahead: collections.deque[Msg] = collections.deque()
        self._sub: JetStreamContext.PullSubscription | None = None
        self._generation = -1
        self._verified_at = 0.0
        self._lock = asyncio.Lock()
        self._closed = asyncio.Event()
        # Direct hand-offs (completion topics): received, not yet handed out; and the ids
        # of those handed out and not yet acknowledged (their stored copies must wait).
        self._direct_subject = bus.layout.direct_subject(topic)
        self._direct_sub: NatsSub | None = None
        self._direct: collections.deque[Msg] = collections.deque()
        self._direct_unacked: set[str] = set()
        # A pull in flight, kept across receives when a hand-off came first.
        self._pulling: asyncio.Task[Msg] | None = None
        # What a waiting receive waits for: resolved by the pull in flight ending, a
        # hand-off arriving or the consumer closing (one future, not a task per cause).
        self._wake: asyncio.Future[None] | None = None

    def _wake_up(self, _: object = None) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _listen(self) -> None:
        """Subscribe to the topic's direct subject (once; nats-py subscribes again by
        itself after a reconnect)."""
        if self._direct_subject is None or self._direct_sub is not None:
            return

        def on_msg(msg: Msg) -> None:
            if msg.reply:
                self._direct.append(msg)
                self._wake_up()

        # Called from the client's read loop (no task step per hand-off): it only
        # queues the message and wakes a waiting receive.
        self._direct_sub = await self._bus._nc.lean_subscribe(
            self._direct_subject, on_msg, queue=self._route.durable
        )

    def _direct_done(self, msg_id: str | None) -> None:
        self._direct_unacked.discard(msg_id or "")

    def _take_direct(self) -> DirectDelivery | None:
        while self._direct:
            msg = self._direct.popleft()
            msg_id = _msg_id(msg)
            if msg_id is not None:
                self._direct_unacked.add(msg_id)
            return DirectDelivery(msg, self._route.stream, self._bus, self._direct_done)
        return None

    async def _bind(self) -> JetStreamContext.PullSubscription:
        # After a reconnect the server may have come back without the durable consumer
        # (its store lost): bind again, which creates it when missing.
        if self._sub is not None and self._generation != self._bus._generation:
            await self._unbind()
        if self._sub is None:
            self._generation = self._bus._generation
            self._verified_at = time.monotonic()
            await self._bus._ensure_consumer(self._route)
            self._sub = await self._bus._js.pull_subscribe_bind(
                self._route.durable, stream=self._route.stream
            )
        return self._sub

    async def _verify(self) -> None:
        """Every ``_VERIFY_S`` while idle: make sure the durable consumer still exists."""
        if self._sub is None or time.monotonic() - self._verified_at < _VERIFY_S:
            return
        self._verified_at = time.monotonic()
        try:
            await self._bus._js.consumer_info(self._route.stream, self._route.durable)
        except js_errors.NotFoundError:
            log.warning("NATS consumer %s is gone; recreating it", self._route.durable)
            await self._unbind()
            await self._bus._recreate_streams()
        except UNREACHABLE_OR_API as e:
            log.debug("cannot check NATS consumer %s: %r", self._route.durable, e)

    async def _unbind(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            # A failure means the connection is gone, and the subscription with it.
            with contextlib.suppress(*ANY_NATS):
                await sub.unsubscribe()

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise ProviderError(f"consumer of {self._topic} is closed")
        self._bus._check_open()

    async def receive(self) -> NatsDelivery | DirectDelivery:
        delivery = await self._next(None)
        assert delivery is not None  # no deadline: only a message or an error ends it
        return delivery

    async def poll(self, timeout: float) -> NatsDelivery | DirectDelivery | None:
        return await self._next(time.monotonic() + max(0.0, timeout))

    async def _next(self, deadline: float | None) -> NatsDelivery | DirectDelivery | None:
        self._check_open()
        async with self._lock:
            backoff = BACKOFF_S
            while True:
                self._check_open()
                left = _PULL_S if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return None
                direct = self._take_direct()
                if direct is not None:
                    return direct
                try:
                    pulled = await self._pulled(min(left, _PULL_S))
                except TimeoutError:
                    # Nothing within this pull, or the server went away mid-pull, or it
                    # lost the durable consumer (pulls on a missing consumer just expire).
                    await self._verify()
                    continue
                except UNREACHABLE_OR_API as e:
                    log.debug("pull on %s failed (%r); retrying", self._topic, e)
                    if self._bus._nc.is_connected:
                        # Connected, yet the pull failed: the server may have lost the
                        # consumer or its stream; make them again before the next pull.
                        await self._unbind()
                        await self._bus._recreate_streams()
                    await self._pause(backoff, deadline)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                except nats_errors.ConnectionClosedError as e:
                    raise ProviderError("NATS connection is closed") from e
                if pulled is None:
                    continue  # a hand-off came first: hand it out
                msg = pulled
                msg_id = _msg_id(msg)
                if msg_id in self._direct_unacked:
                    # The stored copy of a hand-off being handled: left unacknowledged, it
                    # comes back after the ack wait (and is dropped if that one was acked).
                    continue
                if acked_before(self._bus, self._route.stream, msg_id):
                    await ack_again(self._bus, msg)
                    continue
                return NatsDelivery(msg, self._route.stream, self._bus)

    async def _pull(self, wait_s: float) -> Msg:
        if self._ahead:
            return self._ahead.popleft()
        sub = await self._bind()
        if self._prefetch == 1:
            # (Its metadata, parsed from its reply subject, is not needed.)
            return await self._bus._nc.lean_fetch_one(sub, max(wait_s, MIN_WAIT_S))
        msgs = await sub.fetch(1, timeout=max(wait_s, MIN_WAIT_S))
        waiting = msgs[0].metadata.num_pending
        if waiting:
            # More are waiting: take them in one round trip. (A pull for one waits for
            # the next message; nats-py's pull for several waits for all of them, so it
            # is only asked for what the server said it has.)
            try:
                more = await sub.fetch(min(self._prefetch, waiting), timeout=MIN_WAIT_S)
                self._ahead.extend(more)
            except TimeoutError:
                pass
            except Exception:
                # The one already taken is still served; the next pull meets the
                # failure again if it lasts (and reports it then).
                log.warning("taking more waiting messages failed", exc_info=True)
        return msgs[0]

    async def _pulled(self, wait_s: float) -> Msg | None:
        """The message of the pull in flight (one is started if none is), or None when a
        hand-off arrived first (the pull then stays in flight for the next call). If the
        consumer closes first, the pull is cancelled and this raises.

        Cancelling a pull loses nothing: a message that arrives afterwards waits in the
        subscription for the next pull, or (consumer closed) comes back after the ack
        wait."""
        if self._pulling is None:
            self._pulling = asyncio.ensure_future(self._pull(wait_s))
        task = self._pulling
        if not task.done() and not self._direct and not self._closed.is_set():
            self._wake = asyncio.get_running_loop().create_future()
            task.add_done_callback(self._wake_up)
            try:
                await self._wake
            finally:
                task.remove_done_callback(self._wake_up)
                self._wake = None
                if not task.done() and self._closed.is_set():
                    await self._cancel_pull()
        if not task.done():
            return None  # a hand-off
        self._pulling = None
        if task.cancelled():
            self._check_open()
        return task.result()

    async def _cancel_pull(self) -> None:
        task, self._pulling = self._pulling, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _pause(self, seconds: float, deadline: float | None) -> None:
        if deadline is not None:
            seconds = min(seconds, max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake_up()
        self._bus._consumers.discard(self)
        async with self._lock:  # waits for a pull in flight to notice the close
            await self._cancel_pull()
            await self._unbind()
            sub, self._direct_sub = self._direct_sub, None
            if sub is not None:
                with contextlib.suppress(*ANY_NATS):
                    await self._bus._nc.lean_unsubscribe(sub)
            # Hand-offs received and never handed out: their senders time out and store
            # them.
            self._direct.clear()
