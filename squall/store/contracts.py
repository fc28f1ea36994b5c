"""The store seams: entities, activations, subjects (namespaces and keys), feed schedules,
and the API gateway's APIs.

Stores hold JSON documents (plain ``dict``s as produced by ``squall.entities``); they do
not interpret them beyond the few indexed fields named in each method. Every provider
(SQLite, PostgreSQL) passes the suites in ``tests/contract/``; :class:`Store` bundles
the five seams of one provider.

Common guarantees:

- Methods are coroutines and safe to call from many tasks at once on one event loop.
- A write that returned is durable against a crash of the process (not necessarily
  against power loss for the embedded provider); nothing is half-written: a failing
  write changes nothing.
- Bodies and records round-trip exactly: key order, and any JSON string (``\\u0000``
  included).
- After ``close()`` every method raises :class:`squall.errors.ProviderError`; so does
  every failure to reach the database (never a made-up answer such as "not found" or
  "wrong key", which would turn an outage into 404s and 401s).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, Protocol

from squall.entities.activation import Activation
from squall.store.stats import ActivationStats

# The entity collections a namespace holds.
COLLECTIONS = ("actions", "packages", "triggers", "rules")
#: A namespace's log-forwarding configuration (Adobe I/O Runtime's): one entity document.
LOG_FORWARDING = "logforwarding"


@dataclass(frozen=True, slots=True)
class Document:
    """A stored entity: its key, its revision and its JSON body.

    ``name`` is the path inside the namespace: ``hello`` or ``pkg/hello`` for an action in a
    package. ``package`` is the package part (``""`` for top-level entities).
    ``updated`` is epoch milliseconds of the last write.
    """

    namespace: str
    collection: str
    name: str
    rev: str
    body: dict[str, Any]
    updated: int

    @property
    def package(self) -> str:
        return self.name.rpartition("/")[0]


class EntityStore(Protocol):
    """Actions, packages, triggers and rules, keyed by (namespace, collection, name).

    - ``put`` with ``rev=None`` creates and raises ``Conflict("resource already exists")``
      when the document exists; with a ``rev`` it replaces and raises
      ``Conflict`` when that revision is no longer current (someone wrote in between).
      It returns the stored document with its new revision and ``updated`` time.
    - ``rewrite`` replaces the body at ``rev`` and keeps both the revision and ``updated``
      (``Conflict`` when stale or gone): only for a change that leaves the entity as users
      see it (parameters re-encrypted under a new key), so every cache keyed by revision
      (controllers' catalogs, invokers') stays right without being told.
    - ``get`` raises ``NotFound`` for a missing document.
    - ``delete`` with a ``rev`` raises ``Conflict`` when stale; returns the deleted document.
    - ``list`` is ordered newest ``updated`` first, then by name; ``package=None`` lists the
      whole namespace, ``package="p"`` only the entities inside package ``p``, ``""`` only
      top-level ones.
    """

    async def get(self, namespace: str, collection: str, name: str) -> Document: ...

    async def put(
        self,
        namespace: str,
        collection: str,
        name: str,
        body: dict[str, Any],
        rev: str | None,
    ) -> Document: ...

    async def rewrite(
        self, namespace: str, collection: str, name: str, body: dict[str, Any], rev: str
    ) -> Document: ...

    async def delete(
        self, namespace: str, collection: str, name: str, rev: str | None = None
    ) -> Document: ...

    async def list(
        self,
        namespace: str,
        collection: str,
        *,
        package: str | None = None,
        skip: int = 0,
        limit: int | None = None,
    ) -> list[Document]: ...

    async def count(
        self, namespace: str, collection: str, *, package: str | None = None
    ) -> int: ...


@dataclass(frozen=True, slots=True)
class ActivationQuery:
    """Filters for listing activations of one namespace (newest ``start`` first).

    ``name`` matches the activation's entity path: ``action`` or ``pkg/action``.
    ``since`` / ``upto`` are inclusive epoch-ms bounds on ``start``.
    """

    namespace: str
    name: str | None = None
    since: int | None = None
    upto: int | None = None
    skip: int = 0
    limit: int | None = 30


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A stored record that is still pending, as :meth:`ActivationStore.unfinished`
    lists it: ``started`` once a run of it began (:meth:`ActivationStore.start`), else
    ``message`` holds what :meth:`ActivationStore.put_pending` was given to run it
    (None when it was given nothing); ``owner`` is the owner ``put_pending`` was given
    (None: nobody in particular, e.g. a primitive activation, whose message is on a queue)."""

    record: Activation
    started: bool
    message: bytes | None
    owner: str | None = None


