"""The cluster store: entities, activations, subjects, feed schedules and
gateway APIs in PostgreSQL.

``PostgresStore.open(dsn)`` opens a pool (psycopg 3, async), migrates the schema, and
exposes the seams of :mod:`squall.store.contracts` like :class:`SqliteStore` does::

    store = await PostgresStore.open("postgresql://squall@db/squall")
    store.entities     # EntityStore
    store.activations  # ActivationStore
    store.auth         # AuthStore
    store.schedules    # ScheduleStore
    store.apis         # ApiStore
    await store.close()

Guarantees, beyond those of the contracts:

- Several controllers (processes) may share one database: every conditional write is a
  single statement whose condition the server checks as it writes (``INSERT … ON
  CONFLICT DO NOTHING`` to create, ``UPDATE … WHERE rev = <expected>`` to replace), never
  a read in this process followed by a write, so no interleaving can lose an update.
- Every failure to reach the database raises ``ProviderError`` (the API answers 5xx),
  including in :meth:`PostgresAuthStore.authenticate`: an outage must never look like a
  wrong key (401). See :mod:`squall.store.postgres_database` for recovery.
- Bodies are sent as JSON text (orjson) and come back as fresh ``dict``s.
- ``updated`` times come from ``clock`` (epoch ms; wall clock by default).
"""

from __future__ import annotations

import builtins
from types import TracebackType
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection

from squall.errors import Conflict, NotFound
from squall.store.contracts import Document
from squall.store.postgres_activations import PostgresActivationStore
from squall.store.postgres_apis import PostgresApiStore
from squall.store.postgres_auth import PostgresAuthStore
from squall.store.postgres_database import PgDatabase, connect, limit_offset
from squall.store.postgres_schedules import PostgresScheduleStore
from squall.store.records import (
    EXISTS,
    STALE,
    Clock,
    dumps_body,
    entity_filter,
    loads_body,
    next_rev,
    wall_clock_ms,
)

if TYPE_CHECKING:
    from squall.store.contracts import (
        ActivationStore,
        ApiStore,
        AuthStore,
        EntityStore,
        ScheduleStore,
    )

Conn = AsyncConnection[Any]

_KEY = "namespace = %s AND collection = %s AND name = %s"


