"""The cluster store's :class:`~squall.store.contracts.AuthStore`: subjects (namespaces
with their hashed keys and limits) and action keys, in the PostgreSQL database of
:mod:`squall.store.postgres`.

Guarantees, beyond the contract's: every conditional write is one statement whose
condition the server checks as it writes, so several controllers and invokers may share
the database; a database failure raises ``ProviderError``, never looks like a wrong key.
``delete_subject`` takes the action key along through the table's ``ON DELETE CASCADE``.
"""

from __future__ import annotations

import builtins
from typing import Any

import psycopg
from psycopg import AsyncConnection

from squall.errors import Conflict, NotFound
from squall.store import keys
from squall.store.contracts import Subject
from squall.store.postgres_database import PgDatabase
from squall.store.records import (
    NAMESPACE_EXISTS,
    UUID_TAKEN,
    Clock,
    dumps_body,
    new_credentials,
)

Conn = AsyncConnection[Any]


class PostgresAuthStore:
    """:class:`~squall.store.contracts.AuthStore` over the ``subjects`` and
    ``action_keys`` tables.

    One subject per namespace; the namespace's primary key and the uuid's unique
    constraint decide, in the server, between concurrent creations. Keys are stored as
    :func:`squall.store.keys.hash_key` hashes; nothing here logs a key.
    """

    def __init__(self, db: PgDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create_subject(
        self,
        namespace: str,
        *,
        uuid: str | None = None,
        key: str | None = None,
        rotate: bool = False,
    ) -> Subject:
        key = new_credentials(uuid, key)
        values = {
            "namespace": namespace,
            "given": uuid,
            "fresh": keys.new_uuid(),
            "key_hash": keys.hash_key(key),
            "created": self._clock(),
        }
        insert = (
            "INSERT INTO subjects (namespace, uuid, key_hash, created)"
            " VALUES (%(namespace)s, coalesce(%(given)s, %(fresh)s), %(key_hash)s, %(created)s)"
        )
        if rotate:
            # Rotating keeps the subject's uuid unless one is given; a new subject gets
            # the fresh one. One statement: a concurrent create cannot slip in between.
            statement = (
                insert + " ON CONFLICT (namespace) DO UPDATE SET"
                " uuid = coalesce(%(given)s, subjects.uuid), key_hash = excluded.key_hash"
                " RETURNING uuid"
            )
        else:
            statement = insert + " ON CONFLICT (namespace) DO NOTHING RETURNING uuid"

        async def work(conn: Conn) -> str:
            try:
                cur = await conn.execute(statement, values)
            except psycopg.errors.UniqueViolation as exc:  # the uuid, not the namespace
                raise Conflict(UUID_TAKEN) from exc
            row = await cur.fetchone()
            if row is None:
                raise Conflict(NAMESPACE_EXISTS)
            return str(row[0])

        stored_uuid = await self._db.run(work, idempotent=rotate)
        return Subject(namespace, stored_uuid, key)

    async def get_subject(self, namespace: str) -> Subject:
        async def work(conn: Conn) -> Subject:
            cur = await conn.execute("SELECT uuid FROM subjects WHERE namespace = %s", (namespace,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound()
            return Subject(namespace, row[0])

        return await self._db.run(work, idempotent=True)

    async def delete_subject(self, namespace: str) -> None:
        async def work(conn: Conn) -> None:
            cur = await conn.execute("DELETE FROM subjects WHERE namespace = %s", (namespace,))
            if cur.rowcount == 0:
                raise NotFound()

        await self._db.run(work, idempotent=False)

    async def list_subjects(self) -> builtins.list[Subject]:
        async def work(conn: Conn) -> builtins.list[Subject]:
            cur = await conn.execute("SELECT namespace, uuid FROM subjects ORDER BY namespace")
            return [Subject(namespace, uuid) for namespace, uuid in await cur.fetchall()]

        return await self._db.run(work, idempotent=True)

    async def authenticate(self, uuid: str, key: str) -> Subject | None:
        # A uuid names a subject's key or an action key. Both tables in one query; a
        # uuid found in both (possible only with a uuid given by an operator) is tried
        # against each hash, so neither credential can stand in for the other.
        async def work(conn: Conn) -> builtins.list[tuple[str, str]]:
            cur = await conn.execute(
                "SELECT namespace, key_hash FROM subjects WHERE uuid = %(uuid)s"
                " UNION ALL SELECT namespace, key_hash FROM action_keys WHERE uuid = %(uuid)s",
                {"uuid": uuid},
            )
            return [(row[0], row[1]) for row in await cur.fetchall()]

        # A database failure raises here (ProviderError → 5xx); only a completed lookup
        # may answer None.
        found = await self._db.run(work, idempotent=True)
        if not found:
            # Hash and compare anyway, so an unknown uuid costs what a wrong key costs.
            keys.verify_dummy(key)
            return None
        for namespace, key_hash in found:
            if keys.verify_key(key, key_hash):
                return Subject(namespace, uuid)
        return None

    async def get_limits(self, namespace: str) -> dict[str, Any]:
        async def work(conn: Conn) -> dict[str, Any]:
            cur = await conn.execute(
                "SELECT limits FROM subjects WHERE namespace = %s", (namespace,)
            )
            row = await cur.fetchone()
            return {} if row is None else dict(row[0])

        return await self._db.run(work, idempotent=True)

    async def set_limits(self, namespace: str, limits: dict[str, Any]) -> None:
        text = dumps_body(limits)

        async def work(conn: Conn) -> None:
            cur = await conn.execute(
                "UPDATE subjects SET limits = %s WHERE namespace = %s", (text, namespace)
            )
            if cur.rowcount == 0:
                raise NotFound()

        await self._db.run(work, idempotent=True)

    async def add_action_key(self, namespace: str, uuid: str, key: str) -> str | None:
        values = {
            "namespace": namespace,
            "uuid": uuid,
            "key_hash": keys.hash_key(key),
            "created": self._clock(),
        }

        async def work(conn: Conn) -> str | None:
            # The insert waits for a concurrent one of the same namespace to commit and
            # then does nothing; the select that follows (a new snapshot: autocommit,
            # READ COMMITTED) reads the winner's row. The subject's row is checked by
            # the insert itself, and locked by the foreign key until commit.
            try:
                await conn.execute(
                    "INSERT INTO action_keys (namespace, uuid, key_hash, created)"
                    " SELECT %(namespace)s, %(uuid)s, %(key_hash)s, %(created)s"
                    " WHERE EXISTS (SELECT 1 FROM subjects WHERE namespace = %(namespace)s)"
                    " ON CONFLICT (namespace) DO NOTHING",
                    values,
                )
            except psycopg.errors.UniqueViolation as exc:  # the uuid, not the namespace
                raise Conflict(UUID_TAKEN) from exc
            except psycopg.errors.ForeignKeyViolation:  # the subject went meanwhile
                return None
            cur = await conn.execute(
                "SELECT uuid FROM action_keys WHERE namespace = %s", (namespace,)
            )
            row = await cur.fetchone()
            return None if row is None else str(row[0])

        return await self._db.run(work, idempotent=True)

    async def get_action_key(self, namespace: str) -> str | None:
        async def work(conn: Conn) -> str | None:
            cur = await conn.execute(
                "SELECT uuid FROM action_keys WHERE namespace = %s", (namespace,)
            )
            row = await cur.fetchone()
            return None if row is None else str(row[0])

        return await self._db.run(work, idempotent=True)

    async def delete_action_key(self, namespace: str) -> bool:
        async def work(conn: Conn) -> bool:
            cur = await conn.execute("DELETE FROM action_keys WHERE namespace = %s", (namespace,))
            return cur.rowcount > 0

        return await self._db.run(work, idempotent=True)
