"""One Python zygote per tenant and Python kind: containers of different namespaces share
no secret.

Every process forked from a zygote inherits what the zygote's interpreter drew once at
its start — above all CPython's string hash seed (``PYTHONHASHSEED``, fixed for the
life of an interpreter: ``hash()`` of a ``str``, and so the order of sets and the
collision pattern of dicts). A tenant who reads it in its own container could otherwise
flood another tenant's dictionaries with colliding keys, or learn what it hashes. So
:class:`Zygotes` keeps a zygote *per tenant* (the OpenWhisk namespace the container will
serve) and Python kind (a zygote runs its kind's interpreter and library set, so a
namespace using ``python:3.11`` and ``python:3.13`` has two): each is a fresh
interpreter with a seed of its own (``-I`` ignores any ``PYTHONHASHSEED`` in the
environment, and none is given), and it forks only that tenant's containers of its
kind. Other per-process state is renewed in every forked child: the
``random`` module re-seeds itself from the kernel after ``fork`` (CPython registers that
at import), ``os.urandom``/``secrets`` read the kernel each time, ``tempfile`` notices
the new pid. A container whose tenant is not known (``tenant=None``: a stem cell, which
any namespace may take later) is never forked: it starts through bubblewrap, with an
interpreter and seed of its own.

Guarantees:

- :meth:`Zygotes.for_tenant` returns a zygote that has forked, and will fork, only
  containers of that tenant and kind — or None (start the container through
  bubblewrap): the zygotes are off, or off for that kind (one of it could not start, or
  one died), or ``limit`` zygotes (of every tenant and kind together: memory stays
  bounded) all serve live containers. At the limit, the least recently used zygote
  without a live container is closed to make room.
- Concurrent calls for one tenant and kind share one start.
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

#: Zygotes kept at most per factory (each is an interpreter, ~20 MB, plus its spares),
#: of every tenant and kind together.
DEFAULT_LIMIT = 4

#: What a zygote is kept for: (tenant, Python kind).
Key = tuple[str, str]


class Zygotes:
    """The zygotes of one factory, by tenant and kind; see the module docstring.

    ``start`` starts a zygote for a tenant and kind (None when it could not: that kind's
    zygotes are then turned off, with the warning it logged); ``closed`` is called with
    each zygote once it is closed.
    """

    def __init__(
        self,
        start: Callable[[str, str], Awaitable[Zygote | None]],
        closed: Callable[[Zygote], None],
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._start = start
        self._closed_hook = closed
        self.limit = max(1, limit)
        self.enabled = True
        #: Kinds whose zygote could not start or died: their containers start as usual.
        self.off: set[str] = set()
        # Least recently used first.
        self._running: OrderedDict[Key, Zygote] = OrderedDict()
        self._starting: dict[Key, asyncio.Task[Zygote | None]] = {}
        self._key_of: dict[str, Key] = {}  # live container id -> its zygote's key

    @property
    def latest(self) -> Zygote | None:
        """The most recently used running zygote, if any."""
        for zygote in reversed(self._running.values()):
            if zygote.alive:
                return zygote
        return None

    def __len__(self) -> int:
        """How many zygotes run or start (what ``limit`` caps)."""
        return len(self._running) + len(self._starting)

    def get(self, tenant: str, kind: str) -> Zygote | None:
        """The running zygote of ``tenant`` for ``kind``, if any."""
        return self._running.get((tenant, kind))

    async def for_tenant(self, tenant: str | None, kind: str) -> Zygote | None:
        """The zygote to fork a container of ``kind`` for ``tenant`` from, or None (see
        above)."""
        if tenant is None or not self.enabled or kind in self.off:
            return None
        key = (tenant, kind)
        zygote = self._running.get(key)
        if zygote is not None:
            if zygote.alive:
                self._running.move_to_end(key)
                return zygote
            log.warning("a %s zygote exited; %s containers start as usual", kind, kind)
            self.off.add(kind)
            await self._close(key)
            return None
        task = self._starting.get(key)
        if task is None:
            if len(self) >= self.limit and not await self._evict():
                return None
            task = asyncio.ensure_future(self._start_for(key))
            self._starting[key] = task
        return await asyncio.shield(task)

    def holds(self, container_id: str, zygote: Zygote) -> None:
        """Note that ``zygote`` forked the live container ``container_id``."""
        for key, running in self._running.items():
            if running is zygote:
                self._key_of[container_id] = key

    def released(self, container_id: str) -> None:
        """The container ``container_id`` was destroyed."""
        self._key_of.pop(container_id, None)

    async def close(self) -> None:
        """Close every zygote (and so their containers). Idempotent."""
        self.enabled = False
        if self._starting:
            await asyncio.gather(*self._starting.values(), return_exceptions=True)
        for key in list(self._running):
            await self._close(key)

    async def _start_for(self, key: Key) -> Zygote | None:
        try:
            zygote = await self._start(*key)
        finally:
            self._starting.pop(key, None)
        if zygote is None:
            self.off.add(key[1])  # the kind's interpreter cannot run a zygote here
            return None
        self._running[key] = zygote
        return zygote

    async def _evict(self) -> bool:
        """Close the least recently used zygote (of any tenant and kind) that serves no
        live container."""
        busy = set(self._key_of.values())
        for key in self._running:
            if key not in busy:
                await self._close(key)
                return True
        return False

    async def _close(self, key: Key) -> None:
        zygote = self._running.pop(key, None)
        if zygote is not None:
            await zygote.close()
            self._closed_hook(zygote)
