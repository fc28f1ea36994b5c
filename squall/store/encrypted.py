"""The one seam where secrets are encrypted and decrypted: a :class:`Store` around any
provider's store (SQLite, PostgreSQL) that encrypts as documents go in and decrypts as
they come out, so no provider and no caller handles ciphertext.

What it encrypts (:mod:`squall.store.encryption`):

- entities: each default parameter in the body's ``parameters`` list (actions, packages
  and bindings, triggers, and the log-forwarding configuration, whose settings are kept
  as parameters), one value at a time with OpenWhisk's ``encryption`` marker;
- feed schedules: the whole body (the alarm's configuration and trigger payload), as
  ``{"encryption": "aes-256", "value": …}``; the store indexes only ``due``, never the body;
- pending activation messages (the payload with the default parameters merged in, kept
  until the activation starts): as sealed bytes.

Guarantees, beyond those of the wrapped store's contracts:

- Callers see exactly the documents they would see without it: bodies come back
  decrypted, markers removed; documents written before encryption (no marker) come back
  as they are, and are encrypted the next time they are written.
- Nothing given to ``put`` reaches the provider in plain while the ring has a key.
- A value that no key opens raises ``ProviderError`` (the API answers 5xx), never a
  ciphertext passed off as a value.
- Activation records, subjects and everything else pass through untouched.
"""

from __future__ import annotations

import builtins
from collections.abc import Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from squall.entities.activation import Activation
from squall.store.contracts import (
    LOG_FORWARDING,
    ActivationQuery,
    ActivationStore,
    ApiStore,
    AuthStore,
    Document,
    EntityStore,
    Schedule,
    ScheduleStore,
    Store,
    Unfinished,
)
from squall.store.encryption import AES256, KeyRing
from squall.store.stats import ActivationStats

#: Where a namespace's log-forwarding configuration is kept, beside its entities (its
#: settings as ``parameters``, so they are encrypted like default parameters).
#: The collections whose documents may hold default parameters.
WITH_PARAMETERS = ("actions", "packages", "triggers", LOG_FORWARDING)


def lock_body(ring: KeyRing, body: dict[str, Any]) -> dict[str, Any]:
    kvs = body.get("parameters")
    if not isinstance(kvs, list) or not kvs:
        return body
    return {**body, "parameters": ring.lock(kvs)}


def unlock_body(ring: KeyRing, body: dict[str, Any]) -> dict[str, Any]:
    kvs = body.get("parameters")
    if not isinstance(kvs, list) or not any(kv.get("encryption") is not None for kv in kvs):
        return body
    body["parameters"] = ring.unlock(kvs)  # the provider's fresh dict: ours to change
    return body


class EncryptedEntityStore:
    """:class:`EntityStore` encrypting the ``parameters`` of every document."""

    def __init__(self, inner: EntityStore, ring: KeyRing) -> None:
        self.inner = inner
        self._ring = ring

    @property
    def ring(self) -> KeyRing:
        return self._ring

    def _open(self, doc: Document) -> Document:
        return replace(doc, body=unlock_body(self._ring, doc.body))

    async def get(self, namespace: str, collection: str, name: str) -> Document:
        return self._open(await self.inner.get(namespace, collection, name))

    async def put(
        self,
        namespace: str,
        collection: str,
        name: str,
        body: dict[str, Any],
        rev: str | None,
    ) -> Document:
        stored = await self.inner.put(namespace, collection, name, lock_body(self._ring, body), rev)
        return self._open(stored)

    async def rewrite(
        self, namespace: str, collection: str, name: str, body: dict[str, Any], rev: str
    ) -> Document:
        locked = lock_body(self._ring, body)
        return self._open(await self.inner.rewrite(namespace, collection, name, locked, rev))

    async def delete(
        self, namespace: str, collection: str, name: str, rev: str | None = None
    ) -> Document:
        return self._open(await self.inner.delete(namespace, collection, name, rev))

    async def list(
        self,
        namespace: str,
        collection: str,
        *,
        package: str | None = None,
        skip: int = 0,
        limit: int | None = None,
    ) -> builtins.list[Document]:
        docs = await self.inner.list(namespace, collection, package=package, skip=skip, limit=limit)
        return [self._open(doc) for doc in docs]

    async def count(self, namespace: str, collection: str, *, package: str | None = None) -> int:
        return await self.inner.count(namespace, collection, package=package)


def sealed_schedule(body: dict[str, Any]) -> bool:
    return set(body) == {"encryption", "value"} and body["encryption"] == AES256


