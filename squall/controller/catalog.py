"""Typed access to the entity store for the controller, with a revision-checked cache.

Only actions are cached (they are read on every invoke); the cache is filled on read and
dropped on every write or delete made through this catalog, and ``on_change`` is told
(``controller/cluster.py`` broadcasts it, so other controllers ``invalidate`` their
copy). An action written through this catalog is cached as stored (its first invoke,
right after, finds it: no store read and decode, ~0.2 ms of a cold start), unless
another write or delete of the same action overlapped its write here, or a change of it
was told meanwhile: which of them the store holds is then not known, and the next read
fills the cache. A read that overlapped any change caches nothing either (its answer may
predate the change). Standalone has exactly one controller, and another process's rewrite
(``squall admin parameter-key rotate``) keeps the revision and what it means, so its cache
is always current and kept for ever; a cluster's also expires after ``ttl_s``, in case an
invalidation was missed. ``on_read`` is handed every action an invoke's lookup
(``get(..., invoking=True)``) returns for the first time, read from the store or cached
(standalone: the invoker beside it, which then needs no read of its own for that
revision, and keeps every revision it was handed). Other lookups (the update and delete
routes', a GET's, a rule's or sequence's check) hand nothing over: a revision written or
read but never invoked (a deploy loop's, a deleted action's) does not pile up there.

Concurrency: used from one event loop; the cache, the writes in flight and the change
count are read and changed between awaits only (a store call is the only await), so
no lock is needed: what a store call's await may interleave is what the overlap flags
and the change count detect.
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
        # (namespace, path) -> (action, expiry, handed to on_read yet).
        self._actions: dict[tuple[str, str], tuple[Action, float, bool]] = {}
        # Writes and deletes in flight, by (namespace, path): each one's flag says whether
        # another of the same entity overlapped it (then its result is not cached).
        self._writing: dict[tuple[str, str], list[list[bool]]] = {}
        # Changes told or made (every invalidate): a read that overlapped one may hold the
        # version before it (its store read can finish after the write's result was
        # cached), so it caches nothing.
        self._changes = 0
        self._max = max_cached
        self._ttl_s = ttl_s
        # Called with (namespace, path) after every write or delete through this catalog.
        self._on_change = on_change
        self._on_read = on_read

    def invalidate(self, namespace: str, path: str) -> None:
        """Forget ``path``'s action; a write of it in flight then caches nothing (the
        change told may be another controller's, after this one's write)."""
        key = (namespace, path)
        self._changes += 1
        self._actions.pop(key, None)
        for flag in self._writing.get(key, ()):
            flag[0] = True

    def _changed(self, namespace: str, path: str) -> None:
        self.invalidate(namespace, path)
        if self._on_change is not None:
            self._on_change(namespace, path)

    async def get(self, cls: type[E], path: EntityPath, *, invoking: bool = False) -> E:
        """The entity at ``path``. ``invoking``: the lookup of an invoke (an action's),
        whose result ``on_read`` is handed once per cached revision."""
        if cls is Action:
            key = (path.namespace, path.path)
            hit = self._actions.get(key)
            if hit is not None and (self._ttl_s is None or hit[1] > time.monotonic()):
                action, expires, handed = hit
                if invoking and not handed:  # this revision's first invoke
                    self._actions[key] = (action, expires, True)
                    self._hand(action)
                return action  # type: ignore[return-value]
        changes = self._changes
        doc = await self.store.get(path.namespace, COLLECTION_OF[cls], path.path)
        entity = cls.from_store(path, doc.body, doc.rev, doc.updated)
        if isinstance(entity, Action):
            if changes == self._changes:
                self._cache((path.namespace, path.path), entity, handed=invoking)
            if invoking:
                self._hand(entity)
        return entity

    async def put(self, entity: E, *, create: bool) -> E:
        """Store ``entity`` (create, or replace at its revision) and return it as stored."""
        path = entity.path
        key = (path.namespace, path.path)
        self.invalidate(*key)
        overlapped = self._write_begins(key)
        try:
            doc = await self.store.put(
                path.namespace,
                COLLECTION_OF[type(entity)],
                path.path,
                entity.to_store(),
                None if create else entity.rev,
            )
        finally:
            self._write_ends(key, overlapped)
        # After the write: a controller told earlier could read the old version again.
        self._changed(*key)
        stored = type(entity).from_store(path, doc.body, doc.rev, doc.updated)
        if isinstance(stored, Action) and not overlapped[0]:
            self._cache(key, stored, handed=False)
        return stored

    async def delete(self, entity: Entity) -> None:
        path = entity.path
        key = (path.namespace, path.path)
        self.invalidate(*key)
        overlapped = self._write_begins(key)
        try:
            await self.store.delete(
                path.namespace, COLLECTION_OF[type(entity)], path.path, entity.rev
            )
        finally:
            self._write_ends(key, overlapped)
        self._changed(*key)

    def _cache(self, key: tuple[str, str], action: Action, *, handed: bool) -> None:
        if len(self._actions) >= self._max:
            self._actions.clear()
        expires = time.monotonic() + self._ttl_s if self._ttl_s is not None else 0.0
        self._actions[key] = (action, expires, handed)

    def _hand(self, action: Action) -> None:
        if self._on_read is not None:
            self._on_read(action)

    def _write_begins(self, key: tuple[str, str]) -> list[bool]:
        """A write of ``key`` starts: its overlap flag, set (on it and on every write of
        ``key`` in flight) when another one is in flight."""
        flag = [False]
        others = self._writing.setdefault(key, [])
        if others:
            flag[0] = True
            for other in others:
                other[0] = True
        others.append(flag)
        return flag

    def _write_ends(self, key: tuple[str, str], flag: list[bool]) -> None:
        others = self._writing[key]
        others.remove(flag)
        if not others:
            del self._writing[key]

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
