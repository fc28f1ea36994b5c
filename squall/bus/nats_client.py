"""nats-py's client with a lean path for the messages of every activation.

Per warm activation the cluster sends four NATS requests (the controller's publish of the
activation and its PubAck, the invoker's confirmed ack, the completion's hand-off and
its answer) and parses the headers of each message it gets (``Nats-Msg-Id``). nats-py's
generic paths cost more Python than the wire needs:

- ``request`` makes a NUID and ``secrets.token_hex`` (a ``getrandom`` system call) per
  request, a done-callback to forget it, and waits with ``asyncio.wait_for`` (another
  future and callback); ``publish`` validates the subjects and checks each header name
  with a regular expression;
- every message with headers is parsed line by line, each name tested character by
  character in a generator (a fifth of the message's handling);
- an answer to a request goes from the read loop into the response subscription's
  queue, whose task (a step of its own) calls a callback that resolves the request's
  future;
- a message on a subscription with a callback is queued for the subscription's task,
  whose step (a later loop iteration) awaits the callback, a coroutine;
- every send wakes nats-py's flusher task through an ``asyncio.Queue`` with a new
  future, and the flusher's step then writes and awaits ``drain`` (three coroutines) —
  per message, even when it is the only one of its loop iteration.

:meth:`LeanClient.lean_request` is the same request on nats-py's own response
subscription (the ``_INBOX.<nuid>.*`` wildcard, its ``_resp_map``): a counter for the
token, the header block built once by the caller (:func:`header_block`), one timer for
the timeout; the read loop resolves a lean request's future itself (the subscription's
queue and task stay for nats-py's own requests). Its errors are nats-py's:
``TimeoutError`` (an ``asyncio.TimeoutError``), ``NoRespondersError``,
``ConnectionClosedError``, ``OutboundBufferLimitError`` (not connected: the bus has no
reconnect buffer), ``MaxPayloadError``.

:meth:`LeanClient.lean_subscribe` subscribes with a plain function that the read loop
calls with each message itself (no queue, no task): for handlers that only take note of
the message and return (a consumer's hand-offs). The subscription is nats-py's (it is
subscribed again after a reconnect; ``unsubscribe`` ends it).

:meth:`LeanClient.lean_publish` queues its command where nats-py does (``_pending``) and
writes it from one callback per loop iteration (``call_soon``): the commands of one
iteration still go out in one system call, in order, as the flusher sends them, without
the queue, the future and the flusher's step. When the socket has a backlog (the
transport's buffer is not empty: the server reads slower than we write), when the write
fails, or when not connected, the command is left to nats-py's flusher (or its
reconnect), whose ``drain`` and error handling then apply as before.

It relies on nats-py internals (``_resp_map``, ``_resp_sub_prefix``, ``_init_request_sub``,
``_process_msg``, ``_process_headers``, ``_build_message``, ``_subs``, ``_sid``,
``_pending``, ``Subscription._id``,
``_pending_data_size``, ``_flush_queue``, ``TcpTransport._io_writer``), pinned with the
dependency (pyproject.toml); ``tests/contract/bus/test_nats_client.py`` holds them against
the installed version.

Concurrency: everything on the client's event loop, as nats-py itself. nats-py's flusher
and the lean write callback both take the whole of ``_pending`` in one synchronous step
(write, then empty it), so whichever runs first sends everything queued, in order, and
the other finds nothing to send.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

import nats.errors as nats_errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.aio.transport import TcpTransport
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

log = logging.getLogger(__name__)

_CRLF = b"\r\n"
_WHITESPACE = re.compile(r"\s")
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_NO_RESPONDERS = "503"
# Tokens of nats-py's own requests are 26 characters (a NUID and 4 hex digits); these
# start with "q" and are far shorter, so the two never meet in ``_resp_map``.
_TOKEN_PREFIX = "q"
_TOKEN_PREFIX_BYTES = _TOKEN_PREFIX.encode()
# Statuses that end a pull for one without a message (nats-py: a timeout to retry).
_TEMPORARY = (
    js_api.StatusCode.NO_MESSAGES,
    js_api.StatusCode.CONFLICT,
    js_api.StatusCode.REQUEST_TIMEOUT,
)


def header_block(headers: dict[str, str]) -> bytes:
    """NATS headers as sent in ``HPUB`` (``NATS/1.0``, ``Name: value`` lines, a blank
    line). Names are Squall's own constants; values have CR and LF replaced by spaces,
    as nats-py does."""
    lines = [b"NATS/1.0"]
    for name, value in headers.items():
        lines.append(f"{name}: {value.strip().translate(_NEWLINES)}".encode())
    return _CRLF.join(lines) + _CRLF + _CRLF


def _expire(future: asyncio.Future[Msg]) -> None:
    if not future.done():
        future.set_exception(nats_errors.TimeoutError())


class LeanClient(Client):
    """nats-py's ``Client`` with :meth:`lean_request`, :meth:`lean_publish` and a faster
    header parser (see the module docstring)."""

    _lean_requests = 0
    # The write callback of this loop iteration, if one is scheduled.
    _lean_write: asyncio.Handle | None = None
    # The response subscription's id and reply subjects' prefix (``_init_request_sub``).
    _lean_resp_sid = -1
    _lean_reply_prefix = ""

    # Subscriptions whose messages the read loop hands to a function (lean_subscribe).
    _lean_handlers: dict[int, Callable[[Msg], None]] | None = None

    async def lean_subscribe(
        self, subject: str, handler: Callable[[Msg], None], *, queue: str = ""
    ) -> Subscription:
        """``subscribe(subject, queue=queue, cb=...)`` with ``handler`` called by the
        read loop with each message, at once. ``handler`` must not block, and what it
        raises is logged and dropped (as nats-py's subscription task does with its
        callback's errors)."""
        if self._lean_handlers is None:
            self._lean_handlers = {}
        # Without a callback, nats-py keeps the messages it gets for an iterator: none
        # reach it here (``_process_msg`` takes them first). The handler is in place
        # before the SUB can go out: ``subscribe`` gives the next sid and queues the SUB
        # before its first await, then may suspend in its flush (a full flush queue),
        # and a message arriving meanwhile must reach the handler, not that iterator.
        sid = self._sid + 1
        self._lean_handlers[sid] = handler
        try:
            sub = await self.subscribe(subject, queue=queue)
        except BaseException:
            self._lean_handlers.pop(sid, None)
            raise
        assert sub._id == sid  # nothing ran between the guess and ``subscribe``'s count
        return sub

    def lean_handle(self, sub: Subscription, handler: Callable[[Msg], None]) -> None:
        """Have the read loop call ``handler`` with each message of ``sub`` from now on,
        as for :meth:`lean_subscribe` (for a subscription made otherwise: a pull
        subscription's inbox, before its first pull request goes out)."""
        if self._lean_handlers is None:
            self._lean_handlers = {}
        self._lean_handlers[sub._id] = handler

    def lean_forget(self, sub: Subscription) -> None:
        """Stop calling the handler of :meth:`lean_handle` (at once)."""
        if self._lean_handlers is not None:
            self._lean_handlers.pop(sub._id, None)

    async def lean_unsubscribe(self, sub: Subscription) -> None:
        """End a subscription of :meth:`lean_subscribe` (its handler is forgotten at
        once, even if the server cannot be told)."""
        if self._lean_handlers is not None:
            self._lean_handlers.pop(sub._id, None)
        await sub.unsubscribe()

    async def _init_request_sub(self) -> None:
        await super()._init_request_sub()
        assert self._resp_sub_prefix is not None
        self._lean_reply_prefix = self._resp_sub_prefix.decode()
        mux = f"{self._lean_reply_prefix}*"
        for sid, sub in self._subs.items():
            if sub.subject == mux:
                self._lean_resp_sid = sid

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        """nats-py's, except for the answer to a lean request: its future is resolved
        here, in the read loop, where nats-py would queue the answer for the response
        subscription's task to resolve in a later step. (A late answer, its request
        gone, is dropped as nats-py drops it.)"""
        handlers = self._lean_handlers
        if handlers is not None:
            handler = handlers.get(sid)
            if handler is not None:
                if sid not in self._subs:  # unsubscribed meanwhile
                    del handlers[sid]
                    return
                self.stats["in_msgs"] += 1
                self.stats["in_bytes"] += len(data)
                hdr = await self._process_headers(headers)
                try:
                    handler(self._build_message(sid, subject, reply, data, hdr))
                except Exception:
                    log.exception("a NATS message handler failed")
                return
        if sid == self._lean_resp_sid:
            token = subject[len(self._lean_reply_prefix) :]
            if token[:1] == _TOKEN_PREFIX_BYTES:
                self.stats["in_msgs"] += 1
                self.stats["in_bytes"] += len(data)
                future = self._resp_map.get(token.decode())
                if future is not None and not future.done():
                    hdr = await self._process_headers(headers)
                    future.set_result(self._build_message(sid, subject, reply, data, hdr))
                return
        await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]

    async def lean_request(
        self, subject: str, payload: bytes, header: bytes | None, timeout: float
    ) -> Msg:
        """``request(subject, payload, headers=..., timeout=...)`` with the header block
        already built (``header_block``), or none."""
        prefix = self._lean_reply_prefix
        if not prefix:
            if self._resp_sub_prefix is None:
                await self._init_request_sub()
            # Another request's ``_init_request_sub`` may still be subscribing (nats-py
            # sets the prefix, then awaits the SUB's flush): the prefix is already the
            # one to answer to, and the SUB goes out before this request's PUB. An
            # answer arriving before that init ends takes nats-py's path to its future.
            assert self._resp_sub_prefix is not None
            prefix = self._resp_sub_prefix.decode()
        self._lean_requests += 1
        token = f"{_TOKEN_PREFIX}{self._lean_requests}"
        reply = f"{prefix}{token}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._resp_map[token] = future
        try:
            await self.lean_publish(subject, payload, header, reply)
            timer = loop.call_later(timeout, _expire, future)
            try:
                msg = await future
            finally:
                timer.cancel()
        finally:
            self._resp_map.pop(token, None)
        if msg.headers and msg.headers.get(js_api.Header.STATUS) == _NO_RESPONDERS:
            raise nats_errors.NoRespondersError
        return msg

    async def lean_publish(
        self, subject: str, payload: bytes, header: bytes | None = None, reply: str = ""
    ) -> None:
        """``publish`` of Squall's own subjects (valid by construction: not validated
        again) with the header block already built, or none."""
        self.lean_send(subject, payload, header, reply)

    def lean_send(
        self, subject: str, payload: bytes, header: bytes | None = None, reply: str = ""
    ) -> None:
        """:meth:`lean_publish` without a coroutine: for code that must not await (a
        handler called by the read loop). Queued the same way, so the order of every
        send of one loop iteration holds whichever of the two made it."""
        if self.is_closed:
            raise nats_errors.ConnectionClosedError
        if self.is_draining_pubs:
            raise nats_errors.ConnectionDrainingError
        size = len(payload)
        if not self.is_connected:
            # No reconnect buffer (the bus's ``pending_size=0``): fail at once.
            raise nats_errors.OutboundBufferLimitError
        if size > self._max_payload:
            raise nats_errors.MaxPayloadError
        if header is None:
            command = f"PUB {subject} {reply} {size}\r\n".encode() + payload + _CRLF
        else:
            total = len(header) + size
            command = (
                f"HPUB {subject} {reply} {len(header)} {total}\r\n".encode()
                + header
                + payload
                + _CRLF
            )
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += size
        # As ``_send_command`` (no reconnect buffer: ``_max_pending_size`` is unused).
        self._pending.append(command)
        self._pending_data_size += len(command)
        if self._lean_write is None:
            self._lean_write = asyncio.get_running_loop().call_soon(self._write_pending)

    def _write_pending(self) -> None:
        """Send what ``_pending`` holds (this loop iteration's commands) in one system
        call, unless nats-py's flusher must: a backlog on the socket (its ``drain``
        waits for it), a transport other than TCP, a write that failed (its error
        handling: the connection is then treated as lost)."""
        self._lean_write = None
        if not self._pending_data_size or not self.is_connected:
            # Sent meanwhile by the flusher; or disconnected: kept for nats-py, as its
            # ``_flush_pending`` does.
            return
        transport = self._transport
        if type(transport) is TcpTransport:
            writer = transport._io_writer
            if writer is not None and not writer.transport.get_write_buffer_size():
                try:
                    writer.writelines(self._pending)
                except (OSError, RuntimeError):
                    pass  # (a closed transport) the flusher meets it and handles it
                else:
                    self._pending = []
                    self._pending_data_size = 0
                    return
        if self._flush_queue is not None and self._flush_queue.empty():
            self._flush_queue.put_nowait(asyncio.get_running_loop().create_future())

    async def lean_fetch_one(self, sub: JetStreamContext.PullSubscription, wait_s: float) -> Msg:
        """``sub.fetch(1, timeout=wait_s)[0]``: a message already delivered to ``sub``,
        else a pull request for one that expires after ``wait_s``, and its message —
        without nats-py's task, ``uuid4`` and ``wait_for`` per wait (``next_msg``) or a
        ``json.dumps`` per request. Status messages as nats-py treats them: a heartbeat
        is skipped, no message / conflict / request timeout is ``TimeoutError``, any
        other is the server's ``APIError``. A connection closed meanwhile is
        ``ConnectionClosedError`` when the pull's wait ends."""
        inner = sub._sub
        queue = inner._pending_queue
        while not queue.empty():
            msg = queue.get_nowait()
            inner._pending_size -= len(msg.data)
            if JetStreamContext.is_status_msg(msg) is None:
                return msg  # (statuses left here were meant for earlier pulls)
        expires = int(wait_s * 1_000_000_000) - 100_000
        await self.lean_publish(sub._nms, b'{"batch":1,"expires":%d}' % expires, None, sub._deliver)
        try:
            async with asyncio.timeout(wait_s):
                while True:
                    msg = await queue.get()
                    inner._pending_size -= len(msg.data)
                    queue.task_done()
                    status = JetStreamContext.is_status_msg(msg)
                    if status is None:
                        return msg
                    if status == js_api.StatusCode.CONTROL_MESSAGE:
                        continue
                    if status in _TEMPORARY:
                        raise nats_errors.TimeoutError
                    raise js_errors.APIError.from_msg(msg)
        except TimeoutError:
            if self.is_closed:  # closed meanwhile: say so, not "no message"
                raise nats_errors.ConnectionClosedError from None
            raise

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        """nats-py's parser of a header block, with the same results (lines without a
        colon, names not ASCII or holding whitespace are skipped; values stripped and
        decoded as UTF-8 with replacement), without a generator per name."""
        out: dict[str, str] = {}
        for line in raw.split(_CRLF):
            name, colon, value = line.partition(b":")
            if not colon:
                continue
            try:
                key = name.strip().decode("ascii")
            except UnicodeDecodeError:
                continue
            if _WHITESPACE.search(key) is not None:
                continue
            out[key] = value.strip().decode("utf-8", "replace")
        return out
