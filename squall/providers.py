"""The providers: everything the shapes of Squall differ in (OpenWhisk's SPIs:
ArtifactStoreProvider, MessagingProvider, LoadBalancerProvider, ContainerFactoryProvider).

============  ===========================  ==============================
provider      :data:`STANDALONE`           :data:`CLUSTER`
============  ===========================  ==============================
store         SQLite file in ``home``      ``store_url`` (PostgreSQL)
bus           in-process queues            ``bus_url`` (NATS JetStream)
balancer      :data:`LEAN`: one invoker    :data:`SHARDING`: invokers
              in this process              elsewhere, health, recovery
sandbox       process sandbox, and Docker      the same
              for custom images
throttles     counted in this process      NATS key-value buckets shared
                                           by every controller
============  ===========================  ==============================

As in OpenWhisk, where the LeanBalancer starts the standalone controller's invoker
itself, the balancer provider decides whether an invoker runs in the controller's
process. A balancer provider also brings what its shape adds to a controller: the
cluster's invoker registry, health test, recovery and cache invalidation. How the parts
are put together is ``squall/system.py``'s, the same for every shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from squall.bus.contracts import MessagingProvider
from squall.bus.counters import MemoryCounters, ThrottleCounters
from squall.bus.factory import open_bus
from squall.bus.memory import MemoryBus
from squall.bus.messages import Completion, Redispatch
from squall.config import Settings
from squall.controller.balancer import LeanBalancer, LoadBalancer
from squall.controller.cluster import CACHE_TTL_S, CacheInvalidation, HealthTest
from squall.controller.core import Controller
from squall.controller.health import HEALTHY, InvokerRegistry
from squall.controller.recovery import Recovery
from squall.controller.restart import resume_owned, resume_unfinished
from squall.controller.sharding import ShardingBalancer
from squall.late import Late
from squall.sandbox.backends import BackendRouter
from squall.sandbox.factory import container_factory
from squall.store.contracts import Store
from squall.store.factory import open_store

log = logging.getLogger("squall.providers")

#: How long a cluster controller that starts waits for a healthy invoker before it
#: resumes what an earlier run of it left (a resumed sequence's steps need one; without
#: any by then, they end as whisk errors like any sequence's).
RESUME_WAIT_S = 30.0
# The longest pause between tries of resuming what an earlier run left (store away).
RESUME_RETRY_MAX_S = 30.0


class Balancing(Protocol):
    """What a balancer provider adds to the one controller it is made for.

    The root reads the attributes while it builds the controller's parts (they are the
    hooks those constructors take), then calls ``attach`` once the controller exists
    (nothing has started), ``start`` right after the controller started (each stop
    pushed on ``stack``), and ``ready`` after the standard catalog is installed, before
    alarms fire and requests come in."""

    @property
    def balancer(self) -> LoadBalancer: ...

    @property
    def cache_ttl_s(self) -> float | None:
        """How long an action stays cached; None: for ever (one controller sees every
        write)."""
        ...

    @property
    def listeners(self) -> Sequence[Callable[[Completion], None]]:
        """Told of every completion that reaches the controller."""
        ...

    @property
    def on_change(self) -> Callable[[str, str], None] | None:
        """The catalog's hook after each write through it."""
        ...

    @property
    def on_redispatch(self) -> Callable[[Redispatch], Awaitable[None]] | None:
        """Routes again what another controller took off a dead invoker's queue."""
        ...

    def invokers(self) -> list[dict[str, Any]]:
        """The invokers and their health, as ``/invokers`` lists them."""
        ...

    def attach(self, controller: Controller) -> None: ...

    async def start(self, controller: Controller, stack: contextlib.AsyncExitStack) -> None: ...

    async def ready(self, controller: Controller) -> None: ...


@dataclass(frozen=True)
class BalancerProvider:
    """OpenWhisk's LoadBalancerProvider SPI: how a controller reaches its invokers."""

    name: str
    #: An invoker runs in the controller's process (standalone).
    local_invoker: bool
    create: Callable[[Settings, MessagingProvider], Balancing]


class LeanBalancing:
    """Standalone's: one invoker, in this process, reached through the bus."""

    cache_ttl_s: float | None = None
    listeners: Sequence[Callable[[Completion], None]] = ()
    on_change: Callable[[str, str], None] | None = None
    on_redispatch: Callable[[Redispatch], Awaitable[None]] | None = None

    def __init__(self, settings: Settings, bus: MessagingProvider) -> None:
        self.balancer: LoadBalancer = LeanBalancer(bus, settings.invoker_id)
        self._invoker = f"invoker{settings.invoker_id}"

    def invokers(self) -> list[dict[str, Any]]:
        return [{"id": self._invoker, "status": "healthy"}]

    def attach(self, controller: Controller) -> None:
        pass

    async def start(self, controller: Controller, stack: contextlib.AsyncExitStack) -> None:
        pass

    async def ready(self, controller: Controller) -> None:
        # The in-process bus lost whatever a crash left on it; the store is the durable
        # queue: what was accepted and never ended runs (if it never started) or ends
        # (if it had) before any new request or alarm comes in.
        await resume_unfinished(controller, self.balancer)


