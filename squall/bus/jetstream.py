"""Squall's JetStream layout: which stream holds a topic, subject and consumer names,
and creating (or upgrading) streams and consumers idempotently.

::

    stream SQUALL_ACTIVATIONS   subjects invoker.>     work queue, file storage
    stream SQUALL_COMPLETIONS   subjects completed.>   work queue, file storage, short max age
    durable pull consumer per topic, filter subject = the topic (invoker.0 -> "invoker_0")

Completion topics also take *direct hand-offs* (``Layout.direct_subject``): a core NATS
subject ``direct.<topic>`` each consumer of the topic listens on (one queue group), so a
sender may hand a message straight to a live consumer instead of storing it (see
``nats.py``, ``send(direct=True)``). Nothing is stored under it: no stream captures it.

A *work queue* stream keeps a message until a consumer acknowledges it, and allows one
consumer per subject: every process that consumes ``invoker.0`` binds to the same
durable consumer, so they share one queue. Both streams deduplicate on ``Nats-Msg-Id``
within their duplicate window.

Key-value buckets (streams ``KV_<bucket>``) hold state the controllers share: the
throttles' counts (``bus/nats_counters.py``); their names are in ``BUCKETS``.

A ``prefix`` (tests: a random token) goes in front of every subject and stream name, so
several deployments or test runs share one server without seeing each other.

Concurrency: several processes may connect at once. Creating a stream or a consumer with
a configuration equal to the existing one succeeds on the server, so racing creators all
succeed; a differing existing stream is updated to ours (the last process to connect
wins, which is what an upgrade wants). A consumer created again with other settings (ack
wait, max deliveries) takes the last creator's settings on nats-server 2.9; a server
that refuses the change leaves the existing consumer, which is then used as it is. The
processes of one cluster are meant to share these settings.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from squall.errors import ProviderError

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
#: Key-value buckets Squall keeps (without the prefix): per-minute throttle counts, and
#: activations in flight per namespace (bus/nats_counters.py).
BUCKETS = ("throttle-minutes", "throttle-inflight")
_SUBJECT_TAIL = re.compile(r"^[^\s*>.]+(\.[^\s*>.]+)*$")
#: Routes a layout keeps (a member uses a few topics: its own, one per invoker).
_ROUTES_KEPT = 4096


@dataclass(frozen=True, slots=True)
class StreamSpec:
    family: str  # first token of the topics it holds
    name: str  # stream name without prefix
    max_age_s: float  # 0 = messages wait for ever
    direct: bool = False  # its topics' consumers take direct hand-offs too


@dataclass(frozen=True, slots=True)
class Route:
    """Where a topic lives: its stream, its subject and its durable consumer."""

    stream: str
    subject: str
    durable: str


def durable_name(topic: str) -> str:
    """A consumer name for ``topic``: consumer names cannot hold ``.``, so ``.`` becomes
    ``_`` and anything else outside ``[A-Za-z0-9]`` is escaped as ``-xx`` (hex)."""
    out = []
    for char in topic:
        if char == ".":
            out.append("_")
        elif char.isascii() and char.isalnum():
            out.append(char)
        else:
            out.append("".join(f"-{b:02x}" for b in char.encode()))
    return "".join(out)


class Layout:
    """Names of everything Squall keeps on a JetStream server, for one ``prefix``."""

    def __init__(
        self,
        *,
        prefix: str = "",
        dedup_window_s: float = 120.0,
        activation_max_age_s: float = 7 * 24 * 3600.0,
        completion_max_age_s: float = 600.0,
    ) -> None:
        if prefix and not _TOKEN.match(prefix):
            raise ProviderError(f"NATS prefix {prefix!r}: letters, digits, '_' and '-' only")
        self.prefix = prefix
        self.dedup_window_s = dedup_window_s
        self._routes: dict[str, Route] = {}
        self.streams = (
            StreamSpec("invoker", "SQUALL_ACTIVATIONS", activation_max_age_s),
            StreamSpec("completed", "SQUALL_COMPLETIONS", completion_max_age_s, direct=True),
        )

    def stream_name(self, spec: StreamSpec) -> str:
        return f"{self.prefix}_{spec.name}" if self.prefix else spec.name

    def bucket_name(self, name: str) -> str:
        """The key-value bucket ``name`` (one of ``BUCKETS``) of this layout."""
        if name not in BUCKETS:
            raise ProviderError(f"bucket {name!r}: not one of Squall's ({', '.join(BUCKETS)})")
        return f"{self.prefix}_{name}" if self.prefix else name

    def subject(self, name: str) -> str:
        """The NATS subject of a topic or broadcast subject."""
        return f"{self.prefix}.{name}" if self.prefix else name

    def route(self, topic: str) -> Route:
        """Where ``topic`` lives (``ProviderError`` for a topic no stream holds). Kept per
        topic once found: every send and pull asks again."""
        route = self._routes.get(topic)
        if route is None:
            route = self._find_route(topic)
            if len(self._routes) >= _ROUTES_KEPT:
                self._routes.clear()  # topics are a few per member; this only bounds it
            self._routes[topic] = route
        return route

    def _find_route(self, topic: str) -> Route:
        family, _, rest = topic.partition(".")
        if not rest or not _SUBJECT_TAIL.match(rest):
            raise ProviderError(f"topic {topic!r}: expected <family>.<id> without wildcards")
        for spec in self.streams:
            if spec.family == family:
                return Route(self.stream_name(spec), self.subject(topic), durable_name(topic))
        families = ", ".join(s.family for s in self.streams)
        raise ProviderError(f"topic {topic!r}: no stream holds {family!r} (only {families})")

    def direct_subject(self, topic: str) -> str | None:
        """The core NATS subject on which ``topic``'s consumers take direct hand-offs, or
        None when its stream's topics take none (an invoker's queue: its messages must
        be stored before anyone may count on them)."""
        family = topic.partition(".")[0]
        for spec in self.streams:
            if spec.family == family and spec.direct:
                self.route(topic)  # validates the topic
                return self.subject(f"direct.{topic}")
        return None

    def broadcast_subject(self, subject: str) -> str:
        if not _SUBJECT_TAIL.match(subject):
            raise ProviderError(f"subject {subject!r}: no wildcards or empty tokens")
        return self.subject(subject)

    def stream_config(self, spec: StreamSpec) -> js_api.StreamConfig:
        # The duplicate window cannot be longer than the time a message is kept.
        window = self.dedup_window_s
        if spec.max_age_s:
            window = min(window, spec.max_age_s)
        return js_api.StreamConfig(
            name=self.stream_name(spec),
            subjects=[self.subject(f"{spec.family}.>")],
            retention=js_api.RetentionPolicy.WORK_QUEUE,
            storage=js_api.StorageType.FILE,
            max_age=spec.max_age_s,
            duplicate_window=window,
            num_replicas=1,
        )

    def consumer_config(
        self, route: Route, *, ack_wait_s: float, max_deliver: int
    ) -> js_api.ConsumerConfig:
        return js_api.ConsumerConfig(
            durable_name=route.durable,
            filter_subject=route.subject,
            deliver_policy=js_api.DeliverPolicy.ALL,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
        )


def _same_stream(have: js_api.StreamConfig, want: js_api.StreamConfig) -> bool:
    return (
        sorted(have.subjects or []) == sorted(want.subjects or [])
        and have.retention == want.retention
        and have.storage == want.storage
        and abs((have.max_age or 0) - (want.max_age or 0)) < 1e-3
        and abs((have.duplicate_window or 0) - (want.duplicate_window or 0)) < 1e-3
    )


async def ensure_streams(js: JetStreamContext, layout: Layout) -> None:
    """Create the layout's streams, or bring existing ones to its configuration."""
    for spec in layout.streams:
        want = layout.stream_config(spec)
        assert want.name is not None
        try:
            info = await js.stream_info(want.name)
        except js_errors.NotFoundError:
            try:
                # Racing creators with the same configuration all succeed.
                await js.add_stream(want)
                continue
            except js_errors.BadRequestError as refused:
                # Another process created it in between with another configuration
                # ("stream name already in use"): read it and upgrade it as below. Refused
                # for any other reason, there is no such stream: the refusal is the error.
                try:
                    info = await js.stream_info(want.name)
                except js_errors.NotFoundError:
                    raise refused from None
        if not _same_stream(info.config, want):
            log.info("updating JetStream stream %s to this version's configuration", want.name)
            await js.update_stream(want)