class PostgresEntityStore:
    """:class:`~squall.store.contracts.EntityStore` over the ``entities`` table."""

    def __init__(self, db: PgDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get(self, namespace: str, collection: str, name: str) -> Document:
        async def work(conn: Conn) -> Document:
            cur = await conn.execute(
                f"SELECT rev, body, updated FROM entities WHERE {_KEY}",
                (namespace, collection, name),
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound()
            return Document(namespace, collection, name, row[0], row[1], row[2])

        return await self._db.run(work, idempotent=True)

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
        new_rev = next_rev(rev)
        key = (namespace, collection, name)

        async def create(conn: Conn) -> None:
            cur = await conn.execute(
                "INSERT INTO entities (namespace, collection, name, package, rev, body, updated)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (*key, name.rpartition("/")[0], new_rev, text, updated),
            )
            if cur.rowcount != 1:
                raise Conflict(EXISTS)

        async def replace(conn: Conn) -> None:
            # A revision for a document that is gone is as stale as an old one: both
            # match no row.
            cur = await conn.execute(
                f"UPDATE entities SET rev = %s, body = %s, updated = %s WHERE {_KEY} AND rev = %s",
                (new_rev, text, updated, *key, rev),
            )
            if cur.rowcount != 1:
                raise Conflict(STALE)

        # Not retried on a dropped connection: the write may have committed, and doing it
        # again would answer Conflict for the caller's own write.
        await self._db.run(create if rev is None else replace, idempotent=False)
        return Document(namespace, collection, name, new_rev, loads_body(text), updated)

    async def rewrite(
        self, namespace: str, collection: str, name: str, body: dict[str, Any], rev: str
    ) -> Document:
        text = dumps_body(body)

        async def work(conn: Conn) -> int:
            cur = await conn.execute(
                f"UPDATE entities SET body = %s WHERE {_KEY} AND rev = %s RETURNING updated",
                (text, namespace, collection, name, rev),
            )
            row = await cur.fetchone()
            if row is None:
                raise Conflict(STALE)
            return int(row[0])

        # Not retried on a dropped connection, as put: a committed rewrite would answer
        # Conflict the second time (the caller reads again and finds it done).
        updated = await self._db.run(work, idempotent=False)
        return Document(namespace, collection, name, rev, loads_body(text), updated)

    async def delete(
        self, namespace: str, collection: str, name: str, rev: str | None = None
    ) -> Document:
        key = (namespace, collection, name)

        async def work(conn: Conn) -> Document:
            if rev is None:
                cur = await conn.execute(
                    f"DELETE FROM entities WHERE {_KEY} RETURNING rev, body, updated", key
                )
            else:
                cur = await conn.execute(
                    f"DELETE FROM entities WHERE {_KEY} AND rev = %s RETURNING rev, body, updated",
                    (*key, rev),
                )
            row = await cur.fetchone()
            if row is not None:
                return Document(namespace, collection, name, row[0], row[1], row[2])
            if rev is not None:
                # Nothing deleted: tell a stale revision from a missing document. This
                # read decides only the error, it guards no write.
                cur = await conn.execute(f"SELECT 1 FROM entities WHERE {_KEY}", key)
                if await cur.fetchone() is not None:
                    raise Conflict(STALE)
            raise NotFound()

        return await self._db.run(work, idempotent=False)

    async def list(
        self,
        namespace: str,
        collection: str,
        *,
        package: str | None = None,
        skip: int = 0,
        limit: int | None = None,
    ) -> builtins.list[Document]:
        where, params = entity_filter(namespace, collection, package, "%s")
        page = limit_offset(skip, limit)

        async def work(conn: Conn) -> builtins.list[Document]:
            cur = await conn.execute(
                f"SELECT name, rev, body, updated FROM entities WHERE {where}"
                " ORDER BY updated DESC, name LIMIT %s OFFSET %s",
                (*params, *page),
            )
            return [
                Document(namespace, collection, name, rev, body, updated)
                for name, rev, body, updated in await cur.fetchall()
            ]

        return await self._db.run(work, idempotent=True)

    async def count(self, namespace: str, collection: str, *, package: str | None = None) -> int:
        where, params = entity_filter(namespace, collection, package, "%s")

        async def work(conn: Conn) -> int:
            cur = await conn.execute(f"SELECT count(*) FROM entities WHERE {where}", params)
            row = await cur.fetchone()
            return 0 if row is None else int(row[0])

        return await self._db.run(work, idempotent=True)


class PostgresStore:
    """One PostgreSQL schema holding all the stores; see the module docstring."""

    def __init__(self, db: PgDatabase, *, clock: Clock = wall_clock_ms) -> None:
        self._db = db
        self.entities = PostgresEntityStore(db, clock)
        self.activations = PostgresActivationStore(db)
        self.auth = PostgresAuthStore(db, clock)
        self.schedules = PostgresScheduleStore(db)
        self.apis = PostgresApiStore(db, clock)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        clock: Clock = wall_clock_ms,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 5.0,
    ) -> PostgresStore:
        """Connect to ``dsn`` (a ``postgresql://`` URL or libpq key=value string), apply
        pending migrations, and return the store.

        ``schema``: keep the tables in this schema (created if missing) instead of the
        URL's current one. ``min_size``/``max_size``: connections the pool keeps open /
        may open. ``timeout``: seconds to wait for the first connection, and at most for
        a free connection on every call, before raising ``ProviderError``.
        """
        db = await connect(
            dsn, schema=schema, min_size=min_size, max_size=max_size, timeout=timeout
        )
        return cls(db, clock=clock)

    @property
    def database(self) -> PgDatabase:
        return self._db

    async def close(self) -> None:
        """Close the pool; idempotent. Every store method raises afterwards; a write still
        waiting for its group commit fails with ``ProviderError``."""
        await self.activations.close()
        await self._db.close()

    async def __aenter__(self) -> PostgresStore:
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
        store: PostgresStore,
    ) -> tuple[EntityStore, ActivationStore, AuthStore, ScheduleStore, ApiStore]:
        return store.entities, store.activations, store.auth, store.schedules, store.apis
