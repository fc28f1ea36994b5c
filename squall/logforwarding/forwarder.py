"""Forwarding activation logs to a namespace's destination, off the invoke path.

The controller calls :meth:`LogForwarder.submit` for every completion it receives (one
listener of ``CompletionWaiters``): it copies the record's log lines into the namespace's
*lane* and returns, without I/O. Each lane with lines has one task that sends them in
batches to the namespace's destination (letting lines gather for ``linger_s`` when a batch
is not full, so one request carries many activations' lines), retrying a failed batch
with backoff.

Guarantees:

- ``submit`` never awaits, never raises, and costs a dict look-up for a namespace known to
  forward nowhere (its configuration is cached; past ``config_ttl_s`` it is read again in
  the background, so a destination set through another controller applies within about
  ``config_ttl_s``): a slow or dead destination never slows or breaks an invocation.
- The lines waiting in all lanes never exceed ``buffer_lines``: a record whose lines do
  not fit is dropped as a whole, counted in ``/metrics``
  (``squall_controller_log_forwarding_dropped_lines_total{reason="buffer_full"}``) and
  reported by ``GET …/logForwarding/errors``.
- A batch is sent at most ``attempts`` times (``backoff_s`` doubling in between, each
  request bounded by ``timeout_s``); a batch that never got a 2xx is dropped and counted
  (``reason="destination_failed"``), with the destination's answer as the error.
- Lanes are independent: a dead destination of one namespace delays only its own lines.
- Lines are sent in the order their completions arrived, per namespace; none is sent
  twice by this controller (a retry after a timeout may duplicate one at the receiver).
- ``close`` cancels the lanes; lines still waiting are counted as dropped
  (``reason="shutdown"``). Errors are kept in memory, per controller (the last
  :data:`MAX_ERRORS` per namespace), and cleared when the namespace's configuration changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from squall.entities.activation import Activation
from squall.errors import Conflict, NotFound
from squall.logforwarding.config import LogForwardingConfig, iso_time
from squall.logforwarding.destinations import Destination, LogEntry, destination_of
from squall.metrics.controller import ControllerMetrics
from squall.store.contracts import LOG_FORWARDING, EntityStore

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("squall.logforwarding")

#: The document name of a namespace's configuration in :data:`LOG_FORWARDING`.
CONFIG_NAME = "config"
MAX_ERRORS = 50
BUFFER_FULL, DESTINATION_FAILED, SHUTDOWN = "buffer_full", "destination_failed", "shutdown"


@dataclass(frozen=True)
class ForwardingLimits:
    buffer_lines: int = 10_000
    batch_lines: int = 500
    attempts: int = 3
    backoff_s: float = 0.5
    timeout_s: float = 5.0
    config_ttl_s: float = 5.0
    idle_s: float = 30.0
    # How long a lane lets lines gather before sending a batch that is not full: one
    # request carries the logs of many activations, not one request per activation.
    linger_s: float = 0.25


@dataclass
class _Lane:
    """One namespace's waiting lines and the task sending them."""

    entries: deque[LogEntry] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


def entries_of(record: Activation) -> list[LogEntry]:
    """The log lines of an activation record, parsed from OpenWhisk's line format
    (``<ISO time> <stream>: <text>``); a line in another shape keeps its text whole."""
    lines = record.logs
    if not lines:
        return []
    namespace = record.namespace
    annotated = record.annotation("path")
    path = str(annotated) if annotated is not None else f"{namespace}/{record.name}"
    activation_id = record.activation_id
    start = record.start
    out = []
    for line in lines:
        time_ms, stream, text = _parse(str(line), start)
        out.append(LogEntry(activation_id, namespace, path, time_ms, stream, text))
    return out


def _parse(line: str, default_ms: int) -> tuple[int, str, str]:
    stamp, _, rest = line.partition(" ")
    stream, sep, text = rest.partition(": ")
    if not sep or stream not in ("stdout", "stderr"):
        return default_ms, "stdout", line
    try:
        # Nanoseconds do not parse: seconds and the first six digits of the fraction do.
        whole, _, fraction = stamp.rstrip("Z").partition(".")
        moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        micros = int((fraction + "000000")[:6])
    except ValueError:
        return default_ms, "stdout", line
    return int(moment.timestamp() * 1000) + micros // 1000, stream, text


