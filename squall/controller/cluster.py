"""What a controller adds in a cluster: invoker health, the health-test action, moving
work off dead invokers, and cache invalidation across controllers.

Standalone has none of this (one controller, one invoker in the same process, the lean
balancer); ``squall controller`` builds a :class:`ClusterControl` around the same
:class:`Controller` and starts it with the controller.

- **Health test**: an invoker that appears (or comes back) gets no work until it ran
  ``/whisk.system/invokerHealthTestAction`` — a no-op Node.js action created at start —
  sent straight to its topic, bypassing the balancer, as OpenWhisk does.
- **Invalidation**: every controller caches actions by name; a write through one
  controller is broadcast on ``cacheInvalidation`` and the others drop their copy.
  Broadcasts are not durable: a controller that misses one (reconnecting) would keep a
  stale action, which is why a cluster's catalog also keeps actions for at most
  ``CACHE_TTL_S`` (set where the controller is built).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from squall.bus.contracts import MessagingProvider, Subscription
from squall.bus.messages import (
    INVALIDATION_SUBJECT,
    ActivationMessage,
    Invalidation,
    MessageError,
    invoker_topic,
)
from squall.controller.catalog import Catalog
from squall.controller.core import Controller
from squall.controller.health import InvokerRegistry
from squall.controller.recovery import Recovery
from squall.controller.sharding import ShardingBalancer
from squall.entities.action import Action
from squall.entities.activation import SUCCESS, new_activation_id, now_ms
from squall.entities.kinds import CodeExec
from squall.entities.names import EntityPath
from squall.errors import Conflict, NotFound, ProviderError

log = logging.getLogger("squall.controller.cluster")

SYSTEM_NAMESPACE = "whisk.system"
HEALTH_ACTION = "invokerHealthTestAction"
HEALTH_TEST_TIMEOUT_S = 30.0  # a cold start of a Node.js container, with room
CACHE_TTL_S = 5.0


def health_action() -> Action:
    return Action(
        path=EntityPath(SYSTEM_NAMESPACE, "", HEALTH_ACTION),
        exec=CodeExec(kind="nodejs:20", code="function main() { return {}; }", binary=False),
        # No API key: whisk.system has no subject, and a probe needs none.
        annotations=[
            {"key": "provide-api-key", "value": False},
            {"key": "exec", "value": "nodejs:20"},
        ],
    )


async def ensure_health_action(catalog: Catalog) -> Action:
    """The health-test action, created by whichever controller starts first."""
    for _ in range(3):
        try:
            return await catalog.get(Action, health_action().path)
        except NotFound:
            pass
        try:
            return await catalog.put(health_action(), create=True)
        except Conflict:
            continue  # another controller created it meanwhile: read theirs
    return await catalog.get(Action, health_action().path)


class ClusterControl:
    def __init__(
        self,
        controller: Controller,
        bus: MessagingProvider,
        registry: InvokerRegistry,
        balancer: ShardingBalancer,
    ) -> None:
        self.controller = controller
        self.registry = registry
        self.balancer = balancer
        self._bus = bus
        self._id = controller.settings.controller_id
        self.recovery = Recovery(
            self._id,
            bus,
            registry,
            balancer,
            controller.waiters,
            controller.activations,
            metrics=controller.metrics,
        )
        registry.health_test = self.health_test
        controller.catalog.on_change = self._changed
        self._tasks: list[asyncio.Task[None]] = []
        self._health_action: Action | None = None

    async def start(self) -> None:
        self._health_action = await ensure_health_action(self.controller.catalog)
        subscription = await self._bus.subscribe(INVALIDATION_SUBJECT)
        self._tasks.append(asyncio.create_task(self._listen(subscription), name="invalidations"))
        await self.registry.start()

    # -- health test ----------------------------------------------------------------

    async def health_test(self, invoker_id: str) -> bool:
        """Run the health-test action on ``invoker_id``; True when it succeeded."""
        action = self._health_action or await ensure_health_action(self.controller.catalog)
        activation_id = new_activation_id()
        message = ActivationMessage(
            transid=f"health-{activation_id}",
            activation_id=activation_id,
            namespace=SYSTEM_NAMESPACE,
            subject=SYSTEM_NAMESPACE,
            action=action.path.fqn,
            revision=action.rev,
            content={},
            blocking=True,
            controller=self._id,
            accepted_ms=now_ms(),
        )
        waiters = self.controller.waiters
        waiters.register(activation_id)
        try:
            await self._bus.send(invoker_topic(invoker_id), message.to_bytes(), key=activation_id)
        except ProviderError:
            waiters.forget(activation_id)
            return False
        record = await waiters.wait(activation_id, HEALTH_TEST_TIMEOUT_S, SYSTEM_NAMESPACE)
        passed = record is not None and record.response.status_code == SUCCESS
        log.info("health test of invoker %s: %s", invoker_id, "passed" if passed else "failed")
        return passed

    # -- cache invalidation -----------------------------------------------------------

    def _changed(self, namespace: str, path: str) -> None:
        data = Invalidation(self._id, namespace, path).to_bytes()
        task = asyncio.create_task(self._publish(data))
        self._tasks.append(task)
        task.add_done_callback(self._tasks_done)

    def _tasks_done(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    async def _publish(self, data: bytes) -> None:
        try:
            await self._bus.publish(INVALIDATION_SUBJECT, data)
        except ProviderError:
            log.warning("could not broadcast a cache invalidation")

    async def _listen(self, subscription: Subscription) -> None:
        while True:
            try:
                data = await subscription.next()
            except ProviderError:
                return
            try:
                change = Invalidation.from_bytes(data)
            except MessageError:
                continue
            if change.controller != self._id:
                self.controller.catalog.invalidate(change.namespace, change.path)

    async def close(self) -> None:
        await self.recovery.close()
        await self.registry.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
