"""Activation records in PostgreSQL (:class:`~squall.store.contracts.ActivationStore`).

Each write is one insert of one row, committed with the writes that arrived while the
previous batch was being committed (a group commit, ``postgres_batch.py``: one statement
and one round trip for many under load, a single autocommit statement at one at a time). The
conditions of ``put_pending``, ``put_unless_final`` and ``start`` are part of their
statement (``ON CONFLICT DO NOTHING``, ``ON CONFLICT DO UPDATE … WHERE <stored one is
pending>`` / ``… WHERE <stored one is queued>``), so they hold against writers in other
controllers and invokers too: of two invokers starting one activation, one gets False.

Every write gives the dashboard's figures (``status``, ``duration``, ``init_time``:
:func:`figures`), so the ``activation_figures`` trigger does not run for it (the pool's
connections say so at connect: ``postgres_schema.FIGURES_GIVEN``).

Retention: ``prune`` deletes through the ``start`` index in batches of
:data:`PRUNE_BATCH` rows, each its own short transaction, so row locks are held briefly,
autovacuum can follow, and the controllers' writes go on meanwhile. Time partitions
(dropping a month in one go) were considered and rejected: a record is replaced by id
(pending, then final, whose ``start`` differs), and a primary key on a partitioned
table must include the partition key, so replace-by-id would have to search every
partition.
"""

from __future__ import annotations

import builtins
from typing import Any

from psycopg import AsyncConnection

from squall.entities.activation import Activation
from squall.errors import NotFound
from squall.store.contracts import ActivationQuery, Unfinished
from squall.store.postgres_batch import WriteBatcher, WriteKind
from squall.store.postgres_database import PgDatabase, limit_offset
from squall.store.records import (
    STARTED,
    activation_filter,
    activation_key,
    dumps_record,
    loads_record,
    run_state,
)
from squall.store.stats import ActivationStats, StatsRow, summarize

Conn = AsyncConnection[Any]

PRUNE_BATCH = 5000

# ``owner`` is only ever written by an insert (put_pending's): a replace or a start
# keeps the stored one, and it is read only while the record is unfinished.
# Each kind is ``INSERT INTO activations (<the row>) … ON CONFLICT (activation_id)``
# followed by its clause (``postgres_batch.WriteKind``).
_REPLACE = (
    "DO UPDATE SET namespace = excluded.namespace, name = excluded.name,"
    " start = excluded.start, body = excluded.body, state = excluded.state,"
    " message = excluded.message, status = excluded.status, duration = excluded.duration,"
    " init_time = excluded.init_time"
)
# A stored pending record has a state; one written by an older Squall (a member not yet
# upgraded in a rolling upgrade) has none, so its body says it too.
# (Read from a copy whose \u0000 escapes are \ufffd: PostgreSQL refuses to de-escape
# \u0000 into text even in a field it only skips, and a record's result may hold one.)
_PENDING_BODY = (
    "replace(activations.body::text, '\\u0000', '\\ufffd')::json -> 'response' ->> 'status'"
    " = 'pending'"
)
# Repeating these ends in the same state.
_UPSERT = WriteKind(_REPLACE, answering=False)
# A pending record never replaces a stored one: the final record may have won the race.
_INSERT_IF_ABSENT = WriteKind("DO NOTHING", answering=False)
# Their answer changes once their first attempt committed (False after True): a broken
# connection must not make them run twice.
# The WHERE is evaluated on the stored row under its row lock, inside the statement.
_REPLACE_PENDING = WriteKind(
    f"{_REPLACE} WHERE activations.state IS NOT NULL OR {_PENDING_BODY}", answering=True
)
# The started point: the record if none is stored, else the stored one marked started if
# it is queued (pending, not started), under its row lock; never a final or started one.
_START = WriteKind(
    "DO UPDATE SET state = 'started', message = NULL"
    f" WHERE activations.state = 'queued' OR (activations.state IS NULL AND {_PENDING_BODY})",
    answering=True,
)


def figures(record: Activation) -> tuple[str, float | None, float | None]:
    """(status, duration, init_time) of a record, as the ``activation_figures`` trigger
    reads them from its JSON (``postgres_schema.py``): ``response.status``; ``duration``
    when it is a number; the first ``initTime`` annotation whose value is a number. Given
    with every write (the trigger then leaves them: ``FIGURES_GIVEN``)."""
    duration = record.duration
    init_time = None
    for annotation in record.annotations:
        if isinstance(annotation, dict) and annotation.get("key") == "initTime":
            value = annotation.get("value")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                init_time = float(value)
                break
    return (
        record.response.status,
        float(duration) if isinstance(duration, int) else None,
        init_time,
    )


