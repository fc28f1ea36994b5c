"""Feed schedules and claimed ticks in SQLite (:class:`~squall.store.contracts.ScheduleStore`).

Like the other SQLite stores, every method runs to completion on the event-loop thread
without awaiting; read-check-write sequences run in ``BEGIN IMMEDIATE`` transactions, so
they are atomic against other processes using the same file too. A claim is a single
``INSERT ... ON CONFLICT DO NOTHING``: the primary key decides which of several claimers
of one tick wins, whichever process they run in.
"""

from __future__ import annotations

import builtins
from typing import Any

import orjson

from squall.errors import Conflict, NotFound
from squall.store.contracts import Schedule
from squall.store.records import EXISTS, STALE, next_rev
from squall.store.sqlite_schema import Database, dumps_body


class SqliteScheduleStore:
    """:class:`~squall.store.contracts.ScheduleStore` over ``feed_schedules`` and
    ``feed_ticks``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(
        self, namespace: str, trigger: str, body: dict[str, Any], due: int | None, rev: str | None
    ) -> Schedule:
        text = dumps_body(body)
        key = (namespace, trigger)
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT rev FROM feed_schedules WHERE namespace = ? AND trigger = ?", key
            ).fetchone()
            if rev is None:
                if row is not None:
                    raise Conflict(EXISTS)
                new_rev = next_rev(None)
                conn.execute(
                    "INSERT INTO feed_schedules (namespace, trigger, rev, body, due)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (*key, new_rev, text, due),
                )
            else:
                if row is None or row[0] != rev:
                    raise Conflict(STALE)
                new_rev = next_rev(rev)
                conn.execute(
                    "UPDATE feed_schedules SET rev = ?, body = ?, due = ?"
                    " WHERE namespace = ? AND trigger = ?",
                    (new_rev, text, due, *key),
                )
        return Schedule(namespace, trigger, orjson.loads(text), due, new_rev)

    async def get(self, namespace: str, trigger: str) -> Schedule:
        with self._db.autocommit() as conn:
            row = conn.execute(
                "SELECT rev, body, due FROM feed_schedules WHERE namespace = ? AND trigger = ?",
                (namespace, trigger),
            ).fetchone()
        if row is None:
            raise NotFound()
        return Schedule(namespace, trigger, orjson.loads(row[1]), row[2], row[0])

    async def delete(self, namespace: str, trigger: str, rev: str | None = None) -> None:
        key = (namespace, trigger)
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT rev FROM feed_schedules WHERE namespace = ? AND trigger = ?", key
            ).fetchone()
            if row is None:
                raise NotFound()
            if rev is not None and row[0] != rev:
                raise Conflict(STALE)
            conn.execute("DELETE FROM feed_schedules WHERE namespace = ? AND trigger = ?", key)

    async def due(self, until: int, limit: int) -> builtins.list[Schedule]:
        with self._db.autocommit() as conn:
            rows = conn.execute(
                "SELECT namespace, trigger, rev, body, due FROM feed_schedules"
                " WHERE due IS NOT NULL AND due <= ?"
                " ORDER BY due, namespace, trigger LIMIT ?",
                (until, limit),
            ).fetchall()
        return [
            Schedule(namespace, trigger, orjson.loads(body), due, rev)
            for namespace, trigger, rev, body, due in rows
        ]

    async def next_due(self) -> int | None:
        with self._db.autocommit() as conn:
            row = conn.execute(
                "SELECT min(due) FROM feed_schedules WHERE due IS NOT NULL"
            ).fetchone()
        return None if row[0] is None else int(row[0])

    async def claim(self, key: str, at: int) -> bool:
        with self._db.autocommit() as conn:
            inserted = conn.execute(
                "INSERT INTO feed_ticks (tick, at) VALUES (?, ?) ON CONFLICT (tick) DO NOTHING",
                (key, at),
            )
        return inserted.rowcount == 1

    async def prune(self, before: int) -> int:
        with self._db.autocommit() as conn:
            deleted = conn.execute("DELETE FROM feed_ticks WHERE at < ?", (before,))
        return int(deleted.rowcount)
