"""The invoker's health pings: every ping interval an ``InvokerPing`` (capacity, memory
in use) on the health subject; controllers route work only to invokers they hear from.
Part of :class:`~squall.invoker.service.Invoker`."""

from __future__ import annotations

import asyncio
import logging

from squall.bus.contracts import MessagingProvider
from squall.bus.messages import HEALTH_SUBJECT, INVOKER_UP, InvokerPing
from squall.entities.activation import now_ms
from squall.invoker.pool import ContainerPool

log = logging.getLogger("squall.invoker")


class Pings:
    """Sending pings; the attributes are set by the invoker's constructor."""

    id: str
    pool: ContainerPool
    _bus: MessagingProvider
    _ping_interval_s: float
    _incarnation: str

    async def _pings(self) -> None:
        while True:
            await asyncio.sleep(self._ping_interval_s)
            try:
                await self._ping(INVOKER_UP)
            except Exception:
                log.exception("could not send a health ping")

    async def _ping(self, state: str) -> None:
        ping = InvokerPing(
            invoker=self.id,
            user_memory_mb=self.pool.capacity_mb,
            state=state,
            sent_ms=now_ms(),
            busy_mb=self.pool.used_mb,
            containers=len(self.pool.containers()),
            incarnation=self._incarnation,
        )
        await self._bus.publish(HEALTH_SUBJECT, ping.to_bytes())
