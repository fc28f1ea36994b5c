"""The store `squall admin` acts on, opened the way the server opens it, and the
maintenance it offers operators: schema migration and statistics.

``--store URL`` / ``$SQUALL_STORE_URL`` names a shared store (PostgreSQL, through
``squall.store.factory.open_store``); otherwise it is the SQLite file ``squall.db`` under
``--home`` / ``$SQUALL_HOME`` — the one ``squall standalone`` uses. Opening a store applies
pending schema migrations (every provider does so on open), so admin commands on an old
file bring it up to date first.

Acting on the store of a running server is safe: the SQLite provider takes its write lock
per transaction (a busy server makes a command wait, up to the busy timeout), and the server
reads what admin wrote on its next look-up. Servers cache credentials and limits for up to
10 seconds, so a deleted or rotated key, or a changed throttle, reaches them within that;
a new namespace works at once (failed look-ups are never cached).
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from squall.config import Settings
from squall.errors import ConfigError
from squall.store.contracts import COLLECTIONS, ActivationQuery, ActivationStore, AuthStore
from squall.store.contracts import EntityStore as EntityStoreContract


class AdminStore(Protocol):
    """What admin needs of an opened store (``SqliteStore`` and the factory's stores)."""

    @property
    def auth(self) -> AuthStore: ...

    @property
    def entities(self) -> EntityStoreContract: ...

    @property
    def activations(self) -> ActivationStore: ...

    async def close(self) -> None: ...


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
async def open_admin_store(settings: Settings) -> AsyncIterator[AdminStore]:
    """The store of ``settings`` (migrated to the current schema), closed on exit."""
    store: AdminStore
    if settings.store_url:
        # Imported by name: the shared-store providers are optional parts of a build.
        try:
            factory = importlib.import_module("squall.store.factory")
        except ModuleNotFoundError as error:
            raise ConfigError(
                f"this Squall cannot open {describe(settings)}: it has no store factory"
            ) from error
        store = await factory.open_store(settings)
    else:
        from squall.store.sqlite import SqliteStore

        store = await SqliteStore.open(settings.db_path)
    try:
        yield store
    finally:
        await store.close()


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
        for table, label in (("feed_schedules", "feed schedules"),):
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


async def contract_stats(store: AdminStore, settings: Settings) -> Stats:
    """Counts through the store contracts, for providers without a faster way: per
    namespace that has credentials (entities of other namespaces are not counted)."""
    subjects = await store.auth.list_subjects()
    entities = dict.fromkeys(COLLECTIONS, 0)
    activations = 0
    for subject in subjects:
        for collection in COLLECTIONS:
            entities[collection] += await store.entities.count(subject.namespace, collection)
        query = ActivationQuery(namespace=subject.namespace, limit=None)
        activations += await store.activations.count(query)
    version = getattr(store, "schema_version", None)
    return Stats(
        provider=settings.store_url.partition("://")[0] or "sqlite",
        location=describe(settings),
        schema_version=version if isinstance(version, int) else None,
        size_bytes=None,
        namespaces=len(subjects),
        entities=entities,
        activations=activations,
    )


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
