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
from squall.store.contracts import ActivationStore, AuthStore, EntityStore


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
    throttles = Throttles(settings, auth)
    waiters.add_listener(throttles.on_completion)
    controller = Controller(
        settings=settings,
        catalog=Catalog(entities, ttl_s=cache_ttl_s),
        activations=activations,
        auth_store=auth,
        authenticator=Authenticator(auth),
        activator=Activator(balancer, waiters, activations, settings.controller_id, throttles),
        waiters=waiters,
        throttles=throttles,
    )
    controller.activator.composer = Composer(controller)
    return controller
