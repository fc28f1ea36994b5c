"""The cluster's load balancer: home invoker by hashing, memory slots, health.

OpenWhisk's ShardingContainerPoolBalancer, in Squall's terms:

- An action's *home invoker* is ``hash(namespace + action) mod n`` over every invoker
  ever seen (``InvokerRegistry.ordered``), so its warm containers are found again; when
  the home invoker is full or not healthy, the next candidates are ``home + k * step``
  where ``step`` is coprime with ``n`` (chosen by the same hash), so every invoker is
  tried once and different actions spread differently.
- Each controller owns ``1 / cluster_controllers`` of every invoker's memory and counts
  the memory of the activations it sent there until their completions arrive; an invoker
  whose share is used up is skipped. When every healthy invoker is full, a random healthy
  one is overloaded (its pool queues the work), as OpenWhisk does.
- No healthy invoker at all: 503 ``ServiceUnavailable``.

Activations sent and not completed are remembered with their message, so that when an
invoker goes offline, ``controller/recovery.py`` can tell which of this controller's
activations may have started there.

Concurrency: all state lives on the controller's event loop; ``publish`` takes its slot
before the first ``await``, so concurrent publishes never oversubscribe an invoker.
"""

from __future__ import annotations

import logging
import math
import random
import zlib
from dataclasses import dataclass

from squall.bus.contracts import MessagingProvider
from squall.bus.messages import ActivationMessage, Completion, invoker_topic
from squall.config import Settings
from squall.controller.health import HEALTHY, InvokerRegistry, InvokerStatus
from squall.entities.activation import WHISK_ERROR
from squall.errors import ServiceUnavailable

log = logging.getLogger("squall.controller.sharding")


@dataclass
class Dispatched:
    """An activation this controller sent and has not seen complete."""

    message: ActivationMessage
    invoker: str
    memory_mb: int
    sends: int = 1


def coprime_steps(n: int) -> list[int]:
    """Step sizes that visit every one of ``n`` invokers once from any home."""
    return [i for i in range(1, n + 1) if math.gcd(i, n) == 1] or [1]


def action_hash(namespace: str, action: str) -> int:
    return zlib.crc32(f"{namespace}{action}".encode())


class ShardingBalancer:
    def __init__(
        self,
        bus: MessagingProvider,
        registry: InvokerRegistry,
        settings: Settings,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._bus = bus
        self._registry = registry
        self._settings = settings
        self._rng = rng or random.Random()
        self._used: dict[str, int] = {}
        self.dispatched: dict[str, Dispatched] = {}

    # -- choosing -------------------------------------------------------------------

    def share_mb(self, status: InvokerStatus) -> int:
        """This controller's part of an invoker's memory."""
        return status.user_memory_mb // max(1, self._settings.cluster_controllers)

    def used_mb(self, invoker_id: str) -> int:
        return self._used.get(invoker_id, 0)

    def choose(self, namespace: str, action: str, memory_mb: int, exclude: str = "") -> str:
        """The invoker for one activation (its slot taken); ServiceUnavailable if none."""
        invokers = self._registry.ordered()
        healthy = [s for s in invokers if s.state == HEALTHY and s.id != exclude]
        if not healthy:
            raise ServiceUnavailable()
        n = len(invokers)
        h = action_hash(namespace, action)
        steps = coprime_steps(n)
        home, step = h % n, steps[h % len(steps)]
        for k in range(n):
            status = invokers[(home + k * step) % n]
            if status.state != HEALTHY or status.id == exclude:
                continue
            if self.used_mb(status.id) + memory_mb <= self.share_mb(status):
                return self._take(status.id, memory_mb)
        # Every healthy invoker is full: overload one at random; its pool queues the work.
        return self._take(self._rng.choice(healthy).id, memory_mb)

    def routable(self, exclude: str = "") -> bool:
        """Whether a healthy invoker other than ``exclude`` could take work now."""
        return any(s.state == HEALTHY and s.id != exclude for s in self._registry.ordered())

    def _take(self, invoker_id: str, memory_mb: int) -> str:
        self._used[invoker_id] = self._used.get(invoker_id, 0) + memory_mb
        return invoker_id

    def _release(self, dispatched: Dispatched) -> None:
        left = self._used.get(dispatched.invoker, 0) - dispatched.memory_mb
        self._used[dispatched.invoker] = max(0, left)

    # -- sending --------------------------------------------------------------------

    async def publish(self, message: ActivationMessage, memory_mb: int) -> str:
        invoker = self.choose(message.namespace, message.action, memory_mb)
        dispatched = Dispatched(message, invoker, memory_mb)
        self.dispatched[message.activation_id] = dispatched
        await self._send(dispatched)
        return invoker

    async def reroute(self, message: ActivationMessage, from_invoker: str) -> str:
        """Send an activation taken off ``from_invoker``'s queue (it never started there)
        to another invoker, and count it there from now on."""
        old = self.dispatched.pop(message.activation_id, None)
        if old is not None:
            self._release(old)
        memory_mb = old.memory_mb if old is not None else 256
        invoker = self.choose(message.namespace, message.action, memory_mb, exclude=from_invoker)
        dispatched = Dispatched(message, invoker, memory_mb, sends=(old.sends + 1) if old else 2)
        self.dispatched[message.activation_id] = dispatched
        await self._send(dispatched)
        log.info("activation %s moved from invoker %s to %s", message.activation_id,
                 from_invoker, invoker)  # fmt: skip
        return invoker

    async def _send(self, dispatched: Dispatched) -> None:
        message = dispatched.message
        # The key lets the bus drop a duplicate of this very send (a retry after a lost
        # acknowledgement); a re-route is a new send, so it gets a key of its own.
        key = f"{message.activation_id}/{dispatched.sends}"
        try:
            await self._bus.send(invoker_topic(dispatched.invoker), message.to_bytes(), key=key)
        except BaseException:
            self.dispatched.pop(message.activation_id, None)
            self._release(dispatched)
            raise

    # -- completing -----------------------------------------------------------------

    def on_completion(self, completion: Completion) -> None:
        """A completions listener: free the slot, count system errors against the invoker."""
        dispatched = self.dispatched.pop(completion.activation_id, None)
        if dispatched is not None:
            self._release(dispatched)
        status_code = completion.record.response.status_code
        self._registry.on_outcome(completion.invoker, status_code == WHISK_ERROR)

    def on_invoker(self, invoker_id: str) -> list[Dispatched]:
        """What this controller sent to ``invoker_id`` and has not seen complete."""
        return [d for d in self.dispatched.values() if d.invoker == invoker_id]
