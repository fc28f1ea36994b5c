"""Throttle counts shared by a cluster's controllers, in NATS JetStream key-value buckets
(a :class:`~squall.bus.counters.ThrottleCounters`).

Per-minute windows — bucket ``throttle-minutes``, key ``<window>.<namespace>.<minute>``
holding the number of admitted attempts (entries expire 120 s after their last write;
only the current minute's is ever read). An attempt reads nothing when it can: each
controller remembers the count and revision it last saw and writes ``count + 1`` *if the
revision is still that one* (``update(last=revision)``; ``create`` for a new minute). A
write that lost the race (another controller wrote first) reads the key and tries again,
so across the cluster at most ``allowed`` attempts per window and minute are admitted —
exactly, not approximately. Once a controller has seen the window full, it refuses the
rest of that minute without any I/O: a throttled request costs a dict lookup. Refused
attempts are not written (that would make throttling cost a write); the count in a 429
message is this controller's view: ``allowed`` plus the refusals it saw.

Activations in flight — bucket ``throttle-inflight``, one key per namespace holding
``{incarnation: [count, stamp]}``, where an incarnation is one run of one controller
(``<controller id>-<random>``) and ``stamp`` the wall-clock second it last wrote. The
truth of a controller's own count is in its memory (ids it started and has not seen end);
every write replaces its entry with that truth by compare-and-set (read, change, write
if unchanged), dropping entries whose stamp is older than ``STALE_S``. It writes:

- when an activation starts (awaited: once the invoke returns, the others see it),
- soon after one ends (a background task, coalescing; completions arrive on a listener
  that cannot await),
- every ``REFRESH_S`` for each namespace it holds activations of (new stamp), and at
  ``close`` (its entries removed).

``in_flight`` is one read: the others' fresh entries plus this controller's own count.
A controller that dies stops counting ``STALE_S`` after its last refresh: its slots are
not lost for ever (no leak), and until then they are held (fewer admitted, never more).
Since writes are the whole truth, a failed write (NATS away) is repaired by the next one.
Stamps compare wall clocks of different machines: keep them in sync (NTP) within
``STALE_S - REFRESH_S``. Bounds and the rest of the design: docs/cluster.md.

Concurrency: everything runs on the controller's event loop; the dicts need no lock, and
every shared write is a compare-and-set, so controllers need no lock either.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import nats.errors as nats_errors
from nats.js import errors as js_errors
from nats.js.kv import KeyValue

from squall.bus.counters import InFlight
from squall.bus.nats import NatsBus
from squall.bus.nats_consumer import ANY_NATS
from squall.errors import ProviderError

log = logging.getLogger("squall.throttle")

MINUTES, INFLIGHT = "throttle-minutes", "throttle-inflight"
MINUTE_KEEP_S = 120.0
#: A controller rewrites its in-flight entries this often; entries not rewritten for
#: STALE_S are a dead controller's and no longer count.
REFRESH_S = 10.0
STALE_S = 30.0
#: Compare-and-set attempts before giving up (503): far more than two controllers racing
#: for one key ever need.
MAX_TRIES = 100
#: What a server that has no bucket (stream) answers.
BUCKET_GONE: tuple[type[BaseException], ...] = (
    nats_errors.NoRespondersError,
    js_errors.NoStreamResponseError,
    js_errors.NotFoundError,
)


def key_token(namespace: str) -> str:
    """A namespace as a key token (namespaces may hold ``@`` or spaces; keys may not)."""
    return base64.urlsafe_b64encode(namespace.encode("utf-8")).decode("ascii").rstrip("=")


class NatsCounters:
    def __init__(
        self,
        minutes: KeyValue,
        inflight: KeyValue,
        controller_id: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._minutes = minutes
        self._inflight = inflight
        self._clock = clock
        self.incarnation = f"{controller_id}-{secrets.token_hex(4)}"
        # (window, namespace) → (minute, count, revision) last seen or written.
        self._seen: dict[tuple[str, str], tuple[int, int, int]] = {}
        # (window, namespace) → (minute, allowed, refusals): known full this minute.
        self._full: dict[tuple[str, str], tuple[int, int, int]] = {}
        self._local = InFlight()
        self._holders: dict[str, tuple[dict[str, Any], int]] = {}  # last read, by namespace
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Set by ``open``: a server that lost the buckets (restarted without its store)
        # gets them created again on the next operation, as the bus does its streams.
        self._bus: NatsBus | None = None
        self._lost = False

    @classmethod
    async def open(
        cls, bus: NatsBus, controller_id: str, *, clock: Callable[[], float] = time.time
    ) -> NatsCounters:
        minutes = await bus.key_value(MINUTES, max_age_s=MINUTE_KEEP_S)
        # Refreshed every REFRESH_S while held: an entry outlives its writer by twice STALE_S.
        inflight = await bus.key_value(INFLIGHT, max_age_s=2 * STALE_S)
        counters = cls(minutes, inflight, controller_id, clock=clock)
        counters._bus = bus
        counters.start()
        return counters

    async def _ensure_buckets(self) -> None:
        if not self._lost or self._bus is None:
            return
        self._minutes = await self._bus.key_value(MINUTES, max_age_s=MINUTE_KEEP_S)
        self._inflight = await self._bus.key_value(INFLIGHT, max_age_s=2 * STALE_S)
        self._seen.clear()
        self._holders.clear()
        self._dirty.update(self._local.namespaces())  # write this controller's truth again
        self._wake.set()
        self._lost = False
        log.warning("throttle buckets created again on NATS")

    def _failed(self, error: BaseException) -> None:
        if isinstance(error, BUCKET_GONE):
            self._lost = True

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._sync_loop(), name="throttle-sync"),
            asyncio.create_task(self._refresh_loop(), name="throttle-refresh"),
        ]

    # -- per-minute windows ---------------------------------------------------------

    async def hit(self, window: str, namespace: str, minute: int, allowed: int) -> int:
        slot = (window, namespace)
        full = self._full.get(slot)
        if full is not None and full[0] == minute and full[1] == allowed:
            refusals = full[2] + 1
            self._full[slot] = (minute, allowed, refusals)
            return allowed + refusals
        key = f"{window}.{key_token(namespace)}.{minute}"
        seen = self._seen.get(slot)
        known = seen[1:] if seen is not None and seen[0] == minute else None
        try:
            await self._ensure_buckets()
            for _ in range(MAX_TRIES):
                if known is None:
                    known = await self._read_count(key)
                count, revision = known
                if count >= allowed:
                    self._full[slot] = (minute, allowed, 1)
                    return count + 1
                try:
                    if revision == 0:
                        revision = await self._minutes.create(key, b"1")
                    else:
                        revision = await self._minutes.update(
                            key, str(count + 1).encode(), last=revision
                        )
                except js_errors.KeyWrongLastSequenceError:
                    known = None  # another controller counted first: read again
                    continue
                self._seen[slot] = (minute, count + 1, revision)
                return count + 1
        except ANY_NATS as e:
            self._seen.pop(slot, None)
            self._failed(e)
            raise ProviderError(f"cannot count invocations in NATS: {e!r}") from e
        raise ProviderError(f"throttle counter {key} kept changing under {MAX_TRIES} writes")

    async def _read_count(self, key: str) -> tuple[int, int]:
        try:
            entry = await self._minutes.get(key)
        except js_errors.KeyNotFoundError:  # a new minute (or deleted / expired)
            return 0, 0
        return int(entry.value or b"0"), entry.revision or 0

    # -- in flight ------------------------------------------------------------------

    async def started(self, namespace: str, activation_id: str) -> None:
        if self._local.start(namespace, activation_id):
            await self._write(namespace)

    def ended(self, activation_id: str) -> None:
        namespace = self._local.end(activation_id)
        if namespace is not None:
            self._dirty.add(namespace)
            self._wake.set()

    def own(self, namespace: str) -> int:
        return self._local.count(namespace)

    async def in_flight(self, namespace: str) -> int:
        try:
            await self._ensure_buckets()
            holders, revision = await self._read_holders(namespace)
        except ANY_NATS as e:
            self._failed(e)
            raise ProviderError(f"cannot read activations in flight from NATS: {e!r}") from e
        self._holders[namespace] = (holders, revision)
        others = self._fresh(holders)
        others.pop(self.incarnation, None)
        return sum(int(count) for count, _ in others.values()) + self._local.count(namespace)

    def _fresh(self, holders: dict[str, Any]) -> dict[str, Any]:
        oldest = self._clock() - STALE_S
        return {
            who: held
            for who, held in holders.items()
            if isinstance(held, list) and len(held) == 2 and held[1] >= oldest
        }

    async def _read_holders(self, namespace: str) -> tuple[dict[str, Any], int]:
        try:
            entry = await self._inflight.get(key_token(namespace))
        except js_errors.KeyNotFoundError:
            return {}, 0
        try:
            holders = json.loads(entry.value or b"{}")
        except ValueError:
            holders = {}
        return (holders if isinstance(holders, dict) else {}), entry.revision or 0

    async def _write(self, namespace: str) -> None:
        """Replace this incarnation's entry for ``namespace`` with its own count (and
        drop the stale entries of others), by compare-and-set."""
        key = key_token(namespace)
        known = self._holders.pop(namespace, None)
        try:
            await self._ensure_buckets()
            for _ in range(MAX_TRIES):
                if known is None:
                    known = await self._read_holders(namespace)
                holders, revision = known
                holders = self._fresh(holders)
                count = self._local.count(namespace)  # the truth as of this write
                if count:
                    holders[self.incarnation] = [count, self._clock()]
                else:
                    holders.pop(self.incarnation, None)
                value = json.dumps(holders, separators=(",", ":")).encode()
                try:
                    if revision == 0:
                        revision = await self._inflight.create(key, value)
                    else:
                        revision = await self._inflight.update(key, value, last=revision)
                except js_errors.KeyWrongLastSequenceError:
                    known = None
                    continue
                self._holders[namespace] = (holders, revision)
                return
        except ANY_NATS as e:
            # Written again by the refresh (the whole truth each time).
            self._dirty.add(namespace)
            self._failed(e)
            raise ProviderError(f"cannot count activations in flight in NATS: {e!r}") from e
        raise ProviderError(f"in-flight counter of {namespace} kept changing")

    async def _sync_loop(self) -> None:
        """Writes the namespaces whose own count changed without a write (ends)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                namespace = self._dirty.pop()
                try:
                    await self._write(namespace)
                except ProviderError as error:
                    log.warning("%s (retried within %.0f s)", error.message, REFRESH_S)
                    break

    async def _refresh_loop(self) -> None:
        """Rewrites every namespace held (fresh stamps) and any write that failed."""
        while True:
            await asyncio.sleep(REFRESH_S)
            for namespace in {*self._local.namespaces(), *self._dirty}:
                self._dirty.discard(namespace)
                try:
                    await self._write(namespace)
                except ProviderError as error:
                    log.warning("%s", error.message)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A clean stop: remove this incarnation's entries now rather than in STALE_S.
        held = {*self._local.namespaces(), *self._dirty}
        self._local = InFlight()
        for namespace in held:
            with contextlib.suppress(ProviderError, TimeoutError):
                await asyncio.wait_for(self._write(namespace), 2.0)
