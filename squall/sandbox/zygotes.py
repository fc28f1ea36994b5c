"""One Python zygote per tenant: containers of different namespaces share no secret.

Every process forked from a zygote inherits what the zygote's interpreter drew once at
its start — above all CPython's string hash seed (``PYTHONHASHSEED``, fixed for the
life of an interpreter: ``hash()`` of a ``str``, and so the order of sets and the
collision pattern of dicts). A tenant who reads it in its own container could otherwise
flood another tenant's dictionaries with colliding keys, or learn what it hashes. So
:class:`Zygotes` keeps a zygote *per tenant* (the OpenWhisk namespace the container will
serve): each is a fresh interpreter with a seed of its own (``-I`` ignores any
``PYTHONHASHSEED`` in the environment, and none is given), and it forks only that
tenant's containers. Other per-process state is renewed in every forked child: the
``random`` module re-seeds itself from the kernel after ``fork`` (CPython registers that
at import), ``os.urandom``/``secrets`` read the kernel each time, ``tempfile`` notices
the new pid. A container whose tenant is not known (``tenant=None``: a stem cell, which
any namespace may take later) is never forked: it starts through bubblewrap, with an
interpreter and seed of its own.

Guarantees:

- :meth:`Zygotes.for_tenant` returns a zygote that has forked, and will fork, only
  containers of that tenant — or None (start the container through bubblewrap): the
  zygotes are off (one could not start, or one died), or ``limit`` zygotes all serve
  live containers. At the limit, the least recently used zygote without a live
  container is closed to make room.
- Concurrent calls for one tenant share one start.
- :meth:`close` closes every zygote; idempotent.

Event loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from squall.sandbox.zygote import Zygote

log = logging.getLogger(__name__)

#: Zygotes kept at most per factory (each is an interpreter, ~20 MB, plus its spares).
DEFAULT_LIMIT = 4


class Zygotes:
    """The zygotes of one factory, by tenant; see the module docstring.

    ``start`` starts a zygote (None when it could not: the zygotes are then turned off,
    with the warning it logged); ``closed`` is called with each zygote once it is closed.
    """

    def __init__(
        self,
        start: Callable[[str], Awaitable[Zygote | None]],
        closed: Callable[[Zygote], None],
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._start = start
        self._closed_hook = closed
        self.limit = max(1, limit)
        self.enabled = True
        # Least recently used first.
        self._running: OrderedDict[str, Zygote] = OrderedDict()
        self._starting: dict[str, asyncio.Task[Zygote | None]] = {}
        self._tenant_of: dict[str, str] = {}  # live container id -> its zygote's tenant

    @property
    def latest(self) -> Zygote | None:
        """The most recently used running zygote, if any."""
        for zygote in reversed(self._running.values()):
            if zygote.alive:
                return zygote
        return None

    def get(self, tenant: str) -> Zygote | None:
        """The running zygote of ``tenant``, if any."""
        return self._running.get(tenant)

    async def for_tenant(self, tenant: str | None) -> Zygote | None:
        """The zygote to fork a container of ``tenant`` from, or None (see above)."""
        if tenant is None or not self.enabled:
            return None
        zygote = self._running.get(tenant)
        if zygote is not None:
            if zygote.alive:
                self._running.move_to_end(tenant)
                return zygote
            log.warning("a Python zygote exited; its kind's containers start as usual")
            self.enabled = False
            await self._close(tenant)
            return None
        task = self._starting.get(tenant)
        if task is None:
            if len(self._running) + len(self._starting) >= self.limit and not await self._evict():
                return None
            task = asyncio.ensure_future(self._start_for(tenant))
            self._starting[tenant] = task
        return await asyncio.shield(task)

    def holds(self, container_id: str, zygote: Zygote) -> None:
        """Note that ``zygote`` forked the live container ``container_id``."""
        for tenant, running in self._running.items():
            if running is zygote:
                self._tenant_of[container_id] = tenant

    def released(self, container_id: str) -> None:
        """The container ``container_id`` was destroyed."""
        self._tenant_of.pop(container_id, None)

    async def close(self) -> None:
        """Close every zygote (and so their containers). Idempotent."""
        self.enabled = False
        if self._starting:
            await asyncio.gather(*self._starting.values(), return_exceptions=True)
        for tenant in list(self._running):
            await self._close(tenant)

    async def _start_for(self, tenant: str) -> Zygote | None:
        try:
            zygote = await self._start(tenant)
        finally:
            self._starting.pop(tenant, None)
        if zygote is None:
            self.enabled = False
            return None
        self._running[tenant] = zygote
        return zygote

    async def _evict(self) -> bool:
        """Close the least recently used zygote that serves no live container."""
        busy = set(self._tenant_of.values())
        for tenant in self._running:
            if tenant not in busy:
                await self._close(tenant)
                return True
        return False

    async def _close(self, tenant: str) -> None:
        zygote = self._running.pop(tenant, None)
        if zygote is not None:
            await zygote.close()
            self._closed_hook(zygote)
