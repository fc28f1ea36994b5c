"""What a controller adds in a cluster: the health-test action, and cache invalidation
across controllers.

Standalone has none of this (one controller, one invoker in the same process, the lean
balancer); the sharding balancer's provider in ``squall/system.py`` builds these beside
the invoker registry (``health.py``) and the recovery of dead invokers' work
(``recovery.py``), around the same :class:`Controller`.

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
from collections.abc import Callable

from squall.bus.contracts import MessagingProvider, Subscription
from squall.bus.messages import (
    INVALIDATION_SUBJECT,
    ActivationMessage,
    Invalidation,
    MessageError,
    invoker_topic,
)
from squall.controller.catalog import Catalog
from squall.controller.waiters import CompletionWaiters
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


def is_health_test(message: ActivationMessage) -> bool:
    """Whether ``message`` is a health test (:class:`HealthTest`): a probe of the invoker
    whose queue it is on, never work to move to another one."""
    return message.namespace == SYSTEM_NAMESPACE and message.transid.startswith("health-")


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


class HealthTest:
    """Runs ``/whisk.system/invokerHealthTestAction`` on one invoker, straight to its
    topic (the balancer is bypassed: the invoker is not usable yet); the registry's
    ``health_test``. :meth:`start` creates the action if no controller did yet."""

    def __init__(
        self,
        bus: MessagingProvider,
        waiters: CompletionWaiters,
        catalog: Catalog,
        controller_id: str,
    ) -> None:
        self._bus = bus
        self._waiters = waiters
        self._catalog = catalog
        self._id = controller_id
        self._action: Action | None = None

    async def start(self) -> None:
        self._action = await ensure_health_action(self._catalog)

    async def __call__(self, invoker_id: str) -> bool:
        """Run the health-test action on ``invoker_id``; True when it succeeded."""
        action = self._action or await ensure_health_action(self._catalog)
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
        waiters = self._waiters
        waiters.register(activation_id)
        try:
            await self._bus.send(invoker_topic(invoker_id), message.to_bytes(), key=activation_id)
        except ProviderError:
            waiters.forget(activation_id)
            return False
        except BaseException:  # cancelled (closing): nobody will wait for it
            waiters.forget(activation_id)
            raise
        record = await waiters.wait(activation_id, HEALTH_TEST_TIMEOUT_S, SYSTEM_NAMESPACE)
        passed = record is not None and record.response.status_code == SUCCESS
        log.info("health test of invoker %s: %s", invoker_id, "passed" if passed else "failed")
        return passed


class CacheInvalidation:
    """Tells the other controllers which cached entity changed here (:meth:`changed`, the
    catalog's ``on_change``) and drops what they changed from this controller's cache
    (:meth:`start` listens, with the catalog's ``invalidate``)."""

    def __init__(self, bus: MessagingProvider, controller_id: str) -> None:
        self._bus = bus
        self._id = controller_id
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, invalidate: Callable[[str, str], None]) -> None:
        subscription = await self._bus.subscribe(INVALIDATION_SUBJECT)
        task = asyncio.create_task(self._listen(subscription, invalidate), name="invalidations")
        self._tasks.append(task)

    def changed(self, namespace: str, path: str) -> None:
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

    async def _listen(
        self, subscription: Subscription, invalidate: Callable[[str, str], None]
    ) -> None:
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
                invalidate(change.namespace, change.path)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
