"""A PostgreSQL connection held out of the pool across several calls of one caller.

See :class:`HeldConnection`; :meth:`squall.store.postgres_database.PgDatabase.hold` makes
one and ``PgDatabase.run(held=)`` uses it (the activation group commit's flusher,
``postgres_batch.py``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

T = TypeVar("T")
Work = Callable[[AsyncConnection[Any]], Awaitable[T]]

#: Calls on one connection before it goes back to the pool (see HeldConnection).
MAX_USES = 1000
#: Seconds one connection is held at most (see HeldConnection).
MAX_HOLD_S = 5.0


class HeldConnection:
    """One pooled connection kept out of the pool across several :meth:`PgDatabase.run`
    calls of one caller, for a caller with a run of work in a row (the group commit's
    flusher while writes keep coming): each call after the first saves the pool's
    checkout and return (its lock, the idle check, its statistics), which cost a fifth
    of a single write's Python. The caller returns it with :meth:`release` when its run
    ends, so an idle connection always waits in the pool, where the pool's idle check
    finds one the server closed meanwhile.

    After :data:`MAX_USES` calls or :data:`MAX_HOLD_S` seconds it goes back to the pool
    all the same and the next call takes one: under a steady load the flusher's run never
    ends, and the pool's ``max_lifetime`` recycling and idle check must still reach it.

    A call that fails in any way (the server's error, a broken connection, cancelled)
    returns the connection to the pool at once — which discards a broken one — and the
    next call takes another: errors and retries are :meth:`PgDatabase.run`'s.

    Concurrency: for one task at a time (the connection runs one statement at a time).
    """

    __slots__ = ("_conn", "_pool", "_returns_at", "_uses")

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]]) -> None:
        self._pool = pool
        self._conn: AsyncConnection[Any] | None = None
        self._uses = 0
        self._returns_at = 0.0

    async def use(self, work: Work[T]) -> T:
        conn = self._conn
        if conn is None:
            conn = self._conn = await self._pool.getconn()
            self._uses, self._returns_at = 0, time.monotonic() + MAX_HOLD_S
        try:
            result = await work(conn)
        except BaseException:
            self._conn = None
            await self._pool.putconn(conn)
            raise
        self._uses += 1
        if self._uses >= MAX_USES or time.monotonic() >= self._returns_at:
            await self.release()
        return result

    async def release(self) -> None:
        """Return the connection to the pool (nothing when none is held); idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.putconn(conn)
