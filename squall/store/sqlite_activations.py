"""Activation records in SQLite, written with group commit.

Every ``put`` of one event-loop iteration goes into a single transaction: the first put
schedules a flush with ``call_soon`` and every caller awaits that flush's commit. One
activation alone costs one transaction as before (one loop iteration later); under load
the commit cost (WAL append, locks) is shared by the batch, roughly halving the cost per
record. A ``put`` returns only after its record is committed, so a reader that got an
activation id from a completion always finds the record; ``flush`` at close writes what
is pending, so nothing is lost on a clean shutdown.
"""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import orjson

from squall.errors import NotFound, ProviderError
from squall.store.contracts import ActivationQuery
from squall.store.sqlite_schema import Database, dumps_body, limit_offset

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

Row = tuple[str, str, str, int, str]


def _activation_key(record: dict[str, Any]) -> tuple[str, str, str, int]:
    """(activation id, namespace, entity path, start) of an activation record.

    The entity path is ``name``, prefixed with the package when the ``path`` annotation
    has three segments (``ns/pkg/name``), so the ``name`` filter can match
    ``pkg/action``.
    """
    activation_id, namespace, name, start = (
        record.get("activationId"),
        record.get("namespace"),
        record.get("name"),
        record.get("start"),
    )
    if not (isinstance(activation_id, str) and isinstance(namespace, str)):
        raise ValueError("activation record needs string 'activationId' and 'namespace'")
    if not isinstance(name, str) or not isinstance(start, int) or isinstance(start, bool):
        raise ValueError("activation record needs string 'name' and integer 'start'")
    for annotation in record.get("annotations") or ():
        if isinstance(annotation, dict) and annotation.get("key") == "path":
            path = annotation.get("value")
            segments = path.strip("/").split("/") if isinstance(path, str) else []
            if len(segments) == 3:  # "ns/pkg/name" (a leading "/" is tolerated)
                name = f"{segments[1]}/{name}"
            break
    return activation_id, namespace, name, start


class SqliteActivationStore:
    """:class:`~squall.store.contracts.ActivationStore` over the ``activations`` table.

    Records with the same ``start`` are ordered by activation id, descending, so paging
    is stable. Concurrency: ``_pending`` and ``_flushed`` are touched only on the
    event-loop thread, and ``_flush`` runs between tasks, so no lock is needed.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: builtins.list[tuple[str, Row]] = []
        self._flushed: asyncio.Future[None] | None = None

    async def put(self, record: dict[str, Any]) -> None:
        await self._write(_UPSERT, record)

    async def put_pending(self, record: dict[str, Any]) -> None:
        await self._write(_INSERT_IF_ABSENT, record)

    async def _write(self, statement: str, record: dict[str, Any]) -> None:
        if self._db.closed:
            raise ProviderError("store is closed")
        self._pending.append((statement, (*_activation_key(record), dumps_body(record))))
        if self._flushed is None:
            loop = asyncio.get_running_loop()
            self._flushed = loop.create_future()
            loop.call_soon(self.flush)
        # Shielded: a cancelled caller must not cancel the batch of the others.
        await asyncio.shield(self._flushed)

    def flush(self) -> None:
        """Commit every pending record in one transaction; wake their writers."""
        rows, self._pending = self._pending, []
        done, self._flushed = self._flushed, None
        if not rows:
            if done is not None and not done.done():
                done.set_result(None)
            return
        try:
            # Re-putting a record replaces it (ON CONFLICT), also within one batch; the
            # order of a pending and a final write of one id does not matter, since the
            # pending one only ever inserts.
            if len(rows) == 1:
                with self._db.autocommit() as conn:  # one statement commits by itself
                    conn.execute(*rows[0])
            else:
                with self._db.transaction() as conn:
                    for statement in (_UPSERT, _INSERT_IF_ABSENT):
                        batch = [row for sql, row in rows if sql is statement]
                        if batch:
                            conn.executemany(statement, batch)
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
        where, params = self._where(query)
        with self._db.autocommit() as conn:
            rows = conn.execute(
                f"SELECT body FROM activations WHERE {where}"
                " ORDER BY start DESC, activation_id DESC LIMIT ? OFFSET ?",
                (*params, *limit_offset(query.skip, query.limit)),
            ).fetchall()
        return [orjson.loads(body) for (body,) in rows]

    async def count(self, query: ActivationQuery) -> int:
        where, params = self._where(query)
        with self._db.autocommit() as conn:
            row = conn.execute(f"SELECT count(*) FROM activations WHERE {where}", params).fetchone()
        return int(row[0])

    @staticmethod
    def _where(query: ActivationQuery) -> tuple[str, tuple[str | int, ...]]:
        clauses = ["namespace = ?"]
        params: builtins.list[str | int] = [query.namespace]
        if query.name is not None:
            clauses.append("name = ?")
            params.append(query.name)
        if query.since is not None:
            clauses.append("start >= ?")
            params.append(query.since)
        if query.upto is not None:
            clauses.append("start <= ?")
            params.append(query.upto)
        return " AND ".join(clauses), tuple(params)