class LogForwarder:
    """See the module docstring."""

    def __init__(
        self,
        entities: EntityStore,
        metrics: ControllerMetrics,
        *,
        azure_url: str,
        limits: ForwardingLimits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entities = entities
        self._metrics = metrics
        self._azure_url = azure_url
        self._limits = limits or ForwardingLimits()
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._configs: dict[str, tuple[float, LogForwardingConfig]] = {}
        self._lanes: dict[str, _Lane] = {}
        self._errors: dict[str, deque[str]] = {}
        self._buffered = 0
        self._closed = False
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- configuration -------------------------------------------------------------------

    async def config(self, namespace: str) -> LogForwardingConfig:
        """The namespace's configuration (the default when it has none), from the store."""
        try:
            doc = await self._entities.get(namespace, LOG_FORWARDING, CONFIG_NAME)
        except NotFound:
            found = LogForwardingConfig.default()
        else:
            found = LogForwardingConfig.from_body(doc.body)
        self._configs[namespace] = (self._clock(), found)
        return found

    async def set_config(self, namespace: str, config: LogForwardingConfig) -> None:
        """Store the namespace's configuration (its settings encrypted by the store), and
        start afresh: its errors are cleared, its lines go to the new destination."""
        body = config.to_body()
        for attempt in range(5):
            try:
                current = await self._entities.get(namespace, LOG_FORWARDING, CONFIG_NAME)
            except NotFound:
                current = None
            try:
                rev = None if current is None else current.rev
                await self._entities.put(namespace, LOG_FORWARDING, CONFIG_NAME, body, rev)
                break
            except Conflict:  # another controller wrote it in between: the last one wins
                if attempt == 4:
                    raise
        self._configs[namespace] = (self._clock(), config)
        self._errors.pop(namespace, None)

    def errors(self, namespace: str) -> list[str]:
        return list(self._errors.get(namespace, ()))

    def _cached(self, namespace: str) -> LogForwardingConfig | None:
        cached = self._configs.get(namespace)
        if cached is None or self._clock() - cached[0] > self._limits.config_ttl_s:
            return None
        return cached[1]

    def _refresh(self, namespace: str) -> None:
        if namespace in self._refreshing:
            return
        self._refreshing.add(namespace)

        async def refresh() -> None:
            try:
                await self.config(namespace)
            except Exception as error:  # the store is down: the stale answer stays
                log.warning("log forwarding of %s: no configuration: %r", namespace, error)
                self._configs[namespace] = (self._clock(), self._configs[namespace][1])
            finally:
                self._refreshing.discard(namespace)

        task = asyncio.get_running_loop().create_task(refresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the completion path -------------------------------------------------------------

    def submit(self, record: Activation) -> None:
        """Queue the record's log lines for forwarding; see the guarantees."""
        if not record.logs:
            return  # nothing to forward (most records: checked before anything else)
        try:
            self._submit(record)
        except Exception:  # never into the completion path
            log.exception("log forwarding could not take a record")

    def _submit(self, record: Activation) -> None:
        if self._closed:
            return
        namespace = record.namespace
        cached = self._cached(namespace)
        if cached is None:
            stale = self._configs.get(namespace)
            if stale is not None and not stale[1].forwards:
                # Known to forward nowhere, but not lately: check again in the background
                # and skip this record (a destination set on another controller applies
                # from the refresh on).
                self._refresh(namespace)
                return
        elif not cached.forwards:
            return
        entries = entries_of(record)
        if not entries:
            return
        if self._buffered + len(entries) > self._limits.buffer_lines:
            destination = cached.destination if cached is not None else "unknown"
            self._metrics.log_lines_dropped(destination, BUFFER_FULL, len(entries))
            self._error(
                namespace,
                destination,
                f"{len(entries)} log lines of activation {record.activation_id} "
                f"dropped: the forwarding buffer ({self._limits.buffer_lines} lines) is full",
            )
            return
        lane = self._lanes.get(namespace)
        if lane is None:
            lane = self._lanes[namespace] = _Lane()
        lane.entries.extend(entries)
        self._buffered += len(entries)
        lane.wake.set()
        if lane.task is None or lane.task.done():
            lane.task = asyncio.get_running_loop().create_task(
                self._run_lane(namespace, lane), name=f"log-forwarding {namespace}"
            )

    # -- lanes -----------------------------------------------------------------------------

    async def _run_lane(self, namespace: str, lane: _Lane) -> None:
        while True:
            if not lane.entries:
                lane.wake.clear()
                try:
                    await asyncio.wait_for(lane.wake.wait(), self._limits.idle_s)
                except TimeoutError:
                    if not lane.entries:
                        # Idle: the lane goes; submit makes a new one when lines come.
                        if self._lanes.get(namespace) is lane:
                            del self._lanes[namespace]
                        return
                continue
            config = self._cached(namespace)
            if config is None:
                try:
                    config = await self.config(namespace)
                except Exception as error:  # the store is down: keep the lines, wait
                    log.warning("log forwarding of %s: no configuration: %r", namespace, error)
                    await asyncio.sleep(self._limits.backoff_s)
                    continue
            if len(lane.entries) < self._limits.batch_lines:
                await asyncio.sleep(self._limits.linger_s)
            batch = [
                lane.entries.popleft()
                for _ in range(min(len(lane.entries), self._limits.batch_lines))
            ]
            destination = destination_of(config, self._azure_url)
            try:
                if destination is not None:
                    await self._send(namespace, destination, batch)
            except asyncio.CancelledError:
                # Closing while the batch was on its way: it counts as not delivered.
                if destination is not None:
                    self._metrics.log_lines_dropped(destination.name, SHUTDOWN, len(batch))
                raise
            finally:
                self._buffered -= len(batch)

    async def _send(self, namespace: str, destination: Destination, batch: list[LogEntry]) -> None:
        limits = self._limits
        problem = ""
        for attempt in range(limits.attempts):
            if attempt:
                await asyncio.sleep(limits.backoff_s * 2 ** (attempt - 1))
            request = destination.request(batch, time.time())
            try:
                answer = await self._http().post(
                    request.url, content=request.body, headers=request.headers
                )
            except Exception as error:  # refused, timed out, TLS, a URL httpx rejects
                problem = f"POST {request.url}: {type(error).__name__}: {error}".rstrip(": ")
                continue
            if answer.is_success:
                self._metrics.log_lines_forwarded(destination.name, len(batch))
                return
            problem = f"POST {request.url}: {answer.status_code} {answer.text[:200]}".rstrip()
        self._metrics.log_lines_dropped(destination.name, DESTINATION_FAILED, len(batch))
        self._error(
            namespace,
            destination.name,
            f"{len(batch)} log lines dropped after {limits.attempts} attempts: {problem}",
        )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Imported on the first forwarded batch: httpx (with the rich and pygments
            # its command line pulls in) costs a server ~4 MB that forwards nothing.
            import httpx

            self._client = httpx.AsyncClient(
                transport=self._transport, timeout=self._limits.timeout_s
            )
        return self._client

    def _error(self, namespace: str, destination: str, message: str) -> None:
        now_ms = int(time.time() * 1000)
        errors = self._errors.setdefault(namespace, deque(maxlen=MAX_ERRORS))
        errors.append(f"{iso_time(now_ms)} {destination}: {message}")

    # -- lifecycle -------------------------------------------------------------------------

    def pending(self) -> int:
        """Lines waiting to be sent (all lanes)."""
        return self._buffered

    async def close(self) -> None:
        """Stop every lane; the lines still waiting are counted as dropped."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        lanes = list(self._lanes.items())
        self._lanes.clear()
        for _, lane in lanes:
            if lane.task is not None:
                lane.task.cancel()
        for namespace, lane in lanes:
            if lane.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
            if lane.entries:
                cached = self._cached(namespace)
                destination = cached.destination if cached is not None else "unknown"
                self._metrics.log_lines_dropped(destination, SHUTDOWN, len(lane.entries))
        if self._client is not None:
            await self._client.aclose()
