"""Building a controller from its providers: the same wiring for both shapes.

``squall standalone`` passes the lean balancer (its one invoker in the same process);
``squall controller`` passes the sharding balancer and adds ``controller/cluster.py``.
"""

from __future__ import annotations

from squall.bus.contracts import MessagingProvider
from squall.config import Settings
from squall.controller.activator import Activator
from squall.controller.auth import Authenticator
from squall.controller.balancer import LoadBalancer
from squall.controller.catalog import Catalog
from squall.controller.composition import Composer
from squall.controller.core import Controller
from squall.controller.throttle import Throttles
from squall.controller.waiters import CompletionWaiters
from squall.logforwarding.forwarder import ForwardingLimits, LogForwarder
from squall.metrics.controller import ControllerMetrics
from squall.store.contracts import ActivationStore, AuthStore, EntityStore
from squall.store.encrypted import EncryptedEntityStore


def build_controller(
    settings: Settings,
    entities: EntityStore,
    activations: ActivationStore,
    auth: AuthStore,
    bus: MessagingProvider,
    balancer: LoadBalancer,
    *,
    cache_ttl_s: float | None = None,
) -> Controller:
    """A controller, not yet started (``await controller.start()``)."""
    waiters = CompletionWaiters(bus, settings.controller_id, activations)
    # Queue lengths of the invokers ``controller.invokers`` lists (set by the wiring):
    # ``invoker0`` there is the topic ``invoker.0``.
    metrics = ControllerMetrics(
        bus, lambda: [str(i["id"]).removeprefix("invoker") for i in controller.invokers()]
    )
    throttles = Throttles(settings, auth, metrics=metrics)
    waiters.add_listener(throttles.on_completion)
    activator = Activator(
        balancer, waiters, activations, settings.controller_id, throttles, metrics
    )
    forwarder = LogForwarder(
        entities,
        metrics,
        azure_url=settings.log_forwarding_azure_url,
        limits=ForwardingLimits(buffer_lines=settings.log_forwarding_buffer_lines),
    )
    # The one hook into the completion path: it copies the record's log lines, no I/O.
    waiters.add_listener(lambda completion: forwarder.submit(completion.record))
    controller = Controller(
        settings=settings,
        catalog=Catalog(entities, ttl_s=cache_ttl_s),
        activations=activations,
        auth_store=auth,
        authenticator=Authenticator(auth),
        activator=activator,
        waiters=waiters,
        throttles=throttles,
        metrics=metrics,
        log_forwarding=forwarder,
    )
    controller.activator.composer = Composer(controller)
    if isinstance(entities, EncryptedEntityStore) and entities.ring.enabled:
        controller.lock_parameters = entities.ring.lock
    return controller
