"""Throttle counts shared by a cluster's controllers, in NATS JetStream key-value buckets
(a :class:`~squall.bus.counters.ThrottleCounters`), taken in leases so that an admitted
request normally costs no round trip to NATS.

Per-minute windows — bucket ``throttle-minutes``, key ``<window>.<namespace>.<minute>``
holding the number of attempts *granted* to the controllers (entries expire 120 s after
their last write; only the current minute's is ever read). A controller takes a lease —
a run of numbers ``count + 1 .. count + n`` — by writing ``count + n`` *if the revision is
still the one it read* (``update(last=revision)``; ``create`` for a new minute); a write
that lost the race reads the key and tries again. It then admits attempts from its lease
without I/O. ``n`` is the attempts waiting for the lease (concurrent ones share one
write) plus a headroom of ``left // SHARE`` (at most ``MAX_CHUNK``) of what the window
has left, so a small limit (under ``SHARE`` left) is leased one attempt at a time, as
before. The key never exceeds ``allowed``, and every admitted attempt holds a number of
a lease: across the cluster at most ``allowed`` attempts per window and minute are
admitted — exactly, not approximately. A lease left unused for ``LEASE_IDLE_S`` is
given back (``count - unused``, by compare-and-set), so its numbers can be leased by
another controller; until then, that controller may refuse while the window has them
(fewer admitted, never more). Once a controller has seen the window full, it refuses
without I/O, and looks again at most every ``FULL_RECHECK_S`` (for numbers given back).
Refused attempts are not written (that would make throttling cost a write); the count
in a 429 message is this controller's view: ``allowed`` plus the refusals it saw.

Activations in flight — bucket ``throttle-inflight``, leased slots of the namespace's
concurrency: :mod:`squall.bus.nats_inflight`. Bounds and the rest of the design:
docs/cluster.md, "Limits across the cluster".

Concurrency: everything runs on the controller's event loop; the dicts need no lock.
At most one lease of a window is being taken at a time per controller (the others
waiting for it share it), and every shared write is a compare-and-set, so controllers
need no lock either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors as nats_errors
from nats.js import errors as js_errors
from nats.js.kv import KeyValue

from squall.bus.nats import NatsBus
from squall.bus.nats_consumer import ANY_NATS
from squall.bus.nats_inflight import REFRESH_S, STALE_S, LeasedInFlight, key_token
from squall.errors import ProviderError

__all__ = ["REFRESH_S", "STALE_S", "NatsCounters", "key_token"]

log = logging.getLogger("squall.throttle")

MINUTES, INFLIGHT = "throttle-minutes", "throttle-inflight"
MINUTE_KEEP_S = 120.0
#: A lease may hold 1/SHARE of what the window has left beyond the attempts waiting ...
SHARE = 8
#: ... and at most this many numbers.
MAX_CHUNK = 256
#: A lease unused this long is given back; checked every LEASE_CHECK_S.
LEASE_IDLE_S = 1.0
LEASE_CHECK_S = 0.5
#: A controller that saw a window full reads it again at most this often.
FULL_RECHECK_S = 1.0
#: Compare-and-set attempts before giving up (503): far more than two controllers racing
#: for one key ever need.
MAX_TRIES = 100
#: What a server that has no bucket (stream) answers.
BUCKET_GONE: tuple[type[BaseException], ...] = (
    nats_errors.NoRespondersError,
    js_errors.NoStreamResponseError,
    js_errors.NotFoundError,
)


@dataclass
class _Lease:
    minute: int
    allowed: int
    next: int  # the number the next admitted attempt gets
    last: int  # the lease's last number
    used_at: float  # time.monotonic() of its last use

    def fits(self, minute: int, allowed: int) -> bool:
        return self.minute == minute and self.allowed == allowed and self.next <= self.last


@dataclass
class _Full:
    minute: int
    allowed: int
    refusals: int
    recheck_at: float  # time.monotonic()


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
        self._full: dict[tuple[str, str], _Full] = {}
        self._leases: dict[tuple[str, str], _Lease] = {}
        # A lease being taken, by window; attempts waiting for one.
        self._leasing: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._waiting: dict[tuple[str, str], int] = {}
        self._inflight_leases = LeasedInFlight(
            lambda: self._inflight,
            self.incarnation,
            clock=clock,
            ready=self._ensure_buckets,
            failed=self._failed,
        )
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
        self._leases.clear()  # their numbers are gone with the bucket
        self._inflight_leases.forget_reads()  # this controller's truth written again
        self._lost = False
        log.warning("throttle buckets created again on NATS")

    def _failed(self, error: BaseException) -> None:
        if isinstance(error, BUCKET_GONE):
            self._lost = True

    def start(self) -> None:
        inflight = self._inflight_leases
        self._tasks = [
            asyncio.create_task(inflight.sync_loop(), name="throttle-sync"),
            asyncio.create_task(inflight.refresh_loop(), name="throttle-refresh"),
            asyncio.create_task(self._return_loop(), name="throttle-leases"),
        ]

    # -- per-minute windows ---------------------------------------------------------

    async def hit(self, window: str, namespace: str, minute: int, allowed: int) -> int:
        slot = (window, namespace)
        for _ in range(MAX_TRIES):
            full = self._full.get(slot)
            if full is not None and full.minute == minute and full.allowed == allowed:
                if time.monotonic() < full.recheck_at:
                    full.refusals += 1
                    return allowed + full.refusals
                self._seen.pop(slot, None)  # look again: numbers may have been given back
                del self._full[slot]
            lease = self._leases.get(slot)
            if lease is not None and lease.fits(minute, allowed):
                number, lease.next = lease.next, lease.next + 1
                lease.used_at = time.monotonic()
                return number
            pending = self._leasing.get(slot)
            if pending is not None:  # share the lease being taken
                self._waiting[slot] = self._waiting.get(slot, 0) + 1
                try:
                    await asyncio.shield(pending)
                finally:
                    self._waiting[slot] -= 1
                continue
            done = self._leasing[slot] = asyncio.get_running_loop().create_future()
            try:
                await self._lease(slot, minute, allowed)
            finally:
                del self._leasing[slot]
                done.set_result(None)
        raise ProviderError(f"throttle window of {namespace} kept changing")

    async def _lease(self, slot: tuple[str, str], minute: int, allowed: int) -> None:
        """Take a lease of the window (or learn that it is full)."""
        window, namespace = slot
        key = f"{window}.{key_token(namespace)}.{minute}"
        seen = self._seen.get(slot)
        known = seen[1:] if seen is not None and seen[0] == minute else None
        try:
            await self._ensure_buckets()
            for _ in range(MAX_TRIES):
                if known is None:
                    known = await self._read_count(key)
                count, revision = known
                left = allowed - count
                if left <= 0:
                    self._full[slot] = _Full(minute, allowed, 0, time.monotonic() + FULL_RECHECK_S)
                    return
                want = 1 + self._waiting.get(slot, 0)
                size = min(left, want + min(MAX_CHUNK, (left - want) // SHARE))
                size = max(1, size)
                try:
                    if revision == 0:
                        revision = await self._minutes.create(key, str(size).encode())
                    else:
                        revision = await self._minutes.update(
                            key, str(count + size).encode(), last=revision
                        )
                except js_errors.KeyWrongLastSequenceError:
                    known = None  # another controller counted first: read again
                    continue
                self._seen[slot] = (minute, count + size, revision)
                self._leases[slot] = _Lease(
                    minute, allowed, count + 1, count + size, time.monotonic()
                )
                return
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

    async def _return_loop(self) -> None:
        """Gives back the numbers of leases left unused for LEASE_IDLE_S."""
        while True:
            await asyncio.sleep(LEASE_CHECK_S)
            now = time.monotonic()
            for slot, lease in list(self._leases.items()):
                if lease.next > lease.last:
                    del self._leases[slot]  # used up
                elif now - lease.used_at >= LEASE_IDLE_S and slot not in self._leasing:
                    del self._leases[slot]  # no attempt takes from it from here on
                    try:
                        await self._give_back(slot, lease)
                    except ProviderError as error:
                        log.warning("%s (its numbers stay unused this minute)", error.message)

    async def _give_back(self, slot: tuple[str, str], lease: _Lease) -> None:
        window, namespace = slot
        key = f"{window}.{key_token(namespace)}.{lease.minute}"
        unused = lease.last - lease.next + 1
        seen = self._seen.get(slot)
        known = seen[1:] if seen is not None and seen[0] == lease.minute else None
        try:
            for _ in range(MAX_TRIES):
                if known is None:
                    known = await self._read_count(key)
                count, revision = known
                if revision == 0 or count < unused:
                    return  # the window is gone (expired, or the bucket was lost)
                try:
                    revision = await self._minutes.update(
                        key, str(count - unused).encode(), last=revision
                    )
                except js_errors.KeyWrongLastSequenceError:
                    known = None
                    continue
                self._seen[slot] = (lease.minute, count - unused, revision)
                return
        except ANY_NATS as e:
            self._seen.pop(slot, None)
            self._failed(e)
            raise ProviderError(f"cannot give back throttle numbers to NATS: {e!r}") from e

    # -- in flight (nats_inflight.py) -----------------------------------------------

    async def admit(self, namespace: str, allowed: int) -> int:
        return await self._inflight_leases.admit(namespace, allowed)

    async def started(self, namespace: str, activation_id: str) -> None:
        await self._inflight_leases.started(namespace, activation_id)

    def ended(self, activation_id: str) -> None:
        self._inflight_leases.ended(activation_id)

    def own(self, namespace: str) -> int:
        return self._inflight_leases.own(namespace)

    async def in_flight(self, namespace: str) -> int:
        return await self._inflight_leases.in_flight(namespace)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A clean stop: give back unused numbers, and remove this incarnation's
        # in-flight entries now rather than in STALE_S.
        for slot, lease in list(self._leases.items()):
            with contextlib.suppress(ProviderError, TimeoutError):
                await asyncio.wait_for(self._give_back(slot, lease), 2.0)
        self._leases.clear()
        await self._inflight_leases.release_all(2.0)