class ShardingBalancing:
    """A cluster controller's: invokers elsewhere, chosen by home-invoker hashing among
    the healthy ones; their health from pings and a test action; their work moved when
    they die; cached actions invalidated across controllers."""

    cache_ttl_s: float | None = CACHE_TTL_S

    def __init__(self, settings: Settings, bus: MessagingProvider) -> None:
        self._bus = bus
        self._id = settings.controller_id
        self._lost_after_s = settings.lost_after_s
        # Two cycles, resolved late (both bound in ``attach``, before anything starts):
        # the registry tests an invoker with an activation whose completion comes
        # through the controller's waiters, whose listeners include the balancer, which
        # reads the registry; and recovery ends activations through those waiters,
        # which hand it the activations other controllers send back (redispatch).
        self._health: Late[HealthTest] = Late("the health test")
        self._recovery: Late[Recovery] = Late("recovery")
        self.registry = InvokerRegistry(
            bus,
            settings,
            health_test=lambda invoker: self._health.get()(invoker),
            listeners=[lambda status, previous: self._recovery.get().on_state(status, previous)],
        )
        self.sharding = ShardingBalancer(bus, self.registry, settings)
        self.balancer: LoadBalancer = self.sharding
        self.listeners: Sequence[Callable[[Completion], None]] = (self.sharding.on_completion,)
        self._invalidation = CacheInvalidation(bus, self._id)
        self.on_change: Callable[[str, str], None] | None = self._invalidation.changed
        # What an earlier run of this controller's id left (``ready``), until it is done;
        # it waits for the first invoker seen healthy.
        self._resuming: asyncio.Task[None] | None = None
        self._healthy = asyncio.Event()
        self.registry.add_listener(
            lambda status, _previous: self._healthy.set() if status.state == HEALTHY else None
        )

    async def on_redispatch(self, redispatch: Redispatch) -> None:
        await self._recovery.get().on_redispatch(redispatch)

    def invokers(self) -> list[dict[str, Any]]:
        return [{**s.to_json(), "id": f"invoker{s.id}"} for s in self.registry.ordered()]

    def attach(self, controller: Controller) -> None:
        waiters = controller.waiters
        self._health.bind(HealthTest(self._bus, waiters, controller.catalog, self._id))
        recovery = Recovery(
            self._id, self._bus, self.sharding, waiters, controller.activations,
            lost_after_s=self._lost_after_s, metrics=controller.metrics,
        )  # fmt: skip
        self._recovery.bind(recovery)

    async def start(self, controller: Controller, stack: contextlib.AsyncExitStack) -> None:
        await self._health.get().start()
        await self._invalidation.start(controller.catalog.invalidate)
        stack.push_async_callback(self._invalidation.close)
        await self.registry.start()
        stack.push_async_callback(self.registry.close)
        stack.push_async_callback(self._recovery.get().close)
        stack.push_async_callback(self._stop_resuming)

    async def ready(self, controller: Controller) -> None:
        # Moving dead invokers' work is recovery's (controller/recovery.py). What an
        # earlier run of this controller's id left to its composer is resumed here, in
        # the background: the invokers' health is only known after their next pings.
        self._resuming = asyncio.create_task(self._resume(controller), name="resume-owned")

    async def _resume(self, controller: Controller) -> None:
        if not any(s.state == HEALTHY for s in self.registry.ordered()):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._healthy.wait(), RESUME_WAIT_S)
        pause = 1.0
        while True:
            try:
                await resume_owned(controller, self.balancer)
                return
            except Exception:
                # The store or bus failed: tried again (starting and ending are
                # idempotent per id), until it succeeds or this controller stops.
                log.exception("resuming what an earlier run of this controller left "
                              "failed; trying again in %.0f s", pause)  # fmt: skip
                await asyncio.sleep(pause)
                pause = min(pause * 2, RESUME_RETRY_MAX_S)

    async def _stop_resuming(self) -> None:
        if self._resuming is not None:
            self._resuming.cancel()
            await asyncio.gather(self._resuming, return_exceptions=True)


LEAN = BalancerProvider("lean", local_invoker=True, create=LeanBalancing)
SHARDING = BalancerProvider("sharding", local_invoker=False, create=ShardingBalancing)


async def home_store(settings: Settings) -> Store:
    """Standalone's store: the SQLite file in ``settings.home`` (``store_url`` aside)."""
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    # Parameters encrypted with SQUALL_PARAMETER_KEY or the key in
    # $SQUALL_HOME/parameter.key, made on the first start (store/encryption.py).
    return await open_store(dataclasses.replace(settings, store_url=""))


async def in_process_bus(settings: Settings) -> MessagingProvider:
    """Standalone's bus: in-process queues (``bus_url`` aside)."""
    return MemoryBus()


async def memory_counters(settings: Settings, bus: MessagingProvider) -> ThrottleCounters:
    """Standalone's throttle counts: in this process."""
    return MemoryCounters()


async def shared_counters(settings: Settings, bus: MessagingProvider) -> ThrottleCounters:
    """A cluster's throttle counts: in NATS key-value buckets every controller shares
    (bus/nats_counters.py); a controller on the in-process bus is a cluster of one
    and counts in memory."""
    # Imported here: NATS's client (and aiohttp under it) costs a standalone server
    # ~9 MB it never uses (bench/README.md, "memory_at_concurrency.py").
    from squall.bus.nats import NatsBus
    from squall.bus.nats_counters import NatsCounters

    if isinstance(bus, NatsBus):
        return await NatsCounters.open(bus, settings.controller_id)
    return MemoryCounters()


@dataclass(frozen=True)
class Providers:
    """The SPIs: everything the shapes differ in."""

    store: Callable[[Settings], Awaitable[Store]]
    bus: Callable[[Settings], Awaitable[MessagingProvider]]
    balancer: BalancerProvider
    sandbox: Callable[[Settings], BackendRouter] = container_factory
    throttle_counters: Callable[[Settings, MessagingProvider], Awaitable[ThrottleCounters]] = (
        memory_counters
    )


STANDALONE = Providers(store=home_store, bus=in_process_bus, balancer=LEAN)
CLUSTER = Providers(
    store=open_store, bus=open_bus, balancer=SHARDING, throttle_counters=shared_counters
)
