"""Deleting activation records older than the retention period, once an hour.

Every controller of a cluster runs it; deleting what another already deleted costs one
cheap query, so they need no coordination. ``activation_retention_days`` 0 keeps records
for ever (the task is not started).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from squall.entities.activation import now_ms
from squall.errors import ProviderError
from squall.store.contracts import ActivationStore

log = logging.getLogger("squall.controller.retention")

PERIOD_S = 3600.0
DAY_MS = 86_400_000


class Retention:
    def __init__(
        self, activations: ActivationStore, days: float, *, period_s: float = PERIOD_S
    ) -> None:
        self._activations = activations
        self._days = days
        self._period_s = period_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._days > 0:
            self._task = asyncio.create_task(self._run(), name="activation-retention")

    async def prune_once(self) -> int:
        """Delete the records older than the retention period; how many went."""
        before = now_ms() - int(self._days * DAY_MS)
        removed = await self._activations.prune(before)
        if removed:
            log.info("deleted %d activation records older than %g days", removed, self._days)
        return removed

    async def _run(self) -> None:
        while True:
            try:
                await self.prune_once()
            except ProviderError as error:
                log.warning("activation retention: %s", error)
            await asyncio.sleep(self._period_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