class ActivationStore(Protocol):
    """Activation records (:class:`~squall.entities.activation.Activation`), stored as
    their JSON (the same text in every provider, so data can move between them).

    - ``put`` stores or replaces by ``activationId`` (idempotent for the same record).
    - ``put_pending`` stores a record only if none with its id exists: a pending record
      written late never hides the final one. ``message`` (opaque bytes, e.g. the
      activation message) is kept beside the record, never in it: what it takes to run
      the activation after a crash. It is dropped when the activation starts or ends.
      ``owner`` (opaque text, e.g. a controller's id and incarnation) names who runs it;
      it is kept while the record is unfinished, also once started, and only
      ``unfinished`` reads it.
    - ``start`` is the *started* point of an activation: atomically, it stores ``record``
      (a pending record) if no record with its id exists, or marks the stored pending
      record started if no run of it started yet, and returns True — the caller may run
      it. It returns False, changing nothing, when the stored record is final or already
      started: whoever gets False must not run it. Of many callers (in all processes
      sharing the store), at most one ever gets True for an id.
    - ``unfinished(after, limit)`` lists the pending records (:class:`Unfinished`) with
      an activation id greater than ``after``, by id, at most ``limit``: what a restart
      must finish. A record written final by any method leaves the list; one written
      pending by ``put`` is listed as not started, with no message. With ``owned_by``,
      only the records whose owner begins with that text are listed (a controller's
      own, left by its earlier incarnations: ``"<controller id>/"``).
    - ``put_unless_final`` stores a record only if none with its id exists or the stored
      one is still pending (``response.status == "pending"``), atomically, and returns
      whether it stored: how an activation whose invoker died is ended with an error
      without ever overwriting a final record written just before.
    - ``prune(before_ms)`` deletes the records whose ``start`` is before ``before_ms``
      (epoch ms) and returns how many (retention). It deletes in bounded batches, so it
      never holds up other writers for long, whatever the table's size.
    - ``get`` raises ``NotFound``; a record is only visible to its own namespace.
    - ``list`` is newest ``start`` first; ``count`` applies the same filters, ignoring
      ``skip``/``limit``.
    - ``stats(query, bucket_ms)`` summarises the records ``count`` would count (the
      query's ``name``/``since``/``upto``) per ``bucket_ms`` of ``start``, as defined in
      :mod:`squall.store.stats`; it reads indexed figures, not whole records, so a window
      of 100k records costs well under a second.
    """

    async def put(self, record: Activation) -> None: ...

    async def put_pending(
        self, record: Activation, message: bytes | None = None, owner: str | None = None
    ) -> None: ...

    async def put_unless_final(self, record: Activation) -> bool: ...

    async def start(self, record: Activation) -> bool: ...

    async def unfinished(
        self, after: str, limit: int, owned_by: str | None = None
    ) -> builtins.list[Unfinished]: ...

    async def prune(self, before_ms: int) -> int: ...

    async def get(self, namespace: str, activation_id: str) -> Activation: ...

    async def list(self, query: ActivationQuery) -> list[Activation]: ...

    async def count(self, query: ActivationQuery) -> int: ...

    async def stats(self, query: ActivationQuery, bucket_ms: int = 60_000) -> ActivationStats: ...


@dataclass(frozen=True, slots=True)
class Schedule:
    """The state of a timer-driven feed for one trigger: ``body`` is the feed provider's
    JSON (its configuration and status), which the store does not interpret; ``due`` is
    the epoch-ms time of its next tick, or None when nothing is scheduled (paused, ended);
    ``rev`` changes on every write."""

    namespace: str
    trigger: str
    body: dict[str, Any]
    due: int | None
    rev: str


class ScheduleStore(Protocol):
    """Schedules of timer-driven feeds (the built-in alarms), keyed by (namespace,
    trigger), and the ticks already claimed by whoever fires them.

    - ``put`` with ``rev=None`` creates and raises ``Conflict`` when the schedule exists;
      with a ``rev`` it replaces the schedule only if that revision is current, otherwise
      ``Conflict`` (someone wrote in between). It returns the stored schedule.
    - ``get`` raises ``NotFound``; ``delete`` raises ``NotFound`` when missing and, with a
      ``rev``, ``Conflict`` when stale.
    - ``due(until, limit)`` lists schedules whose ``due`` is at or before ``until``,
      earliest first (then by namespace and trigger); ``next_due()`` is the earliest
      ``due`` of all schedules, or None.
    - ``claim(key, at)`` records ``key`` atomically: among all callers, in all processes
      sharing the store, exactly one gets True; every later claim of the same key gets
      False until ``prune`` forgot it. ``at`` (epoch ms, the tick's time) only serves
      ``prune(before)``, which forgets the claims with ``at < before`` and returns how
      many it forgot. A claim is how a tick is fired at most once by several controllers.
    """

    async def put(
        self, namespace: str, trigger: str, body: dict[str, Any], due: int | None, rev: str | None
    ) -> Schedule: ...

    async def get(self, namespace: str, trigger: str) -> Schedule: ...

    async def delete(self, namespace: str, trigger: str, rev: str | None = None) -> None: ...

    async def due(self, until: int, limit: int) -> list[Schedule]: ...

    async def next_due(self) -> int | None: ...

    async def claim(self, key: str, at: int) -> bool: ...

    async def prune(self, before: int) -> int: ...


