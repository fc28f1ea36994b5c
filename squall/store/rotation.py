"""Re-encrypting every stored secret under the current parameter key (a key rotation).

:func:`reencrypt` walks the namespaces of the store (every subject's, and
``whisk.system``), and rewrites each document that holds a parameter in plain (written
before encryption) or under a previous key: the entities with parameters (actions,
packages, triggers, log-forwarding configurations) and the feed schedules of triggers.

Guarantees:

- Each rewrite is a compare-and-set on the document's revision (a server writing the same
  document meanwhile wins; the document is read again and retried, a few times), so a
  rotation can run while servers serve.
- A rewritten entity keeps its revision and ``updated`` time (``EntityStore.rewrite``):
  its content is unchanged, and a running server's caches hold actions by revision — a
  standalone server's for ever, since another process's write never reaches it — so a new
  revision would make its next invoke of a cached action fail ("Action version is not
  compatible"). A server writing the document after the rewrite still needs that revision,
  as before it. Feed schedules (no cache) are written as usual.
- Idempotent: a second run after a complete one rewrites nothing.
- Pending activation messages are not rewritten: they live until their activation starts,
  so the previous key must stay configured until those are gone (seconds, normally).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from squall.errors import Conflict, NotFound
from squall.store.encrypted import WITH_PARAMETERS, EncryptedStore, sealed_schedule, unlock_body

SYSTEM_NAMESPACE = "whisk.system"
ATTEMPTS = 5


@dataclass
class RotationReport:
    """What a rotation did: documents rewritten per collection, and those it gave up on
    (written by someone else on every attempt)."""

    rewritten: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.rewritten.values())

    def count(self, collection: str) -> None:
        self.rewritten[collection] = self.rewritten.get(collection, 0) + 1


async def namespaces(store: EncryptedStore) -> list[str]:
    names = {subject.namespace for subject in await store.auth.list_subjects()}
    names.add(SYSTEM_NAMESPACE)
    return sorted(names)


async def reencrypt(store: EncryptedStore) -> RotationReport:
    """Rewrite every stale secret of ``store`` under its ring's current key."""
    report = RotationReport()
    ring = store.ring
    raw = store.entities.inner
    for namespace in await namespaces(store):
        for collection in WITH_PARAMETERS:
            for doc in await raw.list(namespace, collection):
                kvs = doc.body.get("parameters")
                if not isinstance(kvs, list) or not ring.stale(kvs):
                    continue
                await _rewrite_entity(store, namespace, collection, doc.name, report)
        for trigger in await raw.list(namespace, "triggers"):
            await _rewrite_schedule(store, namespace, trigger.name, report)
    return report


async def _rewrite_entity(
    store: EncryptedStore, namespace: str, collection: str, name: str, report: RotationReport
) -> None:
    for _ in range(ATTEMPTS):
        try:
            doc = await store.entities.inner.get(namespace, collection, name)
        except NotFound:
            return  # deleted meanwhile
        kvs = doc.body.get("parameters")
        if not isinstance(kvs, list) or not store.ring.stale(kvs):
            return  # rewritten meanwhile
        try:
            body = unlock_body(store.ring, doc.body)
            await store.entities.rewrite(namespace, collection, name, body, doc.rev)
        except Conflict:
            continue
        report.count(collection)
        return
    report.skipped.append(f"{collection}/{namespace}/{name}")


async def _rewrite_schedule(
    store: EncryptedStore, namespace: str, trigger: str, report: RotationReport
) -> None:
    for _ in range(ATTEMPTS):
        try:
            raw = await store.schedules.inner.get(namespace, trigger)
        except NotFound:
            return
        if sealed_schedule(raw.body) and store.ring.is_current(raw.body["value"]):
            return
        current = await store.schedules.get(namespace, trigger)
        try:
            await store.schedules.put(namespace, trigger, current.body, current.due, current.rev)
        except (Conflict, NotFound):
            continue
        report.count("feed schedules")
        return
    report.skipped.append(f"schedule/{namespace}/{trigger}")
