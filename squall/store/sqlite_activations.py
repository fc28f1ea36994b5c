"""Activation records in SQLite, written with group commit.

Every ``put`` of one event-loop iteration goes into a single transaction: the first put
schedules a flush with ``call_soon`` and every caller awaits that flush's commit. One
activation alone costs one transaction as before (one loop iteration later); under load
the commit cost (WAL append, locks) is shared by the batch, roughly halving the cost per
record. A ``put`` returns only after its record is committed, so a reader that got an
activation id from a completion always finds the record; ``flush`` at close writes what
is pending, so nothing is lost on a clean shutdown.

Writes queued in one batch are concurrent (none has returned yet), so any order of them
is a valid outcome; the batch applies replacing puts first, then ``put_unless_final``
writes one by one (each needs its own answer), then pending ones. That order keeps the
guarantees whatever the callers' order: a final record is never replaced by an error
record nor hidden by a pending one.

``prune`` deletes in batches of :data:`PRUNE_BATCH` rows, yielding to the event loop
between batches: the connection is shared, so one huge DELETE would stall every request.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
from typing import Any

import orjson

from squall.errors import NotFound, ProviderError
from squall.store.contracts import ActivationQuery
from squall.store.records import activation_filter, activation_key
from squall.store.sqlite_schema import Database, dumps_body, limit_offset
from squall.store.stats import ActivationStats, summarize

_UPSERT = (
    "INSERT INTO activations (activation_id, namespace, name, start, body)"
    " VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (activation_id) DO UPDATE SET namespace = excluded.namespace,"
    " name = excluded.name, start = excluded.start, body = excluded.body"
)

# A pending record never replaces a stored one: the final record may have won the race.
_INSERT_IF_ABSENT = (
    "INSERT INTO activations (activation_id, namespace, name, start, body)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (activation_id) DO NOTHING"
)

# Replaces only a pending record; the WHERE is evaluated on the stored row, inside the
# one statement, so nothing can slip in between the check and the write.
_REPLACE_PENDING = (
    _UPSERT + " WHERE json_extract(activations.body, '$.response.status') = 'pending'"
)

PRUNE_BATCH = 5000

Row = tuple[str, str, str, int, str]


class _Write:
    """One queued write: its statement, its row, and (set by the flush) whether it
    changed a row."""

    __slots__ = ("row", "statement", "stored")

    def __init__(self, statement: str, row: Row) -> None:
        self.statement = statement
        self.row = row
        self.stored = False


class SqliteActivationStore:
    """:class:`~squall.store.contracts.ActivationStore` over the ``activations`` table.

    Records with the same ``start`` are ordered by activation id, descending, so paging
    is stable. Concurrency: ``_pending`` and ``_flushed`` are touched only on the
    event-loop thread, and ``_flush`` runs between tasks, so no lock is needed.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: builtins.list[_Write] = []
        self._flushed: asyncio.Future[None] | None = None

    async def put(self, record: dict[str, Any]) -> None:
        await self._write(_UPSERT, record)

    async def put_pending(self, record: dict[str, Any]) -> None:
        await self._write(_INSERT_IF_ABSENT, record)

    async def put_unless_final(self, record: dict[str, Any]) -> bool:
        return (await self._write(_REPLACE_PENDING, record)).stored

    async def _write(self, statement: str, record: dict[str, Any]) -> _Write:
        if self._db.closed:
            raise ProviderError("store is closed")
        write = _Write(statement, (*activation_key(record), dumps_body(record)))
        self._pending.append(write)
        if self._flushed is None:
            loop = asyncio.get_running_loop()
            self._flushed = loop.create_future()
            loop.call_soon(self.flush)
        # Shielded: a cancelled caller must not cancel the batch of the others.
        await asyncio.shield(self._flushed)
        return write

    def flush(self) -> None:
        """Commit every pending record in one transaction; wake their writers."""
        writes, self._pending = self._pending, []
        done, self._flushed = self._flushed, None
        if not writes:
            if done is not None and not done.done():
                done.set_result(None)
            return
        try:
            if len(writes) == 1:
                with self._db.autocommit() as conn:  # one statement commits by itself
                    only = writes[0]
                    only.stored = conn.execute(only.statement, only.row).rowcount == 1
            else:
                with self._db.transaction() as conn:
                    self._apply(conn, writes)
        except Exception as exc:
            if done is not None and not done.done():
                done.set_exception(exc)
                # Callers see it through their await; do not warn if all were cancelled.
                done.exception()
            else:
                raise
        else:
            if done is not None and not done.done():
                done.set_result(None)

    @staticmethod
    def _apply(conn: sqlite3.Connection, writes: builtins.list[_Write]) -> None:
        # Replacing puts first (in queue order: a re-put replaces), then conditional
        # replacements of pending records, then pending inserts; see the module docstring.
        upserts = [w for w in writes if w.statement is _UPSERT]
        if upserts:
            conn.executemany(_UPSERT, [w.row for w in upserts])
            for w in upserts:
                w.stored = True
        for w in writes:
            if w.statement is _REPLACE_PENDING:
                w.stored = conn.execute(_REPLACE_PENDING, w.row).rowcount == 1
        inserts = [w.row for w in writes if w.statement is _INSERT_IF_ABSENT]
        if inserts:
            conn.executemany(_INSERT_IF_ABSENT, inserts)

    async def prune(self, before_ms: int) -> int:
        removed = 0
        while True:
            with self._db.autocommit() as conn:
                deleted = conn.execute(
                    "DELETE FROM activations WHERE rowid IN"
                    " (SELECT rowid FROM activations WHERE start < ? LIMIT ?)",
                    (before_ms, PRUNE_BATCH),
                ).rowcount
            removed += deleted
            if deleted < PRUNE_BATCH:
                return removed
            await asyncio.sleep(0)  # let requests in between batches

    async def get(self, namespace: str, activation_id: str) -> dict[str, Any]:
        with self._db.autocommit() as conn:
            row = conn.execute(
                "SELECT body FROM activations WHERE activation_id = ? AND namespace = ?",
                (activation_id, namespace),
            ).fetchone()
        if row is None:
            raise NotFound()
        body: dict[str, Any] = orjson.loads(row[0])
        return body

    async def list(self, query: ActivationQuery) -> builtins.list[dict[str, Any]]:
        where, params = activation_filter(query, "?")
        with self._db.autocommit() as conn:
            rows = conn.execute(
                f"SELECT body FROM activations WHERE {where}"
                " ORDER BY start DESC, activation_id DESC LIMIT ? OFFSET ?",
                (*params, *limit_offset(query.skip, query.limit)),
            ).fetchall()
        return [orjson.loads(body) for (body,) in rows]

    async def count(self, query: ActivationQuery) -> int:
        where, params = activation_filter(query, "?")
        with self._db.autocommit() as conn:
            row = conn.execute(f"SELECT count(*) FROM activations WHERE {where}", params).fetchone()
        return int(row[0])

    async def stats(self, query: ActivationQuery, bucket_ms: int = 60_000) -> ActivationStats:
        where, params = activation_filter(query, "?")
        # The five columns are all in `activations_figures`: an index-only range scan.
        with self._db.autocommit() as conn:
            rows = conn.execute(
                f"SELECT start, name, status, duration, init_time FROM activations WHERE {where}",
                params,
            ).fetchall()
        return summarize(rows, bucket_ms)
