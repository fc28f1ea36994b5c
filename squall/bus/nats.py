"""The NATS JetStream bus (the cluster's provider), over nats-py.

Topics are JetStream work-queue streams (layout and names: ``jetstream.py``); broadcast
subjects are core NATS subjects. What the contract's guarantees rest on:

- ``send(direct=True)`` to a completion topic first hands the message to a live
  consumer of the topic (core NATS request/reply on ``direct.<topic>``, nothing stored)
  and returns once that consumer acknowledged it — after it handled the message, the
  same point at which it would have acknowledged a stored one. No consumer, or no
  answer within ``DIRECT_WAIT_S``: the message is stored as below, with the same id.
  Only for consumers that acknowledge promptly (a controller's completions).
- ``send`` publishes with a ``Nats-Msg-Id`` header (the caller's key, or a fresh id for
  this one call) and waits for JetStream's publish acknowledgement, retrying until the
  send timeout: a retry of the same send is dropped by the stream's duplicate window, so
  retrying cannot deliver twice.
- The connection has no reconnect buffer (``pending_size=0``): while the server is away,
  every publish fails at once instead of being queued and sent after the caller was told
  it failed. So ``send`` fails within its timeout and ``publish`` drops the message.
- Consumers (``nats_consumer.py``) pull one message at a time from their topic's durable
  consumer, with explicit acks (a listener on an invoker's queue, ``nats_listener.py``,
  pulls the same way, its handler called by the client's read loop); ``ack`` is a
  synchronous ack (the server answers once it recorded it). Unacknowledged messages
  come back after the ack wait, at most ``max_deliver`` times.
- nats-py reconnects by itself (for ever) and re-subscribes; consumers keep pulling,
  backing off while the server is away, and recreate their durable consumer if the
  server lost it.

Concurrency: one connection per ``NatsBus``; everything runs on its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque

import nats.errors as nats_errors
import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSub
from nats.js import api as js_api
from nats.js import errors as js_errors
from nats.js.kv import KeyValue

from squall.bus.contracts import Handler, Listener
from squall.bus.jetstream import (
    BUCKETS,
    AckedIds,
    Layout,
    Route,
    ensure_consumer,
    ensure_streams,
)
from squall.bus.nats_client import LeanClient, header_block
from squall.bus.nats_consumer import (
    ANY_NATS,
    BACKOFF_S,
    MAX_BACKOFF_S,
    MIN_WAIT_S,
    MSG_ID,
    UNREACHABLE,
    UNREACHABLE_OR_API,
    NatsConsumer,
)
from squall.bus.nats_listener import NatsListener
from squall.bus.push import PullListener
from squall.errors import ProviderError

log = logging.getLogger(__name__)

# How long a direct hand-off (``send(direct=True)``) waits for the consumer's answer
# before the message is stored instead: well above a loaded controller's ack delay.
DIRECT_WAIT_S = 1.0
# Messages a subscriber may fall behind before it loses the oldest ones.
SUBSCRIPTION_BACKLOG = 10_000


class NatsSubscription:
    """A core NATS subscription on a broadcast subject."""

    def __init__(self, bus: NatsBus) -> None:
        self._bus = bus
        self._sub: NatsSub | None = None
        self._backlog: deque[bytes] = deque(maxlen=SUBSCRIPTION_BACKLOG)
        self._ready = asyncio.Event()
        self._closed = False

    async def _on_msg(self, msg: Msg) -> None:
        self._backlog.append(msg.data)  # a full deque drops its oldest message
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
        if self._closed:
            return
        self._closed = True
        self._ready.set()
        self._bus._subscriptions.discard(self)
        if self._sub is not None:
            with contextlib.suppress(*ANY_NATS):
                await self._sub.unsubscribe()


async def _set_up(bus: NatsBus, timeout_s: float) -> None:
    """Create or upgrade the layout's streams, retrying for ``timeout_s`` while NATS is
    away or not answering yet: a connection lost during the set-up (a server that just
    started and restarts, a network blip) reconnects by itself, and the set-up is
    idempotent, so it is simply done again. A request the server refuses (a JetStream
    API error other than "unavailable", e.g. a stream it will not change to this
    configuration) is a misconfiguration and fails at once, with the server's words."""
    deadline = time.monotonic() + timeout_s
    backoff = BACKOFF_S
    while True:
        left = deadline - time.monotonic()
        try:
            await asyncio.wait_for(ensure_streams(bus._js, bus.layout), max(MIN_WAIT_S, left))
            return
        except UNREACHABLE as e:
            if time.monotonic() + backoff >= deadline:
                raise
            log.warning("NATS: setting up the streams failed (%s); trying again", describe(e))
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF_S)


