"""The controller: everything a request handler needs, wired once at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from squall.config import Settings
from squall.controller.activator import Activator
from squall.controller.apimgmt import ApiManagement
from squall.controller.auth import Authenticator, Identity
from squall.controller.catalog import Catalog
from squall.controller.throttle import Throttles
from squall.controller.waiters import CompletionWaiters
from squall.logforwarding.forwarder import LogForwarder
from squall.metrics.controller import ControllerMetrics
from squall.store.contracts import ActivationStore, ApiStore, AuthStore


@dataclass
class Controller:
    settings: Settings
    catalog: Catalog
    activations: ActivationStore
    auth_store: AuthStore
    authenticator: Authenticator
    activator: Activator
    waiters: CompletionWaiters
    throttles: Throttles
    metrics: ControllerMetrics
    # The API gateway's APIs, and their management (routes/apimgmt.py, routes/gateway.py).
    apis: ApiStore
    api_management: ApiManagement

    # Sends activation logs to namespaces' log-forwarding destinations (fed by a
    # completion listener; squall/logforwarding/forwarder.py).
    log_forwarding: LogForwarder
    # The invokers and their health (``/invokers``): standalone's one, or the cluster's.
    invokers: Callable[[], list[dict[str, Any]]] = field(default=lambda: [])
    # How default parameters are shown to a reader who does not own them (a published
    # package of another namespace): encrypted, as OpenWhisk shows them to everyone.
    # Only their owner sees them decrypted (docs/security.md). Without a parameter key
    # (a cluster started without one) they are stored and shown in plain, as in OpenWhisk.
    lock_parameters: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = field(
        default=lambda kvs: kvs
    )

    def parameters_for(
        self, owner: str, reader: str, kvs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """``kvs`` of namespace ``owner`` as namespace ``reader`` may see them."""
        return kvs if owner == reader else self.lock_parameters(kvs)

    async def start(self) -> None:
        await self.waiters.start()

    async def close(self) -> None:
        await self.waiters.close()
        await self.throttles.close()

        await self.log_forwarding.close()


def controller_of(request: Request) -> Controller:
    ctl = request.app.state.controller
    assert isinstance(ctl, Controller)
    return ctl


async def reader(request: Request) -> tuple[Controller, Identity, str]:
    """Like :func:`caller`, but the path may name another namespace (``_`` resolved):
    for routes that serve published packages, which check entitlement themselves."""
    ctl = controller_of(request)
    identity = await ctl.authenticator.authenticate(request)
    namespace = request.path_params.get("namespace", "_")
    return ctl, identity, identity.namespace if namespace == "_" else namespace


async def caller(request: Request) -> tuple[Controller, Identity, str]:
    """The controller, the authenticated caller, and the path's namespace resolved."""
    ctl = controller_of(request)
    identity = await ctl.authenticator.authenticate(request)
    namespace = identity.resolve(request.path_params.get("namespace", "_"))
    return ctl, identity, namespace
