"""Push delivery of a NATS work-queue topic from the client's read loop (an invoker's
queue): :class:`NatsListener`, what ``NatsBus.listen`` gives for a topic that takes no
direct hand-offs, with one message at a time (``prefetch`` 1).

Through the pull adapter (``push.PullListener`` over ``NatsConsumer.receive``) each
message went: the read loop puts it in the pull subscription's queue; the pull's task
(one per message) takes it and ends; its done-callback wakes the adapter's task, which
builds the delivery, calls the handler, and starts the next pull's task, whose step
sends the pull request — three loop iterations and two tasks per message before the
handler saw it, all on a warm invoke's path. Here the read loop calls the handler
itself (``LeanClient.lean_handle`` on the pull subscription's inbox), then sends the
next pull request in the same step (``lean_send``), so it goes out in one write with the
ack of the task the handler started (the invoker's activation task acknowledges in its
first step).

What is unchanged: one pull request out at a time, for one message (a frozen invoker
holds no more than one message the controllers could move), the same durable consumer, ack
and redelivery rules, and ``NatsConsumer``'s binding, checking and closing, which this
reuses. A copy of a message acknowledged before (``AckedIds``) is acknowledged again and
dropped, as the consumer does.

What a pull's answer cannot carry — a pull that expired (the server's 408: renewed, and
the durable consumer checked as an idle consumer does), one that failed (the server's
error status, e.g. JetStream's 503 after a restart: streams made again, a pause that
doubles), one lost to a reconnect or a server that lost the consumer, or only late (no
answer within the pull's wait and a grace: the next pull goes to a fresh inbox, so a late
answer to the old one is dropped, its subscription gone, and cannot end the new one) —
is handled by one task of its own, which sleeps while messages flow. It binds again
(after a reconnect) only while no pull is out: a message in transit to the old inbox
would be dropped and come back only after the ack wait.

Concurrency: everything on the client's event loop. The handler runs inside the read
loop, so it must return promptly and never await (``bus/contracts.py``'s ``Handler``),
and nothing else is read from the connection meanwhile. ``close`` (also called by
``NatsBus.close``) forgets the handler first: a message arriving later is left
unacknowledged and comes back after the ack wait (to a consumer of the topic), as with a
closed consumer; a subscription the task made while it closed is ended by the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import nats.errors as nats_errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from squall.bus.contracts import Handler
from squall.bus.nats_consumer import (
    _PULL_S,
    ANY_NATS,
    BACKOFF_S,
    MAX_BACKOFF_S,
    UNREACHABLE_OR_API,
    NatsConsumer,
    NatsDelivery,
    _msg_id,
    ack_again,
    acked_before,
)
from squall.bus.push import hand
from squall.errors import ProviderError

if TYPE_CHECKING:
    from nats.aio.subscription import Subscription

log = logging.getLogger("squall.bus")

# A pull with no answer this long after its wait ended was lost (a reconnect, a server
# that lost the consumer): another is sent.
_GRACE_S = 1.0
_PULL = b'{"batch":1,"expires":%d}' % (int(_PULL_S * 1_000_000_000) - 100_000)
# Statuses that end a pull without a message and without an error (nats-py's timeouts).
_EXPIRED = (
    js_api.StatusCode.NO_MESSAGES,
    js_api.StatusCode.CONFLICT,
    js_api.StatusCode.REQUEST_TIMEOUT,
)


class NatsListener:
    """``handler`` fed from the read loop with the messages of ``consumer``'s topic (see
    the module docstring); made by ``NatsBus.listen``, already bound."""

    def __init__(self, consumer: NatsConsumer, handler: Handler) -> None:
        self._consumer = consumer
        self._handler = handler
        self._bus = consumer._bus
        self._stream = consumer._route.stream
        self._sub: JetStreamContext.PullSubscription | None = None
        # A pull request is out and unanswered, sent at ``_pulled_at`` (monotonic).
        self._in_flight = False
        self._pulled_at = 0.0
        # How the last pull ended without a message, for the task: None (expired) or
        # the error; ``_ended`` says there is one to look at.
        self._ended = False
        self._error: BaseException | None = None
        self._closed = False
        self._redrops: set[asyncio.Task[None]] = set()
        self._task = asyncio.create_task(self._run(), name="bus-listener")

    # -- in the read loop --------------------------------------------------------------

    def _on_msg(self, msg: Msg) -> None:
        if self._closed or self._consumer._closed.is_set():
            return  # left unacknowledged: it comes back after the ack wait
        status = JetStreamContext.is_status_msg(msg)
        if status is not None:
            if status == js_api.StatusCode.CONTROL_MESSAGE:
                return  # a heartbeat: the pull is still out
            if status in _EXPIRED:
                self._end(None)
                return
            try:
                js_errors.APIError.from_msg(msg)  # raises the status's error, never returns
            except js_errors.APIError as e:
                self._end(e)
            return
        self._in_flight = False  # the pull is answered
        if acked_before(self._bus, self._stream, _msg_id(msg)):
            task = asyncio.ensure_future(ack_again(self._bus, msg))
            self._redrops.add(task)
            task.add_done_callback(self._redrops.discard)
        else:
            hand(self._handler, NatsDelivery(msg, self._stream, self._bus))
        # The next pull, after the handler: its write callback is then scheduled after
        # the step of the task the handler started, so the pull request goes out in one
        # write with what that step sends (the invoker's ack), not in a write of its own.
        self._pull()

    def _pull(self) -> None:
        sub = self._sub
        if sub is None or self._closed:
            return
        try:
            self._bus._nc.lean_send(sub._nms, _PULL, None, sub._deliver)
        except ANY_NATS as e:
            self._end(e)
            return
        self._in_flight = True
        self._pulled_at = time.monotonic()

    def _end(self, error: BaseException | None) -> None:
        """The pull in flight ended without a message: tell the task."""
        self._in_flight = False
        self._ended = True
        self._error = error
        self._consumer._wake_up()

    # -- the task that keeps a pull out --------------------------------------------------

    async def _run(self) -> None:
        backoff = BACKOFF_S
        while True:
            try:
                self._consumer._check_open()
            except ProviderError:
                return
            try:
                if not self._in_flight and not self._ended:
                    # Bound (again after a reconnect) only with no pull out: a message in
                    # transit to the old inbox would be dropped, back only after the ack
                    # wait. A pull out on the old inbox ends (answer, 408 or judged lost)
                    # and the next one goes to the new inbox.
                    await self._bind()
                    self._pull()
                await self._wait()
                if not self._ended:
                    if self._in_flight and time.monotonic() - self._pulled_at > _PULL_S + _GRACE_S:
                        # No answer at all: lost (a reconnect, the consumer gone) or late
                        # (``_pulled_at`` is stamped when the request is queued, not
                        # written). Bound again to a fresh inbox: a late answer to the old
                        # pull is dropped (its subscription is gone) and the server drops
                        # the old pull (no interest), so it can never end the next pull
                        # and leave two pulls out for good.
                        await self._consumer._verify()
                        await self._unbind()
                    continue
                self._ended = False
                error, self._error = self._error, None
                if error is None:
                    backoff = BACKOFF_S
                    await self._consumer._verify()  # (at most every few seconds)
                    continue
                raise error
            except (nats_errors.ConnectionClosedError, ProviderError):
                return  # the bus or the listener is closing
            except UNREACHABLE_OR_API as e:
                log.debug("pull on %s failed (%r); retrying", self._consumer._topic, e)
                if self._bus._nc.is_connected:
                    # As NatsConsumer: connected, yet the pull failed: the server may
                    # have lost the consumer or its stream; made again, then bound.
                    await self._unbind()
                    await self._bus._recreate_streams()
                await self._consumer._pause(backoff, None)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except Exception:
                log.exception("a listener on %s failed; it stops", self._consumer._topic)
                return

    async def _bind(self) -> None:
        """The consumer's subscription (bound again after a reconnect), its inbox's
        messages handed to ``_on_msg``; a new one has no pull out yet."""
        sub = await self._consumer._bind()
        if self._closed or self._consumer._closed.is_set():
            # Closed while binding: the subscription made meanwhile is not the
            # consumer's close's to end (it may have found none), so it is ended here.
            await self._consumer._unbind()
            raise ProviderError(f"listener on {self._consumer._topic} is closed")
        if sub is not self._sub:
            if self._sub is not None:
                self._bus._nc.lean_forget(self._inner(self._sub))
            self._sub = sub
            self._in_flight = False
            self._bus._nc.lean_handle(self._inner(sub), self._on_msg)

    async def _unbind(self) -> None:
        if self._sub is not None:
            self._bus._nc.lean_forget(self._inner(self._sub))
            self._sub = None
        self._in_flight = False
        await self._consumer._unbind()

    @staticmethod
    def _inner(sub: JetStreamContext.PullSubscription) -> Subscription:
        return sub._sub

    async def _wait(self) -> None:
        """Until the pull ends without a message, the consumer closes, or the pull is
        due an answer; the consumer's wake-up future is the one its ``close`` resolves."""
        if self._ended:
            return
        wait = _PULL_S + _GRACE_S
        if self._in_flight:
            wait = max(0.0, self._pulled_at + _PULL_S + _GRACE_S - time.monotonic()) + 0.01
        wake = asyncio.get_running_loop().create_future()
        self._consumer._wake = wake
        try:
            async with asyncio.timeout(wait):
                await wake
        except TimeoutError:
            pass
        finally:
            self._consumer._wake = None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus._listeners.discard(self)
        if self._sub is not None:
            self._bus._nc.lean_forget(self._inner(self._sub))
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._consumer.close()
        await asyncio.gather(*self._redrops, return_exceptions=True)
