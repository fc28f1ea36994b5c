"""The API gateway's APIs in SQLite (:class:`~squall.store.contracts.ApiStore`).

Like the other SQLite stores, every method runs to completion on the event-loop thread
without awaiting; read-check-write sequences run in ``BEGIN IMMEDIATE`` transactions, so
they are atomic against other processes using the same file too.
"""

from __future__ import annotations

import builtins
from typing import Any

import orjson

from squall.errors import Conflict, NotFound
from squall.store.contracts import GatewayApi
from squall.store.records import EXISTS, STALE, Clock, next_rev
from squall.store.sqlite_schema import Database, dumps_body

_KEY = "namespace = ? AND base_path = ?"
_COLUMNS = "namespace, base_path, tenant, body, rev, updated"


def _api(row: tuple[Any, ...]) -> GatewayApi:
    namespace, base_path, tenant, body, rev, updated = row
    return GatewayApi(namespace, base_path, tenant, orjson.loads(body), rev, updated)


class SqliteApiStore:
    """:class:`~squall.store.contracts.ApiStore` over ``gateway_apis``."""

    def __init__(self, db: Database, clock: Clock) -> None:
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
        key = (namespace, base_path)
        updated = self._clock()
        with self._db.transaction() as conn:
            row = conn.execute(f"SELECT rev FROM gateway_apis WHERE {_KEY}", key).fetchone()
            if rev is None:
                if row is not None:
                    raise Conflict(EXISTS)
                new_rev = next_rev(None)
                conn.execute(
                    f"INSERT INTO gateway_apis ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (*key, tenant, text, new_rev, updated),
                )
            else:
                if row is None or row[0] != rev:
                    raise Conflict(STALE)
                new_rev = next_rev(rev)
                conn.execute(
                    f"UPDATE gateway_apis SET tenant = ?, body = ?, rev = ?, updated = ?"
                    f" WHERE {_KEY}",
                    (tenant, text, new_rev, updated, *key),
                )
        return GatewayApi(namespace, base_path, tenant, orjson.loads(text), new_rev, updated)

    async def get(self, namespace: str, base_path: str) -> GatewayApi:
        with self._db.autocommit() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM gateway_apis WHERE {_KEY}", (namespace, base_path)
            ).fetchone()
        if row is None:
            raise NotFound()
        return _api(row)

    async def delete(self, namespace: str, base_path: str, rev: str | None = None) -> None:
        key = (namespace, base_path)
        with self._db.transaction() as conn:
            row = conn.execute(f"SELECT rev FROM gateway_apis WHERE {_KEY}", key).fetchone()
            if row is None:
                raise NotFound()
            if rev is not None and row[0] != rev:
                raise Conflict(STALE)
            conn.execute(f"DELETE FROM gateway_apis WHERE {_KEY}", key)

    async def list(self, namespace: str) -> builtins.list[GatewayApi]:
        with self._db.autocommit() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM gateway_apis WHERE namespace = ? ORDER BY base_path",
                (namespace,),
            ).fetchall()
        return [_api(row) for row in rows]

    async def of_tenant(self, tenant: str) -> builtins.list[GatewayApi]:
        with self._db.autocommit() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM gateway_apis WHERE tenant = ? ORDER BY base_path",
                (tenant,),
            ).fetchall()
        return [_api(row) for row in rows]