async def ensure_consumer(
    js: JetStreamContext, layout: Layout, route: Route, *, ack_wait_s: float, max_deliver: int
) -> None:
    """Create ``route``'s durable consumer, or update it to these settings."""
    want = layout.consumer_config(route, ack_wait_s=ack_wait_s, max_deliver=max_deliver)
    try:
        await js.add_consumer(route.stream, want)
    except js_errors.BadRequestError:
        # Exists with another configuration (another process's settings): use it.
        info = await js.consumer_info(route.stream, route.durable)
        log.info("JetStream consumer %s exists with ack_wait %s s, max_deliver %s; using it",
                 route.durable, info.config.ack_wait, info.config.max_deliver)  # fmt: skip


class AckedIds:
    """Message ids (``Nats-Msg-Id``) this process acknowledged recently, per stream.

    Why: a JetStream server killed without a clean shutdown (SIGKILL, power loss) may
    come back without the acknowledgements of its last moments — nats-server 2.9 writes
    the removal of acknowledged work-queue messages lazily — and deliver those messages
    again, as first deliveries. A process remembers the id once its ack is confirmed
    (``Delivery.ack``) or, for an unconfirmed ack (``ack_unconfirmed``: the invoker's,
    sent beside the started mark), once that ack is sent — taken as recorded — and drops
    such a message (acknowledging it again) instead of running it twice. So an
    unconfirmed ack lost on the way also makes the redelivery it causes dropped here
    (docs/cluster.md says what then brings the activation back). Ids are kept
    ``keep_s`` seconds and at most ``limit`` of them, oldest forgotten first; another
    process's acks are not known here.
    """

    def __init__(self, *, keep_s: float = 3600.0, limit: int = 100_000) -> None:
        self._keep_s = keep_s
        self._limit = limit
        self._ids: OrderedDict[tuple[str, str], float] = OrderedDict()

    def add(self, stream: str, msg_id: str) -> None:
        now = time.monotonic()
        self._ids[(stream, msg_id)] = now
        self._ids.move_to_end((stream, msg_id))
        while self._ids:
            oldest, acked = next(iter(self._ids.items()))
            if now - acked < self._keep_s and len(self._ids) <= self._limit:
                break
            del self._ids[oldest]

    def __contains__(self, item: tuple[str, str]) -> bool:
        acked = self._ids.get(item)
        return acked is not None and time.monotonic() - acked < self._keep_s
