"""The store `squall admin` acts on, opened the way the server opens it, and the
maintenance it offers operators: schema migration and statistics.

``--store URL`` / ``$SQUALL_STORE_URL`` names the store (``postgresql://…`` or
``sqlite:///…``, opened by ``squall.store.factory.open_store`` as the servers open it);
without one it is the SQLite file ``squall.db`` under ``--home`` / ``$SQUALL_HOME``, the one
``squall standalone`` uses. Opening a store applies pending schema migrations (every
provider does so on open), so admin commands on an old store bring it up to date first.

Acting on the store of a running server is safe: the SQLite provider takes its write lock
per transaction (a busy server makes a command wait, up to the busy timeout), and the server
reads what admin wrote on its next look-up. Servers cache credentials and limits for up to
10 seconds, so a deleted or rotated key, or a changed throttle, reaches them within that;
a new namespace works at once (failed look-ups are never cached).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from squall.config import Settings
from squall.errors import SquallError
from squall.store.contracts import COLLECTIONS, Store
from squall.store.factory import SQLITE_PREFIX, open_store

if TYPE_CHECKING:
    from psycopg import AsyncConnection

T = TypeVar("T")


def describe(settings: Settings) -> str:
    """Where the store is, for messages (a URL's password is not shown)."""
    if settings.store_url:
        scheme, sep, rest = settings.store_url.partition("://")
        userinfo, at, host = rest.rpartition("@")
        if at and ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        return f"{scheme}{sep}{userinfo}{at}{host}"
    return str(settings.db_path)


@asynccontextmanager
async def open_admin_store(settings: Settings) -> AsyncIterator[Store]:
    """The store of ``settings`` (migrated to the current schema), closed on exit."""
    store = await open_store(settings)
    try:
        yield store
    finally:
        await store.close()


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file of ``settings``, or None for another provider."""
    url = settings.store_url.strip()
    if not url:
        return settings.db_path
    if url.startswith(SQLITE_PREFIX):
        return Path(url[len(SQLITE_PREFIX) :])
    return None


# -- maintenance ----------------------------------------------------------------------


@dataclass
class Stats:
    """What ``squall admin db stats`` shows."""

    provider: str
    location: str
    schema_version: int | None
    size_bytes: int | None
    namespaces: int
    entities: dict[str, int] = field(default_factory=dict)
    activations: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def sqlite_schema_version(path: Path) -> int | None:
    """The schema version recorded in an SQLite file, or None when there is no file yet.
    Read without opening the store, which would migrate it."""
    if not path.exists():
        return None
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def sqlite_stats(path: Path) -> Stats:
    """Counts straight from the tables (one query each, read-only connection): unlike the
    store contracts, they cover every namespace, also ones without credentials (the
    built-in ``whisk.system``)."""
    from squall.store.sqlite_schema import BUSY_TIMEOUT_MS

    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        counted = dict(
            conn.execute("SELECT collection, count(*) FROM entities GROUP BY collection")
        )
        extra: dict[str, int] = {}
        for table, label in (
            ("feed_schedules", "feed schedules"),
            ("gateway_apis", "gateway APIs"),
        ):
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
            if exists:
                extra[label] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        return Stats(
            provider="sqlite",
            location=str(path),
            schema_version=version,
            # The WAL holds committed pages not yet copied into the main file.
            size_bytes=sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()),
            namespaces=int(conn.execute("SELECT count(*) FROM subjects").fetchone()[0]),
            entities={c: int(counted.get(c, 0)) for c in COLLECTIONS},
            activations=int(conn.execute("SELECT count(*) FROM activations").fetchone()[0]),
            extra=extra,
        )


def postgres_schema_version(url: str) -> int:
    """The schema version recorded in a PostgreSQL database (0 when it has no tables yet),
    read over a plain connection: opening the store would migrate it."""
    import psycopg

    from squall.errors import ProviderError

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            found = conn.execute("SELECT to_regclass('squall_schema_version') IS NOT NULL")
            row = found.fetchone()
            if row is None or not row[0]:
                return 0
            row = conn.execute(
                "SELECT coalesce(max(version), 0) FROM squall_schema_version"
            ).fetchone()
            return 0 if row is None else int(row[0])
    except psycopg.Error as error:
        raise ProviderError(f"postgresql: {str(error).strip()}") from error


async def postgres_stats(store: Store, settings: Settings) -> Stats:
    """Counts straight from the tables, and their size on disk (indexes included)."""
    from squall.store.encrypted import EncryptedStore
    from squall.store.postgres import PostgresStore
    from squall.store.postgres_schema import schema_version

    if isinstance(store, EncryptedStore):
        store = store.inner
    assert isinstance(store, PostgresStore)
    version = await schema_version(store.database)

    async def read(conn: AsyncConnection[Any]) -> Stats:
        async def one(query: str) -> int:
            row = await (await conn.execute(query)).fetchone()
            return 0 if row is None or row[0] is None else int(row[0])

        cur = await conn.execute("SELECT collection, count(*) FROM entities GROUP BY collection")
        counted = {str(c): int(n) for c, n in await cur.fetchall()}
        size = await one(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname = current_schema()"
        )
        return Stats(
            provider="postgresql",
            location=describe(settings),
            schema_version=version,
            size_bytes=size,
            namespaces=await one("SELECT count(*) FROM subjects"),
            entities={c: counted.get(c, 0) for c in COLLECTIONS},
            activations=await one("SELECT count(*) FROM activations"),
            extra={
                "feed schedules": await one("SELECT count(*) FROM feed_schedules"),
                "gateway APIs": await one("SELECT count(*) FROM gateway_apis"),
            },
        )

    return await store.database.run(read, idempotent=True)


def format_stats(stats: Stats) -> list[str]:
    rows: list[tuple[str, Any]] = [
        ("store", f"{stats.provider} {stats.location}"),
        ("schema version", stats.schema_version if stats.schema_version is not None else "?"),
    ]
    if stats.size_bytes is not None:
        rows.append(("size", _size(stats.size_bytes)))
    rows.append(("namespaces", stats.namespaces))
    rows.extend((collection, count) for collection, count in stats.entities.items())
    rows.append(("activations", stats.activations))
    rows.extend(stats.extra.items())
    width = max(len(label) for label, _ in rows)
    return [f"{label.ljust(width)}  {value}" for label, value in rows]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit} ({n} B)"
        value /= 1024
    raise AssertionError("unreachable")


def namespace_missing(namespace: str) -> str:
    """wskadmin's words for a namespace without a subject."""
    return f"no identities found for namespace '{namespace}'"


class Target:
    """The store the commands act on (from the group's options)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, work: Callable[[Store], Awaitable[T]]) -> T:
        """Open the store, run ``work`` on it, close it; Squall errors become a one-line
        message and exit status 1."""

        async def main() -> T:
            async with open_admin_store(self.settings) as store:
                return await work(store)

        try:
            return asyncio.run(main())
        except SquallError as error:
            raise click.ClickException(error.message) from None


pass_target = click.make_pass_decorator(Target)