@dataclass(frozen=True, slots=True)
class GatewayApi:
    """One API of the gateway: a namespace's swagger document for one base path.

    ``tenant`` is the id the gateway's URLs carry for the namespace
    (``/api/<tenant>/<basePath>/...``); ``swagger`` is the document as the management
    API returns it, which the store does not interpret; ``rev`` changes on every write;
    ``updated`` is epoch milliseconds of the last write.
    """

    namespace: str
    base_path: str
    tenant: str
    swagger: dict[str, Any]
    rev: str
    updated: int


class ApiStore(Protocol):
    """The API gateway's APIs, keyed by (namespace, base path).

    - ``put`` with ``rev=None`` creates and raises ``Conflict`` when the API exists; with
      a ``rev`` it replaces the API only if that revision is current, otherwise
      ``Conflict`` (someone wrote in between). It returns the stored API.
    - ``get`` raises ``NotFound``; ``delete`` raises ``NotFound`` when missing and, with a
      ``rev``, ``Conflict`` when stale.
    - ``list(namespace)`` is ordered by base path; ``of_tenant(tenant)`` lists the APIs
      whose ``tenant`` is ``tenant`` (how a gateway request finds its API), ordered by
      base path. A write is visible to every process sharing the store as soon as it
      returned: nothing here is cached.
    """

    async def put(
        self,
        namespace: str,
        base_path: str,
        tenant: str,
        swagger: dict[str, Any],
        rev: str | None,
    ) -> GatewayApi: ...

    async def get(self, namespace: str, base_path: str) -> GatewayApi: ...

    async def delete(self, namespace: str, base_path: str, rev: str | None = None) -> None: ...

    async def list(self, namespace: str) -> builtins.list[GatewayApi]: ...

    async def of_tenant(self, tenant: str) -> builtins.list[GatewayApi]: ...


@dataclass(frozen=True, slots=True)
class Subject:
    """A namespace with its credentials. ``key`` is only ever set right after creation."""

    namespace: str
    uuid: str
    key: str | None = None

    @property
    def auth(self) -> str:
        if self.key is None:
            raise ValueError("the key of a stored subject is not kept")
        return f"{self.uuid}:{self.key}"


class AuthStore(Protocol):
    """Namespaces, their ``uuid:key`` credentials, and per-namespace limits.

    - Keys are stored hashed; ``authenticate`` compares in constant time and never logs
      the key. A wrong key and an unknown uuid are indistinguishable (both ``None``).
    - ``create_subject`` raises ``Conflict`` when the namespace exists, unless
      ``rotate=True``, which replaces its key (old key stops working at once).
    - Limits are a JSON object per namespace; unknown namespace → ``{}``.
    - Action keys: a namespace has at most one, a second ``uuid:key`` credential that
      ``authenticate`` accepts as the namespace itself (``Subject(namespace, uuid)``),
      with the same hashing and constant-time guarantees. The invoker gives it to the
      namespace's actions; its key is derived from a platform secret the store never
      sees (``keys.derive_key``), and only the key's hash is stored.
    - ``add_action_key`` stores ``uuid`` and the hash of ``key`` unless the namespace
      already has an action key, and returns the uuid stored afterwards: its own, or the
      one that was there (a concurrent adder's, when two race). ``None`` when the
      namespace has no subject: an action key never exists without its subject.
      ``Conflict`` when ``uuid`` is another namespace's action key uuid.
    - ``get_action_key`` returns the namespace's action key uuid, or ``None``.
    - ``delete_action_key`` removes it (``False`` when there was none); its key stops
      authenticating at once. ``delete_subject`` removes it as well; rotating the
      subject's own key (``create_subject(rotate=True)``) leaves it alone.
    """

    async def create_subject(
        self,
        namespace: str,
        *,
        uuid: str | None = None,
        key: str | None = None,
        rotate: bool = False,
    ) -> Subject: ...

    async def get_subject(self, namespace: str) -> Subject: ...

    async def delete_subject(self, namespace: str) -> None: ...

    async def list_subjects(self) -> list[Subject]: ...

    async def authenticate(self, uuid: str, key: str) -> Subject | None: ...

    async def get_limits(self, namespace: str) -> dict[str, Any]: ...

    async def set_limits(self, namespace: str, limits: dict[str, Any]) -> None: ...

    async def add_action_key(self, namespace: str, uuid: str, key: str) -> str | None: ...

    async def get_action_key(self, namespace: str) -> str | None: ...

    async def delete_action_key(self, namespace: str) -> bool: ...


class Store(Protocol):
    """The five stores of one provider, opened together (``squall.store.factory``).

    ``close()`` writes what is pending and releases the connections; idempotent.
    """

    @property
    def entities(self) -> EntityStore: ...

    @property
    def activations(self) -> ActivationStore: ...

    @property
    def auth(self) -> AuthStore: ...

    @property
    def schedules(self) -> ScheduleStore: ...

    @property
    def apis(self) -> ApiStore: ...

    async def close(self) -> None: ...
