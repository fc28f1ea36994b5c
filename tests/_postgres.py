"""The machine's PostgreSQL server for the tests (127.0.0.1:5432, trust, database ``test``).

It is shared with anything else on the machine, so every test works in a schema of its
own (:func:`fresh_schema`), dropped afterwards. A test that needs a server of its own to
stop and start uses ``PrivatePostgres`` (tests/cluster/clustersupport.py) instead.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg
from _required import reachable, unavailable

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"


def pg_reachable() -> bool:
    return reachable(PG_HOST, PG_PORT)


def require_postgres() -> None:
    """Skip locally, fail with CI=true, when PostgreSQL is not reachable."""
    if not pg_reachable():
        unavailable(f"PostgreSQL on {PG_HOST}:{PG_PORT} is not available")


@contextlib.contextmanager
def fresh_schema(
    prefix: str = "squall_test", *, create: bool = False, dsn: str = PG_DSN
) -> Iterator[str]:
    """The name of a schema nobody uses (created first when ``create``: for a store URL
    whose ``search_path`` names it), dropped with everything in it afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    if create:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
