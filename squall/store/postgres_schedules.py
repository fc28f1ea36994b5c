"""Feed schedules and claimed ticks in PostgreSQL
(:class:`~squall.store.contracts.ScheduleStore`).

As for entities, a conditional write is one statement whose condition the server checks
(``ON CONFLICT DO NOTHING`` to create, ``WHERE rev = <expected>`` to replace). A claim is
``INSERT … ON CONFLICT DO NOTHING`` on the tick's primary key: among controllers claiming
one tick at once, the unique index admits exactly one, whichever process it runs in.
"""

from __future__ import annotations

import builtins
from typing import Any

from psycopg import AsyncConnection

from squall.errors import Conflict, NotFound
from squall.store.contracts import Schedule
from squall.store.postgres_database import PgDatabase
from squall.store.records import EXISTS, STALE, dumps_body, loads_body, next_rev

Conn = AsyncConnection[Any]

_KEY = "namespace = %s AND trigger = %s"


class PostgresScheduleStore:
    """:class:`~squall.store.contracts.ScheduleStore` over ``feed_schedules`` and
    ``feed_ticks``."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def put(
        self, namespace: str, trigger: str, body: dict[str, Any], due: int | None, rev: str | None
    ) -> Schedule:
        text = dumps_body(body)
        new_rev = next_rev(rev)

        async def work(conn: Conn) -> None:
            if rev is None:
                cur = await conn.execute(
                    "INSERT INTO feed_schedules (namespace, trigger, rev, body, due)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (namespace, trigger, new_rev, text, due),
                )
                if cur.rowcount != 1:
                    raise Conflict(EXISTS)
            else:
                cur = await conn.execute(
                    f"UPDATE feed_schedules SET rev = %s, body = %s, due = %s"
                    f" WHERE {_KEY} AND rev = %s",
                    (new_rev, text, due, namespace, trigger, rev),
                )
                if cur.rowcount != 1:
                    raise Conflict(STALE)

        await self._db.run(work, idempotent=False)
        return Schedule(namespace, trigger, loads_body(text), due, new_rev)

    async def get(self, namespace: str, trigger: str) -> Schedule:
        async def work(conn: Conn) -> Schedule:
            cur = await conn.execute(
                f"SELECT rev, body, due FROM feed_schedules WHERE {_KEY}", (namespace, trigger)
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound()
            return Schedule(namespace, trigger, row[1], row[2], row[0])

        return await self._db.run(work, idempotent=True)

    async def delete(self, namespace: str, trigger: str, rev: str | None = None) -> None:
        key = (namespace, trigger)

        async def work(conn: Conn) -> None:
            if rev is None:
                cur = await conn.execute(f"DELETE FROM feed_schedules WHERE {_KEY}", key)
            else:
                cur = await conn.execute(
                    f"DELETE FROM feed_schedules WHERE {_KEY} AND rev = %s", (*key, rev)
                )
            if cur.rowcount == 1:
                return
            if rev is not None:
                # Only chooses the error; it guards no write.
                cur = await conn.execute(f"SELECT 1 FROM feed_schedules WHERE {_KEY}", key)
                if await cur.fetchone() is not None:
                    raise Conflict(STALE)
            raise NotFound()

        await self._db.run(work, idempotent=False)

    async def due(self, until: int, limit: int) -> builtins.list[Schedule]:
        async def work(conn: Conn) -> builtins.list[Schedule]:
            cur = await conn.execute(
                "SELECT namespace, trigger, rev, body, due FROM feed_schedules"
                " WHERE due IS NOT NULL AND due <= %s"
                " ORDER BY due, namespace, trigger LIMIT %s",
                (until, limit),
            )
            return [
                Schedule(namespace, trigger, body, due, rev)
                for namespace, trigger, rev, body, due in await cur.fetchall()
            ]

        return await self._db.run(work, idempotent=True)

    async def next_due(self) -> int | None:
        async def work(conn: Conn) -> int | None:
            cur = await conn.execute("SELECT min(due) FROM feed_schedules WHERE due IS NOT NULL")
            row = await cur.fetchone()
            return None if row is None or row[0] is None else int(row[0])

        return await self._db.run(work, idempotent=True)

    async def claim(self, key: str, at: int) -> bool:
        async def work(conn: Conn) -> bool:
            cur = await conn.execute(
                "INSERT INTO feed_ticks (tick, at) VALUES (%s, %s) ON CONFLICT (tick) DO NOTHING",
                (key, at),
            )
            return cur.rowcount == 1

        # Not repeated: after a claim that committed, a second try would answer False and
        # nobody would fire the tick.
        return await self._db.run(work, idempotent=False)

    async def prune(self, before: int) -> int:
        async def work(conn: Conn) -> int:
            cur = await conn.execute("DELETE FROM feed_ticks WHERE at < %s", (before,))
            return cur.rowcount

        return await self._db.run(work, idempotent=True)