class EncryptedScheduleStore:
    """:class:`ScheduleStore` encrypting each schedule's body as a whole."""

    def __init__(self, inner: ScheduleStore, ring: KeyRing) -> None:
        self.inner = inner
        self._ring = ring

    def _open(self, schedule: Schedule) -> Schedule:
        if not sealed_schedule(schedule.body):
            return schedule
        body = self._ring.decrypt_value(schedule.body["value"])
        return replace(schedule, body=body)

    def _seal(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self._ring.encrypt_value(body)
        return body if text is None else {"encryption": AES256, "value": text}

    async def put(
        self, namespace: str, trigger: str, body: dict[str, Any], due: int | None, rev: str | None
    ) -> Schedule:
        stored = await self.inner.put(namespace, trigger, self._seal(body), due, rev)
        return replace(stored, body=body)

    async def get(self, namespace: str, trigger: str) -> Schedule:
        return self._open(await self.inner.get(namespace, trigger))

    async def delete(self, namespace: str, trigger: str, rev: str | None = None) -> None:
        await self.inner.delete(namespace, trigger, rev)

    async def due(self, until: int, limit: int) -> list[Schedule]:
        return [self._open(s) for s in await self.inner.due(until, limit)]

    async def next_due(self) -> int | None:
        return await self.inner.next_due()

    async def claim(self, key: str, at: int) -> bool:
        return await self.inner.claim(key, at)

    async def prune(self, before: int) -> int:
        return await self.inner.prune(before)


class EncryptedActivationStore:
    """:class:`ActivationStore` sealing the messages of pending activations (records
    pass through as they are)."""

    def __init__(self, inner: ActivationStore, ring: KeyRing) -> None:
        self.inner = inner
        self._ring = ring

    # The record passes through: the inner store's coroutine itself, not one awaiting
    # it (a warm invoke's start mark and record each cost one frame less per resume).
    def put(self, record: Activation) -> Coroutine[Any, Any, None]:
        return self.inner.put(record)

    async def put_pending(
        self, record: Activation, message: bytes | None = None, owner: str | None = None
    ) -> None:
        sealed = None if message is None else self._ring.seal(message)
        await self.inner.put_pending(record, sealed, owner)

    async def put_unless_final(self, record: Activation) -> bool:
        return await self.inner.put_unless_final(record)

    def start(self, record: Activation) -> Coroutine[Any, Any, bool]:
        return self.inner.start(record)

    async def unfinished(
        self, after: str, limit: int, owned_by: str | None = None
    ) -> builtins.list[Unfinished]:
        found = await self.inner.unfinished(after, limit, owned_by)
        return [
            u if u.message is None else replace(u, message=self._ring.unseal(u.message))
            for u in found
        ]

    async def prune(self, before_ms: int) -> int:
        return await self.inner.prune(before_ms)

    async def get(self, namespace: str, activation_id: str) -> Activation:
        return await self.inner.get(namespace, activation_id)

    async def list(self, query: ActivationQuery) -> builtins.list[Activation]:
        return await self.inner.list(query)

    async def count(self, query: ActivationQuery) -> int:
        return await self.inner.count(query)

    async def stats(self, query: ActivationQuery, bucket_ms: int = 60_000) -> ActivationStats:
        return await self.inner.stats(query, bucket_ms)

    def flush(self) -> None:
        """The SQLite store's group commit, for callers that flush it (no-op elsewhere)."""
        flush = getattr(self.inner, "flush", None)
        if flush is not None:
            flush()


class EncryptedStore:
    """A provider's :class:`Store` with its secrets encrypted; ``inner`` is the provider's
    own store (for provider-specific maintenance), ``ring`` the keys."""

    def __init__(self, inner: Store, ring: KeyRing) -> None:
        self.inner = inner
        self.ring = ring
        self._entities = EncryptedEntityStore(inner.entities, ring)
        self._activations = EncryptedActivationStore(inner.activations, ring)
        self._schedules = EncryptedScheduleStore(inner.schedules, ring)

    @property
    def entities(self) -> EncryptedEntityStore:
        return self._entities

    @property
    def activations(self) -> EncryptedActivationStore:
        return self._activations

    @property
    def auth(self) -> AuthStore:
        return self.inner.auth

    @property
    def schedules(self) -> EncryptedScheduleStore:
        return self._schedules

    @property
    def apis(self) -> ApiStore:
        # The gateway's documents hold routes, not parameters: passed through as stored.
        return self.inner.apis

    async def close(self) -> None:
        await self.inner.close()


if TYPE_CHECKING:
    # Checked by mypy only: the wrappers satisfy the contracts.
    def _conforms(
        store: EncryptedStore,
    ) -> tuple[Store, EntityStore, ActivationStore, ScheduleStore]:
        return store, store.entities, store.activations, store.schedules
