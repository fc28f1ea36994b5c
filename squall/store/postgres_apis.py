"""The API gateway's APIs in PostgreSQL (:class:`~squall.store.contracts.ApiStore`).

As for entities, a conditional write is one statement whose condition the server checks
(``ON CONFLICT DO NOTHING`` to create, ``WHERE rev = <expected>`` to replace or delete),
so controllers writing one API at once never overwrite each other unseen.
"""

from __future__ import annotations

import builtins
from typing import Any

from psycopg import AsyncConnection

from squall.errors import Conflict, NotFound
from squall.store.contracts import GatewayApi
from squall.store.postgres_database import PgDatabase
from squall.store.records import EXISTS, STALE, Clock, dumps_body, loads_body, next_rev

Conn = AsyncConnection[Any]

_KEY = "namespace = %s AND base_path = %s"
_COLUMNS = "namespace, base_path, tenant, body, rev, updated"


def _api(row: tuple[Any, ...]) -> GatewayApi:
    namespace, base_path, tenant, body, rev, updated = row
    return GatewayApi(namespace, base_path, tenant, body, rev, updated)


class PostgresApiStore:
    """:class:`~squall.store.contracts.ApiStore` over ``gateway_apis``."""

    def __init__(self, db: PgDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def put(
        self,
        namespace: str,
        base_path: str,
        tenant: str,
        swagger: dict[str, Any],
        rev: str | None,
    ) -> GatewayApi:
        text = dumps_body(swagger)
        new_rev = next_rev(rev)
        updated = self._clock()

        async def work(conn: Conn) -> None:
            if rev is None:
                cur = await conn.execute(
                    f"INSERT INTO gateway_apis ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (namespace, base_path, tenant, text, new_rev, updated),
                )
                if cur.rowcount != 1:
                    raise Conflict(EXISTS)
            else:
                cur = await conn.execute(
                    f"UPDATE gateway_apis SET tenant = %s, body = %s, rev = %s, updated = %s"
                    f" WHERE {_KEY} AND rev = %s",
                    (tenant, text, new_rev, updated, namespace, base_path, rev),
                )
                if cur.rowcount != 1:
                    raise Conflict(STALE)

        await self._db.run(work, idempotent=False)
        return GatewayApi(namespace, base_path, tenant, loads_body(text), new_rev, updated)

    async def get(self, namespace: str, base_path: str) -> GatewayApi:
        async def work(conn: Conn) -> GatewayApi:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM gateway_apis WHERE {_KEY}", (namespace, base_path)
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound()
            return _api(row)

        return await self._db.run(work, idempotent=True)

    async def delete(self, namespace: str, base_path: str, rev: str | None = None) -> None:
        key = (namespace, base_path)

        async def work(conn: Conn) -> None:
            if rev is None:
                cur = await conn.execute(f"DELETE FROM gateway_apis WHERE {_KEY}", key)
            else:
                cur = await conn.execute(
                    f"DELETE FROM gateway_apis WHERE {_KEY} AND rev = %s", (*key, rev)
                )
            if cur.rowcount == 1:
                return
            if rev is not None:
                # Only chooses the error; it guards no write.
                cur = await conn.execute(f"SELECT 1 FROM gateway_apis WHERE {_KEY}", key)
                if await cur.fetchone() is not None:
                    raise Conflict(STALE)
            raise NotFound()

        await self._db.run(work, idempotent=False)

    async def list(self, namespace: str) -> builtins.list[GatewayApi]:
        return await self._select("namespace", namespace)

    async def of_tenant(self, tenant: str) -> builtins.list[GatewayApi]:
        return await self._select("tenant", tenant)

    async def _select(self, column: str, value: str) -> builtins.list[GatewayApi]:
        async def work(conn: Conn) -> builtins.list[GatewayApi]:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM gateway_apis WHERE {column} = %s"
                ' ORDER BY base_path COLLATE "C"',
                (value,),
            )
            return [_api(row) for row in await cur.fetchall()]

        return await self._db.run(work, idempotent=True)
