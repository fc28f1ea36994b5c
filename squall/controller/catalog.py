"""Typed access to the entity store for the controller, with a revision-checked cache.

Only actions are cached (they are read on every invoke); the cache is filled on read and
dropped on every write or delete made through this catalog, and ``on_change`` is told
(``controller/cluster.py`` broadcasts it, so other controllers ``invalidate`` their
copy). Standalone has exactly one controller, so its cache is always current and kept
for ever; a cluster's also expires after ``ttl_s``, in case an invalidation was missed.
``on_read`` is handed every action read from the store (standalone: the invoker beside
it, which then needs no read of its own for that revision).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from squall.entities.action import Action
from squall.entities.names import EntityPath
from squall.entities.package import Package
from squall.entities.rule import Rule
from squall.entities.trigger import Trigger
from squall.store.contracts import Document, EntityStore

Entity = Action | Package | Trigger | Rule
E = TypeVar("E", Action, Package, Trigger, Rule)

COLLECTION_OF: dict[type[Any], str] = {
    Action: "actions",
    Package: "packages",
    Trigger: "triggers",
    Rule: "rules",
}


def path_of(doc: Document) -> EntityPath:
    package, _, name = doc.name.rpartition("/")
    return EntityPath(doc.namespace, package, name)


class Catalog:
    def __init__(
        self,
        store: EntityStore,
        max_cached: int = 10_000,
        ttl_s: float | None = None,
        *,
        on_change: Callable[[str, str], None] | None = None,
        on_read: Callable[[Action], None] | None = None,
    ) -> None:
        self.store = store
        self._actions: dict[tuple[str, str], tuple[Action, float]] = {}
        self._max = max_cached
        self._ttl_s = ttl_s
        # Called with (namespace, path) after every write or delete through this catalog.
        self._on_change = on_change
        self._on_read = on_read

    def invalidate(self, namespace: str, path: str) -> None:
        self._actions.pop((namespace, path), None)

    def _changed(self, namespace: str, path: str) -> None:
        self.invalidate(namespace, path)
        if self._on_change is not None:
            self._on_change(namespace, path)

    async def get(self, cls: type[E], path: EntityPath) -> E:
        if cls is Action:
            hit = self._actions.get((path.namespace, path.path))
            if hit is not None and (self._ttl_s is None or hit[1] > time.monotonic()):
                return hit[0]  # type: ignore[return-value]
        doc = await self.store.get(path.namespace, COLLECTION_OF[cls], path.path)
        entity = cls.from_store(path, doc.body, doc.rev, doc.updated)
        if isinstance(entity, Action):
            if len(self._actions) >= self._max:
                self._actions.clear()
            expires = time.monotonic() + self._ttl_s if self._ttl_s is not None else 0.0
            self._actions[(path.namespace, path.path)] = (entity, expires)
            if self._on_read is not None:
                self._on_read(entity)
        return entity

    async def put(self, entity: E, *, create: bool) -> E:
        """Store ``entity`` (create, or replace at its revision) and return it as stored."""
        path = entity.path
        self.invalidate(path.namespace, path.path)
        doc = await self.store.put(
            path.namespace,
            COLLECTION_OF[type(entity)],
            path.path,
            entity.to_store(),
            None if create else entity.rev,
        )
        # After the write: a controller told earlier could read the old version again.
        self._changed(path.namespace, path.path)
        return type(entity).from_store(path, doc.body, doc.rev, doc.updated)

    async def delete(self, entity: Entity) -> None:
        path = entity.path
        self.invalidate(path.namespace, path.path)
        await self.store.delete(path.namespace, COLLECTION_OF[type(entity)], path.path, entity.rev)
        self._changed(path.namespace, path.path)

    async def list(
        self,
        cls: type[E],
        namespace: str,
        *,
        package: str | None = None,
        skip: int = 0,
        limit: int | None = None,
    ) -> list[E]:
        docs = await self.store.list(
            namespace, COLLECTION_OF[cls], package=package, skip=skip, limit=limit
        )
        return [cls.from_store(path_of(d), d.body, d.rev, d.updated) for d in docs]

    async def count(self, cls: type[Any], namespace: str, *, package: str | None = None) -> int:
        return await self.store.count(namespace, COLLECTION_OF[cls], package=package)