def describe(error: BaseException) -> str:
    """A NATS error as a message: a JetStream API error with the server's description
    (nats-py's repr of one shows no field)."""
    if isinstance(error, js_errors.APIError):
        return (f"{type(error).__name__}: {error.description} "
                f"(code {error.code}, error code {error.err_code})")  # fmt: skip
    return repr(error)


class NatsBus:
    """``MessagingProvider`` over NATS JetStream; open it with :meth:`connect`."""

    def __init__(
        self,
        nc: LeanClient,
        layout: Layout,
        *,
        ack_wait_s: float,
        max_deliver: int,
        send_timeout_s: float,
        request_timeout_s: float,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=request_timeout_s)
        self.layout = layout
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self._send_timeout_s = send_timeout_s
        self._request_timeout_s = request_timeout_s
        self._consumers: set[NatsConsumer] = set()
        self._subscriptions: set[NatsSubscription] = set()
        # Closed before the consumers: a listener's task may be binding its consumer.
        self._listeners: set[NatsListener] = set()
        self._acked_ids = AckedIds()
        # Counts reconnects, so consumers know to bind again.
        self._generation = 0
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        name: str = "squall",
        prefix: str = "",
        ack_wait_s: float = 30.0,
        max_deliver: int = 5,
        dedup_window_s: float = 120.0,
        completion_max_age_s: float = 600.0,
        send_timeout_s: float = 5.0,
        request_timeout_s: float = 2.0,
        connect_timeout_s: float = 5.0,
        reconnect_wait_s: float = 0.25,
    ) -> NatsBus:
        """Connect to ``url`` (``nats://host:port``, several separated by commas) and
        create or upgrade Squall's streams; ``ProviderError`` when that fails within
        ``connect_timeout_s``."""
        layout = Layout(
            prefix=prefix, dedup_window_s=dedup_window_s, completion_max_age_s=completion_max_age_s
        )
        nc = LeanClient()
        bus: NatsBus | None = None

        async def on_error(e: Exception) -> None:
            log.debug("NATS %s: %r", name, e)

        async def on_disconnected() -> None:
            if bus is not None and not bus._closed:
                log.warning("NATS %s: disconnected; reconnecting", name)

        async def on_reconnected() -> None:
            log.warning("NATS %s: reconnected to %s", name, nc.connected_url)
            if bus is not None:
                bus._generation += 1

        try:
            # Reconnect for ever: a long outage must not end the bus. Bounded here by
            # the timeout, since with unlimited attempts nats-py would wait for ever.
            await asyncio.wait_for(
                nc.connect(
                    servers=[s.strip() for s in url.split(",") if s.strip()],
                    name=name,
                    connect_timeout=max(1, int(connect_timeout_s)),
                    reconnect_time_wait=reconnect_wait_s,  # type: ignore[arg-type]
                    max_reconnect_attempts=-1,
                    pending_size=0,  # no reconnect buffer: fail fast during outages
                    error_cb=on_error,
                    disconnected_cb=on_disconnected,
                    reconnected_cb=on_reconnected,
                ),
                connect_timeout_s,
            )
            bus = cls(
                nc,
                layout,
                ack_wait_s=ack_wait_s,
                max_deliver=max_deliver,
                send_timeout_s=send_timeout_s,
                request_timeout_s=request_timeout_s,
            )
            await _set_up(bus, connect_timeout_s)
        except ANY_NATS as e:
            if bus is not None:
                bus._closed = True  # closing: no "disconnected; reconnecting" warning
            await nc.close()
            raise ProviderError(f"cannot use NATS JetStream at {url}: {describe(e)}") from e
        return bus

    def _check_open(self) -> None:
        if self._closed or self._nc.is_closed:
            raise ProviderError("bus is closed")

    async def _ensure_consumer(self, route: Route) -> None:
        await ensure_consumer(
            self._js, self.layout, route, ack_wait_s=self.ack_wait_s, max_deliver=self.max_deliver
        )

    async def _recreate_streams(self) -> None:
        try:
            await ensure_streams(self._js, self.layout)
        except UNREACHABLE_OR_API as e:
            log.debug("cannot recreate streams yet: %r", e)

    async def send(
        self, topic: str, data: bytes, *, key: str | None = None, direct: bool = False
    ) -> None:
        self._check_open()
        if not data:
            raise ProviderError("empty message")
        route = self.layout.route(topic)
        # The same id on every retry of this send: JetStream stores it at most once.
        msg_id = key if key is not None else uuid.uuid4().hex
        if direct and await self._hand_off(topic, data, msg_id):
            return
        header = header_block({MSG_ID: msg_id, js_api.Header.EXPECTED_STREAM: route.stream})
        deadline = time.monotonic() + self._send_timeout_s
        backoff = BACKOFF_S
        while True:
            self._check_open()
            left = deadline - time.monotonic()
            try:
                await self._publish(
                    route, data, header, max(MIN_WAIT_S, min(left, self._request_timeout_s))
                )
                return
            except UNREACHABLE_OR_API as e:
                if time.monotonic() + backoff >= deadline:
                    raise ProviderError(f"NATS did not accept a message on {topic}: {e!r}") from e
                if isinstance(e, js_errors.NoStreamResponseError) and self._nc.is_connected:
                    # Connected, yet no stream listens: the server may have lost them.
                    left = deadline - time.monotonic()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._recreate_streams(), left)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except nats_errors.Error as e:  # closed, payload too large, bad subject
                raise ProviderError(f"NATS refused a message on {topic}: {e!r}") from e

    async def _publish(self, route: Route, data: bytes, header: bytes, timeout: float) -> None:
        """Publish ``data`` to ``route``'s stream and wait for the stream's acknowledgement
        (``js.publish`` without building a ``PubAck``: its answer is parsed by orjson and
        only checked for an error). ``header``: the message id and the expected stream."""
        try:
            answer = await self._nc.lean_request(route.subject, data, header, timeout)
        except nats_errors.NoRespondersError as e:
            raise js_errors.NoStreamResponseError from e
        reply = orjson.loads(answer.data)
        if "error" in reply:
            raise js_errors.APIError.from_error(reply["error"])

    async def _hand_off(self, topic: str, data: bytes, msg_id: str) -> bool:
        """Hand ``data`` straight to a live consumer of ``topic`` (a core NATS request on
        its direct subject); True once that consumer acknowledged it. False — nobody
        listens, no answer within ``DIRECT_WAIT_S``, NATS away, a topic that takes no
        hand-offs — leaves the message to be stored as any send (same id: a consumer that
        did take it drops the stored copy, see ``nats_consumer.py``)."""
        subject = self.layout.direct_subject(topic)
        if subject is None:
            return False
        try:
            answer = await self._nc.lean_request(
                subject,
                data,
                header_block({MSG_ID: msg_id}),
                min(DIRECT_WAIT_S, self._send_timeout_s),
            )
        except ANY_NATS as e:
            log.debug("no direct hand-off on %s (%r): storing it", topic, e)
            return False
        return answer.data == b"+"

    async def consumer(self, topic: str, *, prefetch: int = 1) -> NatsConsumer:
        self._check_open()
        route = self.layout.route(topic)
        consumer = NatsConsumer(self, route, topic, prefetch=prefetch)
        try:
            await consumer._bind()
            await consumer._listen()
        except UNREACHABLE_OR_API as e:
            await consumer.close()
            raise ProviderError(f"cannot consume {topic} from NATS: {e!r}") from e
        except BaseException:  # any other failure (a closed connection, cancelled)
            await consumer.close()
            raise
        self._consumers.add(consumer)
        return consumer

    async def listen(self, topic: str, handler: Handler, *, prefetch: int = 1) -> Listener:
        """Push delivery (``bus/contracts.py``): from the client's read loop for a topic
        that takes no direct hand-offs, one message at a time (an invoker's queue:
        ``nats_listener.py``); over the pull consumer (``push.PullListener``) for the
        others, whose consumer also takes hand-offs or fetches ahead."""
        consumer = await self.consumer(topic, prefetch=prefetch)
        if prefetch > 1 or self.layout.direct_subject(topic) is not None:
            return PullListener(consumer, handler)
        listener = NatsListener(consumer, handler)
        self._listeners.add(listener)
        return listener

    async def pending(self, topic: str) -> int:
        self._check_open()
        route = self.layout.route(topic)
        try:
            try:
                info = await self._js.consumer_info(route.stream, route.durable)
                return (info.num_pending or 0) + (info.num_ack_pending or 0)
            except js_errors.NotFoundError:
                # Nobody consumed the topic yet: everything on its subject is waiting.
                stream = await self._js.stream_info(route.stream, subjects_filter=route.subject)
                return (stream.state.subjects or {}).get(route.subject, 0)
        except UNREACHABLE_OR_API as e:
            raise ProviderError(f"cannot count messages on {topic}: {e!r}") from e

    async def publish(self, subject: str, data: bytes) -> None:
        self._check_open()
        target = self.layout.broadcast_subject(subject)
        try:
            await self._nc.publish(target, data)
        except UNREACHABLE:
            log.debug("NATS unreachable: dropped a message on %s", subject)
        except nats_errors.Error as e:
            raise ProviderError(f"cannot publish on {subject}: {e!r}") from e

    async def subscribe(self, subject: str) -> NatsSubscription:
        self._check_open()
        target = self.layout.broadcast_subject(subject)
        subscription = NatsSubscription(self)
        try:
            subscription._sub = await self._nc.subscribe(target, cb=subscription._on_msg)
            # Subscribed once the server has it: messages published after this returns
            # reach the subscription.
            await self._nc.flush(timeout=max(1, int(self._request_timeout_s)))
        except ANY_NATS as e:
            await subscription.close()
            raise ProviderError(f"cannot subscribe to {subject}: {e!r}") from e
        self._subscriptions.add(subscription)
        return subscription

    async def key_value(self, name: str, *, max_age_s: float) -> KeyValue:
        """The layout's key-value bucket ``name`` (one of ``jetstream.BUCKETS``), created
        when missing: one revision kept per key, each entry gone ``max_age_s`` after its
        last write. Racing creators all succeed (same configuration)."""
        self._check_open()
        bucket = self.layout.bucket_name(name)
        try:
            try:
                return await self._js.key_value(bucket)
            except js_errors.BucketNotFoundError:
                return await self._js.create_key_value(bucket=bucket, history=1, ttl=max_age_s)
        except ANY_NATS as e:
            raise ProviderError(f"cannot open the key-value bucket {bucket}: {e!r}") from e

    async def delete_streams(self) -> None:
        """Delete this layout's streams and buckets and everything in them (tests,
        uninstall)."""
        self._check_open()
        for name in BUCKETS:
            bucket = self.layout.bucket_name(name)
            try:
                await self._js.delete_key_value(bucket)
            except (js_errors.NotFoundError, js_errors.BucketNotFoundError):
                pass
            except UNREACHABLE_OR_API as e:
                raise ProviderError(f"cannot delete bucket {bucket}: {e!r}") from e
        for spec in self.layout.streams:
            try:
                await self._js.delete_stream(self.layout.stream_name(spec))
            except js_errors.NotFoundError:
                pass
            except UNREACHABLE_OR_API as e:
                raise ProviderError(f"cannot delete stream {spec.name}: {e!r}") from e

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for listener in tuple(self._listeners):
            await listener.close()
        for consumer in tuple(self._consumers):
            await consumer.close()
        for subscription in tuple(self._subscriptions):
            await subscription.close()
        try:
            await self._nc.close()
        except ANY_NATS as e:
            log.debug("closing NATS: %r", e)
