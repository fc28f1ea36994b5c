"""Opening the store a :class:`~squall.config.Settings` names.

``store_url``:

- empty → SQLite at ``settings.db_path`` (the standalone default);
- ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``sqlite:///:memory:`` →
  SQLite at that path;
- ``postgresql://…`` or ``postgres://…`` → PostgreSQL (the URL goes to libpq as is, so
  its query options such as ``options=-csearch_path%3Dsquall`` apply);
- anything else → :class:`~squall.errors.ConfigError`, before anything is opened.

Failing to reach the database raises ``ProviderError`` from the provider.

Every store is opened inside :class:`~squall.store.encrypted.EncryptedStore`, with the
parameter keys of ``settings`` (:func:`~squall.store.encryption.key_ring`): default
parameters, feed schedules and log-forwarding credentials are encrypted at rest whichever
provider holds them.
"""

from __future__ import annotations

from squall.config import Settings
from squall.errors import ConfigError
from squall.store.contracts import Store
from squall.store.encrypted import EncryptedStore
from squall.store.encryption import KeyRing, key_ring
from squall.store.records import Clock, wall_clock_ms

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


async def open_store(
    settings: Settings, *, clock: Clock = wall_clock_ms, ring: KeyRing | None = None
) -> EncryptedStore:
    """Open (and migrate) the store of ``settings``, encrypting with ``ring`` (default: the
    keys of ``settings``); the caller closes it."""
    ring = key_ring(settings) if ring is None else ring
    return EncryptedStore(await open_provider(settings, clock=clock), ring)


async def open_provider(settings: Settings, *, clock: Clock = wall_clock_ms) -> Store:
    """The provider's own store of ``settings``, without encryption (maintenance only)."""
    url = settings.store_url.strip()
    if not url:
        from squall.store.sqlite import SqliteStore

        return await SqliteStore.open(settings.db_path, clock=clock)
    if url.startswith(SQLITE_PREFIX):
        from squall.store.sqlite import SqliteStore

        path = url[len(SQLITE_PREFIX) :]
        if not path:
            raise ConfigError(f"store URL {url!r} names no file (sqlite:///path/to/squall.db)")
        return await SqliteStore.open(path, clock=clock)
    if url.startswith(POSTGRES_PREFIXES):
        # Imported here: psycopg is only needed by clusters that use it.
        from squall.store.postgres import PostgresStore

        return await PostgresStore.open(url, clock=clock)
    scheme = url.partition(":")[0]  # never the rest: it may hold a password
    raise ConfigError(
        f"unknown store URL scheme in {scheme!r}: use postgresql://… for PostgreSQL,"
        " sqlite:///path for a SQLite file, or nothing for the SQLite file in SQUALL_HOME"
    )
