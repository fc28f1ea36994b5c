"""What a controller knows about the invokers of a cluster: their health, from pings.

Every invoker broadcasts an :class:`InvokerPing` on ``health`` each ping interval; every
controller listens. An invoker's state, as OpenWhisk names them:

- ``offline``: no ping for ``offline_after_s``, or it said it is stopping. Its queued
  work is moved; what it had started is recorded as failed once it is known gone — it
  restarted, or stayed silent ``lost_after_s`` — and left to it if the same process pings
  again first (``controller/recovery.py``).
- ``unresponsive``: no ping for ``unresponsive_after_s`` (but not yet offline): it gets
  no new work, nothing is moved yet — it may only be slow.
- ``unhealthy``: it pings, but has not (yet) run the health-test action since it appeared
  (or came back), or its last activations ended in whisk internal errors. A test
  activation is sent until one succeeds.
- ``healthy``: pings and passes the test: the balancer may send it work.

Invokers are listed in the order first seen by id and never forgotten (offline ones stay
in the list), so the home-invoker hashing of the balancer does not reshuffle when one dies.

Concurrency: one task reads pings, one ticks the clock; both run on the controller's
event loop and only they change the table, so it needs no lock. Listeners are called on
that loop and must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from squall.bus.contracts import MessagingProvider, Subscription
from squall.bus.messages import HEALTH_SUBJECT, INVOKER_STOPPING, InvokerPing, MessageError
from squall.config import Settings
from squall.errors import ProviderError

log = logging.getLogger("squall.controller.health")

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
UNRESPONSIVE = "unresponsive"
OFFLINE = "offline"

# Consecutive whisk internal errors that make an invoker unhealthy again.
SYSTEM_ERRORS_LIMIT = 3
# How often a test activation is retried while an invoker is unhealthy.
TEST_RETRY_S = 2.0


@dataclass
class InvokerStatus:
    id: str
    user_memory_mb: int
    last_ping: float  # monotonic
    state: str = UNHEALTHY
    tested: bool = False  # a health test succeeded since it (re)appeared
    stopping: bool = False
    system_errors: int = 0
    busy_mb: int = 0
    containers: int = 0
    testing_since: float = 0.0
    incarnation: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "status": self.state,
            "userMemoryMb": self.user_memory_mb,
            "busyMb": self.busy_mb,
            "containers": self.containers,
        }


@dataclass(frozen=True)
class Silence:
    """An invoker that went offline because its pings stopped: its status (the
    registry's, kept current by it), and its incarnation and last ping at that moment.
    Offline only says that its pings stopped, which a loaded or paused machine also
    does; :meth:`gone` tells whether the process is really gone."""

    status: InvokerStatus
    incarnation: str
    last_ping: float  # time.monotonic(), the registry's clock in a controller

    @classmethod
    def of(cls, status: InvokerStatus) -> Silence:
        return cls(status, status.incarnation, status.last_ping)

    def pinged_again(self) -> bool:
        """Whether the same process pinged since (alive, even if it says it stops)."""
        return self.status.incarnation == self.incarnation and (
            self.status.last_ping > self.last_ping
        )

    async def gone(self, lost_after_s: float, poll_s: float = 0.2) -> bool:
        """True once it pings as another process (it restarted: the one that ran its
        activations is dead) or stayed silent ``lost_after_s`` since its last ping;
        False when the same process pings again first (late pings, even a ``stopping``
        one: it is alive and finishes or records its runs itself — the recovery then
        treats a stopping one as a graceful stop, ``controller/recovery.py``)."""
        deadline = self.last_ping + lost_after_s
        while True:
            if self.status.incarnation != self.incarnation:
                return True
            if self.status.last_ping > self.last_ping:
                return False
            if time.monotonic() >= deadline:
                return True
            await asyncio.sleep(poll_s)


StateListener = Callable[[InvokerStatus, str], None]
HealthTest = Callable[[str], Awaitable[bool]]


class InvokerRegistry:
    def __init__(
        self,
        bus: MessagingProvider,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        health_test: HealthTest | None = None,
        listeners: Iterable[StateListener] = (),
    ) -> None:
        """``health_test`` runs the health-test action on one invoker (without one, an
        invoker that pings is healthy); ``listeners`` as :meth:`add_listener`."""
        self._bus = bus
        self._settings = settings
        self._clock = clock
        self._invokers: dict[str, InvokerStatus] = {}
        self._order: list[str] = []
        self._listeners: list[StateListener] = list(listeners)
        self._tasks: list[asyncio.Task[None]] = []
        self._tests: dict[str, asyncio.Task[None]] = {}
        self.health_test = health_test

    # -- reading --------------------------------------------------------------------

    def ordered(self) -> list[InvokerStatus]:
        """Every invoker ever seen, in a stable order (for home-invoker hashing)."""
        return [self._invokers[i] for i in self._order]

    def get(self, invoker_id: str) -> InvokerStatus | None:
        return self._invokers.get(invoker_id)

    def usable(self, invoker_id: str) -> bool:
        status = self._invokers.get(invoker_id)
        return status is not None and status.state == HEALTHY

    def add_listener(self, listener: StateListener) -> None:
        """``listener(status, previous_state)`` after every state change."""
        self._listeners.append(listener)

    # -- running --------------------------------------------------------------------

    async def start(self) -> None:
        subscription = await self._bus.subscribe(HEALTH_SUBJECT)
        self._tasks.append(asyncio.create_task(self._listen(subscription), name="pings"))
        self._tasks.append(asyncio.create_task(self._tick(), name="invoker-health"))

    async def _listen(self, subscription: Subscription) -> None:
        while True:
            try:
                data = await subscription.next()
            except ProviderError:
                return
            try:
                ping = InvokerPing.from_bytes(data)
            except MessageError:
                continue  # another message type or a newer schema: not ours to read
            self.on_ping(ping)

    async def _tick(self) -> None:
        period = max(0.05, self._settings.ping_interval_s / 2)
        while True:
            await asyncio.sleep(period)
            self.refresh()

    def on_ping(self, ping: InvokerPing) -> None:
        status = self._invokers.get(ping.invoker)
        if status is None:
            status = InvokerStatus(ping.invoker, ping.user_memory_mb, self._clock())
            self._invokers[ping.invoker] = status
            self._order.append(ping.invoker)
            log.info("invoker %s appeared (%d MB)", ping.invoker, ping.user_memory_mb)
        elif status.state == OFFLINE and ping.state != INVOKER_STOPPING:
            status.tested = False  # back from the dead: prove it works again
            status.system_errors = 0
        elif ping.incarnation and status.incarnation and ping.incarnation != status.incarnation:
            # Restarted before it was noticed offline: what the old process ran is lost
            # all the same. Go through offline (recovery runs), then prove it works again.
            log.warning("invoker %s restarted", ping.invoker)
            self._change(status, OFFLINE)
            status.tested = False
            status.system_errors = 0
        if ping.incarnation:
            status.incarnation = ping.incarnation
        status.last_ping = self._clock()
        status.user_memory_mb = ping.user_memory_mb
        status.busy_mb = ping.busy_mb
        status.containers = ping.containers
        status.stopping = ping.state == INVOKER_STOPPING
        self.refresh()

    def on_outcome(self, invoker_id: str, system_error: bool) -> None:
        """An activation ended on ``invoker_id``; whisk internal errors count against it."""
        status = self._invokers.get(invoker_id)
        if status is None:
            return
        status.system_errors = status.system_errors + 1 if system_error else 0
        if status.system_errors >= SYSTEM_ERRORS_LIMIT and status.tested:
            status.tested = False
            self.refresh()

    def refresh(self) -> None:
        """Recompute every state from the time of its last ping; notify changes."""
        now = self._clock()
        s = self._settings
        for status in self._invokers.values():
            if self.health_test is None:
                status.tested = True  # nothing to test with: pings are all there is
            silent = now - status.last_ping
            if status.stopping or silent > s.offline_after_s:
                state = OFFLINE
            elif silent > s.unresponsive_after_s:
                state = UNRESPONSIVE
            elif not status.tested:
                state = UNHEALTHY
            else:
                state = HEALTHY
            if state == UNHEALTHY:
                self._start_test(status, now)
            if state != status.state:
                self._change(status, state)

    def _change(self, status: InvokerStatus, state: str) -> None:
        previous, status.state = status.state, state
        log.info("invoker %s: %s -> %s", status.id, previous, state)
        for listener in self._listeners:
            try:
                listener(status, previous)
            except Exception:
                log.exception("an invoker state listener failed")

    def _start_test(self, status: InvokerStatus, now: float) -> None:
        if self.health_test is None:
            return
        running = self._tests.get(status.id)
        if running is not None and not running.done():
            return
        if now - status.testing_since < TEST_RETRY_S:
            return
        status.testing_since = now
        self._tests[status.id] = asyncio.create_task(self._test(status), name="health-test")

    async def _test(self, status: InvokerStatus) -> None:
        assert self.health_test is not None
        try:
            passed = await self.health_test(status.id)
        except Exception:
            log.exception("health test of invoker %s failed", status.id)
            passed = False
        if passed and status.state != OFFLINE:
            status.tested = True
            status.system_errors = 0
            self.refresh()

    async def close(self) -> None:
        for task in [*self._tasks, *self._tests.values()]:
            task.cancel()
        for task in [*self._tasks, *self._tests.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._tests.clear()