class PostgresActivationStore:
    """:class:`~squall.store.contracts.ActivationStore` over the ``activations`` table.

    Records with the same ``start`` are ordered by activation id, descending, so paging
    is stable.
    """

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._batcher = WriteBatcher(db)

    async def close(self) -> None:
        """Answer the writes still waiting for a group commit (``ProviderError``)."""
        await self._batcher.close()

    async def put(self, record: Activation) -> None:
        await self._write(_UPSERT, record, run_state(record))

    async def put_pending(
        self, record: Activation, message: bytes | None = None, owner: str | None = None
    ) -> None:
        await self._write(_INSERT_IF_ABSENT, record, run_state(record), message, owner)

    async def put_unless_final(self, record: Activation) -> bool:
        return await self._write(_REPLACE_PENDING, record, run_state(record))

    async def start(self, record: Activation) -> bool:
        return await self._write(_START, record, STARTED)

    async def _write(
        self,
        kind: WriteKind,
        record: Activation,
        state: str | None,
        message: bytes | None = None,
        owner: str | None = None,
    ) -> bool:
        if state is None:
            message = None  # a final record needs nothing to run it again
        row = (
            *activation_key(record), dumps_record(record), state, message, owner,
            *figures(record),
        )  # fmt: skip
        return await self._batcher.write(kind, row)

    async def unfinished(
        self, after: str, limit: int, owned_by: str | None = None
    ) -> builtins.list[Unfinished]:
        # Owned ones: a prefix compared as text (no LIKE, whose % and _ would match more).
        owned = "" if owned_by is None else " AND left(owner, length(%s)) = %s"
        params = (after, *(() if owned_by is None else (owned_by, owned_by)), limit)

        async def work(conn: Conn) -> builtins.list[Unfinished]:
            cur = await conn.execute(
                "SELECT body::text, state, message, owner FROM activations"
                f" WHERE state IS NOT NULL AND activation_id > %s{owned}"
                " ORDER BY activation_id LIMIT %s",
                params,
            )
            return [
                Unfinished(
                    loads_record(body),
                    state == STARTED,
                    None if message is None else bytes(message),
                    owner,
                )
                for body, state, message, owner in await cur.fetchall()
            ]

        return await self._db.run(work, idempotent=True)

    async def prune(self, before_ms: int) -> int:
        async def batch(conn: Conn) -> int:
            cur = await conn.execute(
                "DELETE FROM activations WHERE activation_id IN"
                " (SELECT activation_id FROM activations WHERE start < %s LIMIT %s)",
                (before_ms, PRUNE_BATCH),
            )
            return cur.rowcount

        removed = 0
        while True:
            deleted = await self._db.run(batch, idempotent=True)
            removed += deleted
            if deleted < PRUNE_BATCH:
                return removed

    async def get(self, namespace: str, activation_id: str) -> Activation:
        async def work(conn: Conn) -> Activation:
            cur = await conn.execute(
                "SELECT body::text FROM activations WHERE activation_id = %s AND namespace = %s",
                (activation_id, namespace),
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound()
            return loads_record(row[0])

        return await self._db.run(work, idempotent=True)

    async def list(self, query: ActivationQuery) -> builtins.list[Activation]:
        where, params = activation_filter(query, "%s")
        page = limit_offset(query.skip, query.limit)

        async def work(conn: Conn) -> builtins.list[Activation]:
            cur = await conn.execute(
                f"SELECT body::text FROM activations WHERE {where}"
                " ORDER BY start DESC, activation_id DESC LIMIT %s OFFSET %s",
                (*params, *page),
            )
            return [loads_record(body) for (body,) in await cur.fetchall()]

        return await self._db.run(work, idempotent=True)

    async def count(self, query: ActivationQuery) -> int:
        where, params = activation_filter(query, "%s")

        async def work(conn: Conn) -> int:
            cur = await conn.execute(f"SELECT count(*) FROM activations WHERE {where}", params)
            row = await cur.fetchone()
            return 0 if row is None else int(row[0])

        return await self._db.run(work, idempotent=True)

    async def stats(self, query: ActivationQuery, bucket_ms: int = 60_000) -> ActivationStats:
        where, params = activation_filter(query, "%s")

        async def work(conn: Conn) -> builtins.list[StatsRow]:
            # The trigger-kept columns, all in `activations_figures`: an index-only scan.
            cur = await conn.execute(
                f"SELECT start, name, status, duration, init_time FROM activations WHERE {where}",
                params,
            )
            return await cur.fetchall()

        return summarize(await self._db.run(work, idempotent=True), bucket_ms)
