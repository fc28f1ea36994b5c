"""The PostgreSQL connection pool behind :mod:`squall.store.postgres`, and the one place
where database failures become :class:`~squall.errors.ProviderError`.

Guarantees:

- :func:`connect` returns a :class:`PgDatabase` whose schema is at
  :data:`~squall.store.postgres_schema.SCHEMA_VERSION` (migrated by
  :func:`~squall.store.postgres_schema.migrate`).
- :meth:`PgDatabase.run` maps every failure to reach or use the database (refused or
  dropped connections, no free connection within ``timeout``, SQL errors) to
  ``ProviderError``, and after :meth:`PgDatabase.close` raises
  ``ProviderError("store is closed")``.
- The pool recovers by itself: connections killed while idle in the pool (server
  restart, ``pg_terminate_backend``, a cut network) are noticed when taken out — without
  a round trip, see :func:`_check_idle` — and replaced; while the server is away the pool
  keeps trying to reconnect in the background, and requests get ``ProviderError`` after
  at most ``timeout`` seconds instead of waiting for ever.
"""

from __future__ import annotations

import select
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from squall.errors import ProviderError, SquallError
from squall.store.postgres_held import HeldConnection
from squall.store.postgres_schema import FIGURES_GIVEN, migrate

T = TypeVar("T")
Work = Callable[[AsyncConnection[Any]], Awaitable[T]]

# SQLSTATE of a backend terminated by the server (pg_terminate_backend, fast shutdown):
# the statement it was running, if any, was rolled back, so running it again is safe.
_ADMIN_SHUTDOWN = "57P01"


async def _check_idle(conn: AsyncConnection[Any]) -> None:
    """The pool's check when a connection is taken out: an idle connection has nothing to
    read, so a readable socket means the server closed it or sent a FATAL error (a
    terminated backend does) while it sat in the pool. Closing it makes the pool drop it
    and hand out another one. A poll of the socket, not a query: no round trip."""
    if not conn.closed:
        # poll, not select: a busy controller may have file descriptors above 1023.
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        if not poller.poll(0):
            return
        await conn.close()
    raise psycopg.OperationalError("connection was closed while idle in the pool")


async def _configure(conn: AsyncConnection[Any]) -> None:
    # Bodies come back as dicts parsed by orjson (several times faster than json.loads).
    set_json_loads(orjson.loads, conn)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"postgresql: {text[0] if text else type(exc).__name__}"


class PgDatabase:
    """An :class:`AsyncConnectionPool` of autocommit connections, shared by the stores.

    Concurrency: the pool hands each running operation a connection of its own (up to
    ``max_size``; further callers queue for at most ``timeout`` seconds), so operations
    run in parallel on the server and one slow query never blocks the others. Atomicity
    comes from the server, never from this process: each write is one statement or one
    transaction whose conditions are checked by the server as it writes.
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]]) -> None:
        self._pool = pool
        self._closed = False

    @property
    def pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        return self._pool

    @property
    def closed(self) -> bool:
        return self._closed

    async def run(
        self, work: Work[T], *, idempotent: bool, held: HeldConnection | None = None
    ) -> T:
        """Run ``work`` on a pooled connection and return its result.

        ``SquallError`` (``Conflict``, ``NotFound``) raised by ``work`` passes through;
        every database failure becomes ``ProviderError``. When the connection breaks,
        ``work`` runs once more on another connection if that cannot repeat an effect:
        when ``idempotent`` (reads, upserts, deletes by key), or when the server reports
        it terminated the backend, which rolled the statement back.

        ``held``: run on that caller's connection (taken from the pool at its first use,
        kept after a success; see :class:`HeldConnection`), with the same errors and
        retries.
        """
        for attempt in (1, 2):
            if self._closed:
                raise ProviderError("store is closed")
            try:
                if held is not None:
                    return await held.use(work)
                async with self._pool.connection() as conn:
                    return await work(conn)
            except SquallError:
                raise
            except PoolClosed as exc:
                raise ProviderError("store is closed") from exc
            except PoolTimeout as exc:
                raise ProviderError(
                    f"postgresql: no connection within {self._pool.timeout:g} s"
                    " (is the server reachable?)"
                ) from exc
            except psycopg.OperationalError as exc:
                retry = idempotent or exc.sqlstate == _ADMIN_SHUTDOWN
                if attempt == 2 or not retry:
                    raise ProviderError(_describe(exc)) from exc
            except psycopg.Error as exc:
                raise ProviderError(_describe(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def hold(self) -> HeldConnection:
        """A connection to keep across several :meth:`run` calls (``held=``); the caller
        must :meth:`HeldConnection.release` it."""
        return HeldConnection(self._pool)

    async def close(self) -> None:
        """Close every connection; idempotent. Every later :meth:`run` raises."""
        self._closed = True
        await self._pool.close()


def _with_defaults(dsn: str, schema: str | None) -> dict[str, Any]:
    try:
        given = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ProviderError(f"postgresql: invalid connection URL: {exc}") from exc
    kwargs: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = 5  # a dead host must not hang a connection attempt
    if "application_name" not in given:
        kwargs["application_name"] = "squall"
    # Appended to the URL's own options, if any.
    options = f"{given.get('options', '')} {FIGURES_GIVEN}"
    if schema is not None:
        options = f"{options} -c search_path={schema}"
    kwargs["options"] = options.strip()
    return kwargs


async def connect(
    dsn: str,
    *,
    schema: str | None = None,
    min_size: int = 1,
    max_size: int = 8,
    timeout: float = 5.0,
) -> PgDatabase:
    """Open a pool to ``dsn`` (waiting for ``min_size`` connections at most ``timeout``
    seconds), create ``schema`` if given and missing, migrate, and return the database.

    ``schema`` puts the tables in that schema (``search_path``); without it they go in
    the URL's current schema (``public``, or whatever ``options=-csearch_path=…`` says).
    """
    pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
        dsn,
        kwargs=_with_defaults(dsn, schema),
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        open=False,
        configure=_configure,
        check=_check_idle,
        name="squall-store",
    )
    db = PgDatabase(pool)
    try:
        await pool.open(wait=True, timeout=timeout)
    except PoolTimeout as exc:
        await pool.close()
        raise ProviderError(f"postgresql: cannot connect within {timeout:g} s") from exc
    try:
        await migrate(db, create_schema=schema)
    except BaseException:
        await db.close()
        raise
    return db


def limit_offset(skip: int, limit: int | None) -> tuple[int | None, int]:
    if skip < 0 or (limit is not None and limit < 0):
        raise ValueError(f"skip and limit must not be negative (skip={skip}, limit={limit})")
    return limit, skip  # LIMIT NULL: no limit in PostgreSQL
