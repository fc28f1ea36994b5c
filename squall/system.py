"""The composition root: one function builds every shape of Squall from settings and a
set of providers.

A process of Squall is a controller, an invoker, or — standalone — a controller with its
invoker beside it. :func:`start` builds any of them; the shapes differ only in the
:class:`~squall.providers.Providers` passed (``providers.STANDALONE`` or
``providers.CLUSTER``: store, bus, balancer, sandbox), as OpenWhisk's differ only in its
SPIs. The balancer provider says whether an invoker runs in the controller's process
(standalone's lean one does, as OpenWhisk's LeanBalancer does); a cluster's invokers are
processes of their own (``role=INVOKER``).

How it is built:

- **Hooks in constructors.** Every part gets the parts it calls, and the hooks it calls
  back (a catalog's ``on_change``, the completions' listeners and redispatch, the
  registry's health test and listeners, the activator's composer), when it is built.
  Nothing is set on a part afterwards.
- **Cycles through** :class:`~squall.late.Late`. Where two parts need each other (the
  activator and the composer, see :func:`_controller`; the cluster's registry,
  completions and recovery, see ``providers.ShardingBalancing``), the part built last is
  reached through a ``Late`` made before either and bound as soon as it exists, before
  anything starts.
- **One exit stack.** Parts start in order and each pushes its stop as it starts, so
  :meth:`System.close` stops them in reverse order, and a start that fails stops what
  had started. The sandbox comes first: a host that cannot isolate actions is refused
  before anything else opens.

Imports: this module and ``providers`` may import any package but ``cli``; only ``cli``
imports them (``tests/unit/test_import_direction.py``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeGuard

from starlette.types import ASGIApp

from squall.bus.contracts import MessagingProvider
from squall.catalog.install import install_catalog
from squall.config import Settings
from squall.controller.activator import Activator
from squall.controller.apimgmt import ApiManagement
from squall.controller.app import create_app
from squall.controller.auth import Authenticator
from squall.controller.catalog import Catalog
from squall.controller.composition import Composer
from squall.controller.core import Controller
from squall.controller.retention import Retention
from squall.controller.throttle import Throttles
from squall.controller.waiters import CompletionWaiters
from squall.entities.manifest import use_manifest
from squall.errors import ConfigError
from squall.feeds.actions import FeedActions
from squall.feeds.provider import AlarmsProvider
from squall.invoker.apikeys import ActionKeys, load_secret
from squall.invoker.app import invoker_app
from squall.invoker.pool import ContainerPool
from squall.invoker.prewarm import manifest_stem_cells, parse_stem_cells
from squall.invoker.service import Invoker
from squall.late import Late
from squall.logforwarding.forwarder import ForwardingLimits, LogForwarder
from squall.metrics.controller import ControllerMetrics
from squall.metrics.exposition import MetricFamilies
from squall.metrics.supervisor import SupervisorMetrics
from squall.providers import Providers
from squall.sandbox.backends import BackendRouter
from squall.sandbox.factory import network_mode, start_backends
from squall.sandbox.interpreters import load_manifest
from squall.store.contracts import Store
from squall.store.encrypted import EncryptedStore

Role = Literal["controller", "invoker"]
CONTROLLER: Role = "controller"
INVOKER: Role = "invoker"


@dataclass
class System:
    """One running process of Squall: what it serves (``app``) and its parts; a part
    this process does not run is None (a cluster controller has no invoker)."""

    settings: Settings
    store: Store
    bus: MessagingProvider
    app: ASGIApp
    controller: Controller | None
    invoker: Invoker | None
    factory: BackendRouter | None
    stack: contextlib.AsyncExitStack

    async def close(self) -> None:
        """Stop every part in the reverse order of their starts. Idempotent."""
        await self.stack.aclose()


async def start(settings: Settings, providers: Providers, role: Role = CONTROLLER) -> System:
    """Build and start one process: a controller (with the balancer provider's local
    invoker, if it has one) or a cluster's invoker. ConfigError or ProviderError when a
    setting, the sandbox or a provider fails; what had started is stopped then."""
    stack = contextlib.AsyncExitStack()
    try:
        return await _start(settings, providers, role, stack)
    except BaseException:
        await stack.aclose()
        raise


async def _start(
    settings: Settings, providers: Providers, role: Role, stack: contextlib.AsyncExitStack
) -> System:
    local_invoker = providers.balancer.local_invoker
    if role == INVOKER and local_invoker:
        raise ConfigError(
            f"an invoker of its own needs a cluster's balancer, not {providers.balancer.name!r}"
        )
    factory: BackendRouter | None = None
    if role == INVOKER or local_invoker:
        settings.home.mkdir(parents=True, exist_ok=True)
        # The sandbox first: a host that cannot isolate is refused before anything opens.
        factory = providers.sandbox(settings)
        stack.push_async_callback(factory.close)
        # Docker too, when a daemon answers (else only custom images cannot run).
        await start_backends(settings, factory)
    if role == CONTROLLER:
        # The kinds GET / lists and creates accept: the local invoker's; a cluster
        # controller offers every kind of the manifest, as OpenWhisk's does (invokers,
        # on other machines, check their interpreters when they start).
        use_manifest(
            factory.runtimes.manifest
            if factory is not None
            else load_manifest(settings.runtimes_manifest or None)
        )
    store = await providers.store(settings)
    stack.push_async_callback(store.close)
    bus = await providers.bus(settings)
    stack.push_async_callback(bus.close)
    invoker = None
    if factory is not None:
        # A cluster's invoker pings controllers and expires messages that waited longer
        # than a blocking invoke would; standalone's needs neither.
        invoker = _invoker(settings, factory, store, bus, cluster=not local_invoker)
    if role == INVOKER:
        assert invoker is not None
        await invoker.start()
        stack.push_async_callback(invoker.close)
        served = invoker_app(invoker, settings)
        return System(settings, store, bus, served, None, invoker, factory, stack)
    controller, app = await _controller(settings, providers, store, bus, invoker, stack)
    return System(settings, store, bus, app, controller, invoker, factory, stack)


def _encrypts(store: Store) -> TypeGuard[EncryptedStore]:
    return isinstance(store, EncryptedStore) and store.ring.enabled


def _invoker(
    settings: Settings,
    factory: BackendRouter,
    store: Store,
    bus: MessagingProvider,
    *,
    cluster: bool,
) -> Invoker:
    """An invoker, not yet started. Its actions get action keys derived from the
    settings' secret (standalone: the secret file under the home; a cluster invoker
    without a secret gives none, see :func:`~squall.invoker.apikeys.load_secret`)."""
    pool = ContainerPool(
        factory,
        settings.user_memory_mb,
        settings.keep_warm_s,
        pause_grace_s=settings.pause_grace_s,
        warm_wait_s=settings.warm_wait_ms / 1000,
        stem_cells=(
            manifest_stem_cells(factory.runtimes.manifest)
            if settings.stem_cells.strip() == "manifest"
            else parse_stem_cells(settings.stem_cells)
        ),
        stem_network=network_mode(settings),
    )
    return Invoker(
        settings.invoker_id,
        bus,
        store.entities,
        store.activations,
        pool,
        ping_interval_s=settings.ping_interval_s if cluster else 0.0,
        max_wait_ms=settings.max_blocking_wait_ms if cluster else 0,
        api_keys=ActionKeys(store.auth, load_secret(settings, cluster=cluster)),
    )


async def _controller(
    settings: Settings,
    providers: Providers,
    store: Store,
    bus: MessagingProvider,
    invoker: Invoker | None,
    stack: contextlib.AsyncExitStack,
) -> tuple[Controller, ASGIApp]:
    """Build and start a controller (and ``invoker``, which runs beside it)."""
    cid = settings.controller_id
    balancing = providers.balancer.create(settings, bus)
    # Queue lengths of the invokers ``/invokers`` lists: ``invoker0`` is topic ``invoker.0``.
    metrics = ControllerMetrics(
        bus, lambda: [str(i["id"]).removeprefix("invoker") for i in balancing.invokers()]
    )
    # Where the throttles count: in memory, or shared by a cluster's controllers.
    counters = await providers.throttle_counters(settings, bus)
    throttles = Throttles(settings, store.auth, metrics=metrics, counters=counters)
    forwarder = LogForwarder(
        store.entities,
        metrics,
        azure_url=settings.log_forwarding_azure_url,
        limits=ForwardingLimits(buffer_lines=settings.log_forwarding_buffer_lines),
    )
    waiters = CompletionWaiters(
        bus,
        cid,
        store.activations,
        # The log forwarder's is its one hook into the completion path: it copies the
        # record's log lines, no I/O.
        listeners=[
            throttles.on_completion,
            lambda completion: forwarder.submit(completion.record),
            *balancing.listeners,
        ],
        on_redispatch=balancing.on_redispatch,
    )
    catalog = Catalog(
        store.entities,
        ttl_s=balancing.cache_ttl_s,
        on_change=balancing.on_change,
        # The invoker beside it (standalone) runs the revision the catalog just read, on
        # the same store: a new action's first invoke reads it once, not twice.
        on_read=invoker.remember if invoker is not None else None,
    )
    # The controller's one cycle: the activator hands sequences and compositions to the
    # composer and built-in actions to the feed actions, and both need the controller
    # (its activator for their steps and fires, its catalog and store). So the activator
    # gets them through Lates, bound right after the controller is built.
    composer: Late[Composer] = Late("the composer")
    feed_actions: Late[FeedActions] = Late("the feed actions")
    activator = Activator(
        balancing.balancer, waiters, store.activations, cid, throttles, metrics,
        composer=composer.get, builtins=feed_actions.get,
    )  # fmt: skip
    controller = Controller(
        settings=settings,
        catalog=catalog,
        activations=store.activations,
        auth_store=store.auth,
        apis=store.apis,
        api_management=ApiManagement(store.apis),
        authenticator=Authenticator(store.auth),
        activator=activator,
        waiters=waiters,
        throttles=throttles,
        metrics=metrics,
        invokers=balancing.invokers,
        log_forwarding=forwarder,
        # Parameters shown to a namespace that does not own them stay encrypted.
        **({"lock_parameters": store.ring.lock} if _encrypts(store) else {}),
    )
    composer.bind(Composer(controller))
    alarms = AlarmsProvider(
        controller, store.schedules, min_interval_s=settings.alarms_min_interval_s
    )
    feed_actions.bind(alarms.actions)
    balancing.attach(controller)
    retention = Retention(store.activations, settings.activation_retention_days)

    # Start in order; each stop goes on the stack as its part starts.
    await controller.start()  # its completions
    stack.push_async_callback(controller.close)
    if invoker is not None:
        await invoker.start()
        stack.push_async_callback(invoker.close)
    await balancing.start(controller, stack)
    # Stopped before the balancer's parts and the invoker: the remaining steps of running
    # sequences still need them.
    stack.push_async_callback(activator.close)  # its composer
    await install_catalog(catalog)
    await balancing.ready(controller)
    await alarms.start()
    stack.push_async_callback(alarms.close)  # no fires once shutting down
    retention.start()
    stack.push_async_callback(retention.close)
    # Standalone's /metrics serves its invoker's families too; a controller that
    # ``squall cluster up`` started, the supervisor's restart counts (its file).
    families: list[MetricFamilies] = [invoker.metrics] if invoker is not None else []
    if settings.supervisor_file:
        families.append(SupervisorMetrics(Path(settings.supervisor_file)))
    app = create_app(controller, *families)
    return controller, app
