"""Which container backend runs which kind: one invoker, several factories.

A ``blackbox`` action with a custom image runs as kind ``blackbox:<image>``
(:func:`squall.sandbox.contracts.image_kind`); only the Docker backend runs those.
Built-in kinds run on the process sandbox unless the operator chose Docker for them
(``SQUALL_CONTAINER_BACKEND=docker``).

:class:`BackendRouter` is a ``ContainerFactory`` made of others: ``create`` goes to the
first factory that ``supports`` the kind, in the order given. Its guarantees are those of
the factory it picked; ``close`` closes every factory, the first given last (the process
sandbox, which owns the sandbox network the others borrow, goes last).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from squall.errors import ContainerError
from squall.sandbox.contracts import Container, ContainerFactory, image_of
from squall.sandbox.interpreters import Runtimes


class BackendRouter:
    """Routes each ``create`` to the first factory supporting its kind (see above).
    ``runtimes``: the built-in kinds of this host (what ``GET /`` advertises)."""

    def __init__(self, factories: Sequence[ContainerFactory], runtimes: Runtimes) -> None:
        if not factories:
            raise ValueError("a router needs at least one factory")
        self.factories = tuple(factories)
        self.runtimes = runtimes

    async def start(self) -> None:
        """Start the factories that have a start step (the Docker backend's connection
        and leftover clean-up); ContainerError from the first that fails."""
        for factory in self.factories:
            start = getattr(factory, "start", None)
            if start is not None:
                await start()

    def supports(self, kind: str) -> bool:
        return any(f.supports(kind) for f in self.factories)

    def forks(self, kind: str, tenant: str | None) -> bool:
        """Whether the backend of ``kind`` would fork its container for ``tenant`` from a
        running zygote (the process sandbox's ``forks``; False for a backend without)."""
        factory = next((f for f in self.factories if f.supports(kind)), None)
        forks = getattr(factory, "forks", None)
        return bool(forks(kind, tenant)) if forks is not None else False

    def factory_for(self, kind: str) -> ContainerFactory:
        for factory in self.factories:
            if factory.supports(kind):
                return factory
        image = image_of(kind)
        if image is not None:
            raise ContainerError(
                f"the image '{image}' cannot run here: this invoker has no Docker backend"
            )
        raise ContainerError(f"no container backend of this invoker runs kind {kind!r}")

    async def create(
        self,
        kind: str,
        memory_mb: int,
        env: Mapping[str, str] | None = None,
        *,
        network: bool = True,
        tenant: str | None = None,
        idle: bool = False,
    ) -> Container:
        return await self.factory_for(kind).create(
            kind, memory_mb, env, network=network, tenant=tenant, idle=idle
        )

    async def close(self) -> None:
        for factory in reversed(self.factories):
            await factory.close()
