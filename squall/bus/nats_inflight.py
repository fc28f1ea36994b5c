"""Activations in flight across a cluster's controllers, with leased slots (the
concurrency half of :class:`~squall.bus.nats_counters.NatsCounters`).

Bucket ``throttle-inflight``, one key per namespace holding ``{incarnation: [held,
stamp]}``: an incarnation is one run of one controller (``<controller id>-<random>``),
``stamp`` the wall-clock second it last wrote, and ``held`` the slots it holds — its
activations in flight, or more: the slots it *reserved*. A controller admits an invoke
without any I/O while its own count is below its reservation; when it is not, it reserves
more by one compare-and-set of its entry, granted only while the held slots of every
controller (the others' fresh entries plus its own) stay within the namespace's limit.
So what one controller admits from its reservation, the others already count.

How much it reserves (``lease``): the requests waiting for the reservation, plus a
headroom of ``free // SHARE`` (at most ``MAX_HEADROOM``) of the slots left free, so that
a busy namespace with a large limit costs one write per many admissions, and a small
limit (under ``SHARE`` free) reserves exactly what it admits. Unused headroom goes back:

- after an end, when the reservation exceeds the count by more than twice the headroom
  (by any slot when the headroom is 0), a background write (coalesced) lowers it to the
  count plus the headroom;
- every ``REFRESH_S``, a namespace this controller admitted nothing for since the last
  refresh has its reservation lowered to its count.

Bounds (docs/cluster.md, "Limits across the cluster"): requests admitted in the same
instant by one controller, beyond its reservation before any of them is started, may
exceed the limit by their number (as in standalone: admission reads, publication counts);
otherwise the held slots never exceed the limit. A controller may hold up to its headroom
in slots it does not use, so another controller may refuse while that many are free,
until the reservation is lowered (an end or the next refresh).

Entries whose stamp is older than ``STALE_S`` are a dead controller's and no longer count;
each write drops them. Writes replace this incarnation's entry with its whole truth, so a
failed one (NATS away) is repaired by the next.

Concurrency: everything runs on the controller's event loop. One lock per namespace
makes this controller's writes of a key one at a time (they would otherwise lose
compare-and-sets to each other); every write is a compare-and-set, so controllers need
no lock between them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js import errors as js_errors
from nats.js.kv import KeyValue

from squall.bus.counters import InFlight
from squall.bus.nats_consumer import ANY_NATS
from squall.errors import ProviderError

log = logging.getLogger("squall.throttle")

#: A controller rewrites its entries this often; entries not rewritten for STALE_S are a
#: dead controller's and no longer count.
REFRESH_S = 10.0
STALE_S = 30.0
#: A controller may reserve 1/SHARE of the free slots beyond what it admits now ...
SHARE = 8
#: ... and at most this many.
MAX_HEADROOM = 64
#: Compare-and-set attempts before giving up (503).
MAX_TRIES = 100


def key_token(namespace: str) -> str:
    """A namespace as a key token (namespaces may hold ``@`` or spaces; keys may not)."""
    return base64.urlsafe_b64encode(namespace.encode("utf-8")).decode("ascii").rstrip("=")


class LeasedInFlight:
    def __init__(
        self,
        bucket: Callable[[], KeyValue],
        incarnation: str,
        *,
        clock: Callable[[], float],
        ready: Callable[[], Awaitable[None]],
        failed: Callable[[BaseException], None],
    ) -> None:
        self._bucket = bucket  # the current bucket (re-created when the server lost it)
        self._incarnation = incarnation
        self._clock = clock
        self._ready = ready  # re-creates lost buckets before an operation
        self._failed = failed
        self._local = InFlight()
        self._reserved: dict[str, int] = {}
        self._allowed: dict[str, int] = {}  # the limit last admitted against
        self._used: set[str] = set()  # namespaces admitted for since the last refresh
        self._waiting: dict[str, int] = {}  # admissions waiting for a reservation
        self._locks: dict[str, asyncio.Lock] = {}
        # Last entries read or written, with the key's revision, by namespace.
        self._holders: dict[str, tuple[dict[str, Any], int]] = {}
        self._dirty: set[str] = set()
        self.wake = asyncio.Event()

    # -- admission ------------------------------------------------------------------

    async def admit(self, namespace: str, allowed: int) -> int:
        """The slots taken as this controller sees them; below ``allowed`` = admitted."""
        self._allowed[namespace] = allowed
        self._used.add(namespace)
        count = self._local.count(namespace)
        if count < self._reserved.get(namespace, 0):
            return count  # within this controller's reservation: no I/O
        self._waiting[namespace] = self._waiting.get(namespace, 0) + 1
        try:
            async with self._lock(namespace):
                count = self._local.count(namespace)
                if count < self._reserved.get(namespace, 0):
                    return count  # the lease of a request ahead covered this one
                await self._ready()
                return await self._lease(namespace, allowed)
        except ANY_NATS as e:
            self._failed(e)
            raise ProviderError(f"cannot count activations in flight in NATS: {e!r}") from e
        finally:
            self._waiting[namespace] -= 1
            if not self._waiting[namespace]:
                del self._waiting[namespace]

    async def _lease(self, namespace: str, allowed: int) -> int:
        """Reserve slots for the waiting admissions plus headroom; the slots taken
        (``>= allowed`` when none was free). Called under the namespace's lock."""
        known = self._holders.pop(namespace, None)
        read = False  # whether ``known`` was read now (not remembered from before)
        for _ in range(MAX_TRIES):
            if known is None:
                known, read = await self._read(namespace), True
            holders, revision = known
            holders = self._fresh(holders)
            others = self._others(holders)
            count = self._local.count(namespace)
            free = allowed - others - count
            if free < 1 and not read:
                known = None  # refused on what was seen before: look at the others now
                continue
            if free < 1:
                self._holders[namespace] = (holders, revision)
                return others + count
            want = min(free, max(1, self._waiting.get(namespace, 0)))
            reserved = count + want + min(MAX_HEADROOM, (free - want) // SHARE)
            written = await self._put(namespace, holders, revision, reserved)
            if written is None:
                known = None  # another controller wrote first: read again
                continue
            self._reserved[namespace] = reserved
            return count
        raise ProviderError(f"in-flight counter of {namespace} kept changing")

    # -- counting -------------------------------------------------------------------

    async def started(self, namespace: str, activation_id: str) -> None:
        if not self._local.start(namespace, activation_id):
            return
        if self._local.count(namespace) > self._reserved.get(namespace, 0):
            # Beyond the reservation (a sequence's step, a restart's resend, admissions
            # racing): written before returning, so that every controller counts it.
            async with self._lock(namespace):
                if self._local.count(namespace) > self._reserved.get(namespace, 0):
                    self._reserved[namespace] = self._local.count(namespace)
                    await self._write(namespace)

    def ended(self, activation_id: str) -> None:
        namespace = self._local.end(activation_id)
        if namespace is None:
            return
        headroom = self._headroom(namespace)
        slack = self._reserved.get(namespace, 0) - self._local.count(namespace)
        if slack > 2 * headroom:
            self._dirty.add(namespace)
            self.wake.set()

    def own(self, namespace: str) -> int:
        return self._local.count(namespace)

    async def in_flight(self, namespace: str) -> int:
        try:
            await self._ready()
            holders, revision = await self._read(namespace)
        except ANY_NATS as e:
            self._failed(e)
            raise ProviderError(f"cannot read activations in flight from NATS: {e!r}") from e
        self._holders[namespace] = (holders, revision)
        return self._others(self._fresh(holders)) + self._local.count(namespace)

    def _headroom(self, namespace: str) -> int:
        held = self._holders.get(namespace)
        others = self._others(self._fresh(held[0])) if held is not None else 0
        free = self._allowed.get(namespace, 0) - others - self._local.count(namespace)
        return min(MAX_HEADROOM, max(0, free) // SHARE)

    # -- the shared entry -----------------------------------------------------------

    def _lock(self, namespace: str) -> asyncio.Lock:
        lock = self._locks.get(namespace)
        if lock is None:
            lock = self._locks[namespace] = asyncio.Lock()
        return lock

    def _fresh(self, holders: dict[str, Any]) -> dict[str, Any]:
        oldest = self._clock() - STALE_S
        return {
            who: held
            for who, held in holders.items()
            if isinstance(held, list) and len(held) == 2 and held[1] >= oldest
        }

    def _others(self, fresh: dict[str, Any]) -> int:
        return sum(int(held) for who, (held, _) in fresh.items() if who != self._incarnation)

    async def _read(self, namespace: str) -> tuple[dict[str, Any], int]:
        try:
            entry = await self._bucket().get(key_token(namespace))
        except js_errors.KeyNotFoundError:
            return {}, 0
        try:
            holders = json.loads(entry.value or b"{}")
        except ValueError:
            holders = {}
        return (holders if isinstance(holders, dict) else {}), entry.revision or 0

    async def _put(
        self, namespace: str, holders: dict[str, Any], revision: int, reserved: int
    ) -> int | None:
        """Compare-and-set this incarnation's entry (held = max(count, reserved)); the new
        revision, or None when the key changed since ``revision``."""
        held = max(self._local.count(namespace), reserved)
        if held:
            holders[self._incarnation] = [held, self._clock()]
        else:
            holders.pop(self._incarnation, None)
        value = json.dumps(holders, separators=(",", ":")).encode()
        key = key_token(namespace)
        try:
            if revision == 0:
                revision = await self._bucket().create(key, value)
            else:
                revision = await self._bucket().update(key, value, last=revision)
        except js_errors.KeyWrongLastSequenceError:
            return None
        self._holders[namespace] = (holders, revision)
        return revision

    async def _write(self, namespace: str) -> None:
        """Write this incarnation's truth for ``namespace`` (its reservation, at least its
        count), dropping others' stale entries. Called under the namespace's lock."""
        known = self._holders.pop(namespace, None)
        try:
            await self._ready()
            for _ in range(MAX_TRIES):
                if known is None:
                    known = await self._read(namespace)
                holders, revision = known
                reserved = self._reserved.get(namespace, 0)
                if await self._put(namespace, self._fresh(holders), revision, reserved):
                    return
                known = None
        except ANY_NATS as e:
            self._dirty.add(namespace)  # written again by the refresh
            self._failed(e)
            raise ProviderError(f"cannot count activations in flight in NATS: {e!r}") from e
        raise ProviderError(f"in-flight counter of {namespace} kept changing")

    async def lower(self, namespace: str, *, to_count: bool) -> None:
        """Lower the reservation (to the count plus the headroom, or to the count) and
        write the entry with a fresh stamp."""
        async with self._lock(namespace):
            count = self._local.count(namespace)
            keep = 0 if to_count else self._headroom(namespace)
            reserved = max(count, min(self._reserved.get(namespace, 0), count + keep))
            if reserved:
                self._reserved[namespace] = reserved
            else:
                self._reserved.pop(namespace, None)
            await self._write(namespace)

    # -- background -----------------------------------------------------------------

    async def sync_loop(self) -> None:
        """Lowers the reservations the ends left too high."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self._dirty:
                namespace = self._dirty.pop()
                try:
                    await self.lower(namespace, to_count=False)
                except ProviderError as error:
                    log.warning("%s (retried within %.0f s)", error.message, REFRESH_S)
                    break

    async def refresh_loop(self) -> None:
        """Rewrites every entry held (fresh stamps), releasing the reservations of
        namespaces admitted for no more, and any write that failed."""
        while True:
            await asyncio.sleep(REFRESH_S)
            idle = self.held() - self._used
            self._used.clear()
            for namespace in self.held() | self._dirty:
                self._dirty.discard(namespace)
                try:
                    await self.lower(namespace, to_count=namespace in idle)
                except ProviderError as error:
                    log.warning("%s", error.message)
            for namespace in [n for n, lock in self._locks.items() if not lock.locked()]:
                if namespace not in self._reserved and not self._local.count(namespace):
                    del self._locks[namespace]
                    self._allowed.pop(namespace, None)

    def held(self) -> set[str]:
        """Namespaces this controller has an entry for (in flight or reserved)."""
        return {*self._local.namespaces(), *self._reserved}

    def forget_reads(self) -> None:
        """The buckets were created again: read before writing, and write every entry."""
        self._holders.clear()
        self._dirty.update(self.held())
        self.wake.set()

    async def release_all(self, timeout_s: float) -> None:
        """A clean stop: remove this incarnation's entries (best effort)."""
        held = self.held() | self._dirty
        self._local = InFlight()
        self._reserved.clear()
        for namespace in held:
            with contextlib.suppress(ProviderError, TimeoutError):
                await asyncio.wait_for(self._write(namespace), timeout_s)
