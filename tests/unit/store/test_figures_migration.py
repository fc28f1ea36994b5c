"""The migration that adds the dashboard's indexed figures (``activations_figures``) in
both providers: records stored before it count in ``ActivationStore.stats`` after it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgsupport import PG_DSN, fresh_schema, require_postgres

from squall.store import postgres_schema, sqlite_schema
from squall.store.contracts import ActivationQuery
from squall.store.records import dumps_body
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

NS = "guest"
T0 = 1_700_000_040_000


def _before_figures(migrations: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
    """The migrations up to (not including) the one that creates the figures' index."""
    (position,) = [
        i
        for i, m in enumerate(migrations)
        if any("CREATE INDEX activations_figures" in s for s in m)
    ]
    return migrations[:position]


# As an older Squall wrote them: this version's store writes columns of later migrations.
INSERT = "INSERT INTO activations (activation_id, namespace, name, start, body) VALUES "


def _rows() -> list[tuple[str, str, str, int, str]]:
    # Every record is of NS/hello: its indexed name is "hello".
    return [(r["activationId"], NS, "hello", r["start"], dumps_body(r)) for r in _records()]


def _records() -> list[dict[str, Any]]:
    out = []
    for i, (status, init) in enumerate((("success", 40), ("success", None), ("oops", None))):
        annotations: list[dict[str, Any]] = [{"key": "path", "value": f"{NS}/hello"}]
        if init is not None:
            annotations.append({"key": "initTime", "value": init})
        out.append(
            {
                "namespace": NS,
                "name": "hello",
                "activationId": f"{i:032x}",
                "start": T0 + i,
                "end": T0 + i + 10 * (i + 1),
                "duration": 10 * (i + 1),
                "response": {"status": status, "result": {"nul": "\u0000"}},
                "logs": [],
                "annotations": annotations,
            }
        )
    return out


async def _check(stats_source: Any) -> None:
    stats = await stats_source.stats(ActivationQuery(NS))
    (bucket,) = stats.buckets
    assert bucket.statuses == {"success": 2, "oops": 1}
    assert (bucket.cold, bucket.warm, bucket.init_ms) == (1, 2, 40)
    assert (bucket.p50, bucket.p99) == (20, 30)


async def test_sqlite_records_from_before_the_migration_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database at the version before the figures, with records
    path = tmp_path / "squall.db"
    older = _before_figures(sqlite_schema.MIGRATIONS)
    with monkeypatch.context() as m:
        m.setattr(sqlite_schema, "MIGRATIONS", older)
        m.setattr(sqlite_schema, "SCHEMA_VERSION", len(older))
        store = await SqliteStore.open(path)
        await store.close()
    with sqlite3.connect(path) as conn:
        conn.executemany(INSERT + "(?, ?, ?, ?, ?)", _rows())
    # When this version opens it (and migrates) / Then the old records count
    store = await SqliteStore.open(path)
    try:
        await _check(store.activations)
    finally:
        await store.close()


async def test_postgres_records_from_before_the_migration_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_postgres()
    from squall.store.postgres import PostgresStore

    with fresh_schema() as schema:
        # Given a schema at the version before the figures, with records
        older = _before_figures(postgres_schema.MIGRATIONS)
        with monkeypatch.context() as m:
            m.setattr(postgres_schema, "MIGRATIONS", older)
            m.setattr(postgres_schema, "SCHEMA_VERSION", len(older))
            store = await PostgresStore.open(PG_DSN, schema=schema, max_size=2)
            await store.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {schema}")
            conn.cursor().executemany(INSERT + "(%s, %s, %s, %s, %s)", _rows())
        # When this version opens it (and migrates) / Then the old records count
        store = await PostgresStore.open(PG_DSN, schema=schema, max_size=2)
        try:
            await _check(store.activations)
        finally:
            await store.close()
