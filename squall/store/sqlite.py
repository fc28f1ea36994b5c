"""The embedded store: entities, activations, subjects, feed schedules and
gateway APIs in one SQLite file.

``SqliteStore.open(path)`` opens (creating and migrating as needed) one database file, or
``":memory:"``, and exposes the seams of :mod:`squall.store.contracts` as
attributes sharing that one connection::

    store = await SqliteStore.open(home / "squall.db")
    store.entities     # EntityStore
    store.activations  # ActivationStore
    store.auth         # AuthStore
    store.schedules    # ScheduleStore
    store.apis         # ApiStore
    await store.close()

The stores are separate objects because EntityStore and ActivationStore both name their
methods ``get``/``put``/``list``/``count`` with different signatures.

Guarantees, beyond those of the contracts:

- Every method runs to completion without awaiting, on the event-loop thread (see
  :mod:`squall.store.sqlite_schema` for why that is the fast choice), so calls from many
  tasks never interleave; read-check-write sequences also run in ``BEGIN IMMEDIATE``
  transactions, which keeps them atomic against other processes using the same file.
- Bodies are stored as JSON text (orjson); every returned body is a fresh ``dict`` the
  caller may mutate.
- ``updated`` times come from the ``clock`` given to :meth:`SqliteStore.open` (epoch ms;
  wall clock by default).
- After ``close()`` every method raises ``ProviderError("store is closed")``.
"""

from __future__ import annotations

import builtins
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson

from squall.errors import Conflict, NotFound
from squall.store.contracts import Document
from squall.store.records import (
    EXISTS,
    STALE,
    Clock,
    entity_filter,
    next_rev,
    wall_clock_ms,
)
from squall.store.sqlite_activations import SqliteActivationStore
from squall.store.sqlite_apis import SqliteApiStore
from squall.store.sqlite_auth import SqliteAuthStore
from squall.store.sqlite_schedules import SqliteScheduleStore
from squall.store.sqlite_schema import Database, connect, dumps_body, limit_offset

if TYPE_CHECKING:
    from squall.store.contracts import (
        ActivationStore,
        ApiStore,
        AuthStore,
        EntityStore,
        ScheduleStore,
    )


class SqliteEntityStore:
    """:class:`~squall.store.contracts.EntityStore` over the ``entities`` table."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get(self, namespace: str, collection: str, name: str) -> Document:
        with self._db.autocommit() as conn:
            row = conn.execute(
                "SELECT rev, body, updated FROM entities"
                " WHERE namespace = ? AND collection = ? AND name = ?",
                (namespace, collection, name),
            ).fetchone()
        if row is None:
            raise NotFound()
        return Document(namespace, collection, name, row[0], orjson.loads(row[1]), row[2])

    async def put(
        self,
        namespace: str,
        collection: str,
        name: str,
        body: dict[str, Any],
        rev: str | None,
    ) -> Document:
        text = dumps_body(body)
        updated = self._clock()
        key = (namespace, collection, name)
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT rev FROM entities WHERE namespace = ? AND collection = ? AND name = ?",
                key,
            ).fetchone()
            if rev is None:
                if row is not None:
                    raise Conflict(EXISTS)
                new_rev = next_rev(None)
                conn.execute(
                    "INSERT INTO entities"
                    " (namespace, collection, name, package, rev, body, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*key, name.rpartition("/")[0], new_rev, text, updated),
                )
            else:
                # A revision for a document that is gone is as stale as an old one.
                if row is None or row[0] != rev:
                    raise Conflict(STALE)
                new_rev = next_rev(rev)
                conn.execute(
                    "UPDATE entities SET rev = ?, body = ?, updated = ?"
                    " WHERE namespace = ? AND collection = ? AND name = ?",
                    (new_rev, text, updated, *key),
                )
        return Document(namespace, collection, name, new_rev, orjson.loads(text), updated)

    async def rewrite(
        self, namespace: str, collection: str, name: str, body: dict[str, Any], rev: str
    ) -> Document:
        text = dumps_body(body)
        with self._db.transaction() as conn:
            row = conn.execute(
                "UPDATE entities SET body = ?"
                " WHERE namespace = ? AND collection = ? AND name = ? AND rev = ?"
                " RETURNING updated",
                (text, namespace, collection, name, rev),
            ).fetchone()
            if row is None:
                raise Conflict(STALE)
        return Document(namespace, collection, name, rev, orjson.loads(text), row[0])

    async def delete(
        self, namespace: str, collection: str, name: str, rev: str | None = None
    ) -> Document:
        key = (namespace, collection, name)
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT rev, body, updated FROM entities"
                " WHERE namespace = ? AND collection = ? AND name = ?",
                key,
            ).fetchone()
            if row is None:
                raise NotFound()
            if rev is not None and row[0] != rev:
                raise Conflict(STALE)
            conn.execute(
                "DELETE FROM entities WHERE namespace = ? AND collection = ? AND name = ?", key
            )
        return Document(namespace, collection, name, row[0], orjson.loads(row[1]), row[2])

    async def list(
        self,
        namespace: str,
        collection: str,
        *,
        package: str | None = None,
        skip: int = 0,
        limit: int | None = None,
    ) -> builtins.list[Document]:
        where, params = entity_filter(namespace, collection, package, "?")
        with self._db.autocommit() as conn:
            rows = conn.execute(
                f"SELECT name, rev, body, updated FROM entities WHERE {where}"
                " ORDER BY updated DESC, name LIMIT ? OFFSET ?",
                (*params, *limit_offset(skip, limit)),
            ).fetchall()
        return [
            Document(namespace, collection, name, rev, orjson.loads(body), updated)
            for name, rev, body, updated in rows
        ]

    async def count(self, namespace: str, collection: str, *, package: str | None = None) -> int:
        where, params = entity_filter(namespace, collection, package, "?")
        with self._db.autocommit() as conn:
            row = conn.execute(f"SELECT count(*) FROM entities WHERE {where}", params).fetchone()
        return int(row[0])


class SqliteStore:
    """One SQLite database holding all the stores; see the module docstring."""

    def __init__(self, db: Database, *, path: str, clock: Clock = wall_clock_ms) -> None:
        self._db = db
        self.path = path
        self.entities = SqliteEntityStore(db, clock)
        self.activations = SqliteActivationStore(db)
        self.auth = SqliteAuthStore(db, clock)
        self.schedules = SqliteScheduleStore(db)
        self.apis = SqliteApiStore(db, clock)

    @classmethod
    async def open(cls, path: str | Path, *, clock: Clock = wall_clock_ms) -> SqliteStore:
        """Open ``path`` (a file, created with its directory if missing, or
        ``":memory:"``), apply pending schema migrations, and return the store.

        A coroutine although the work is synchronous, so that every store provider
        (PostgreSQL needs to await its pool) is opened the same way.
        """
        return cls(connect(path), path=str(path), clock=clock)

    async def close(self) -> None:
        """Write what is pending, close the database; idempotent. Every store method
        raises afterwards."""
        if not self._db.closed:
            self.activations.flush()
        self._db.close()

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


if TYPE_CHECKING:
    # Checked by mypy only: the attributes satisfy the contracts.
    def _conforms(
        store: SqliteStore,
    ) -> tuple[EntityStore, ActivationStore, AuthStore, ScheduleStore, ApiStore]:
        return store.entities, store.activations, store.auth, store.schedules, store.apis
