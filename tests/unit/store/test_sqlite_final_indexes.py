"""The SQLite activation indexes that hold final records only (migration 9): an older
file is migrated with its records readable as before, and every read of the activation
store is served by an index, never a scan of the table."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from squall.store import sqlite_schema
from squall.store.contracts import ActivationQuery
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

FINAL_INDEXES = ("activations_final", "activations_final_by_name")
DROPPED = (
    "activations_by_start",
    "activations_by_name",
    "activations_by_age",
    "activations_figures",
)


def raw(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(path, isolation_level=None))


def body(activation_id: str, namespace: str, start: int, status: str) -> str:
    return (
        f'{{"namespace":"{namespace}","name":"hello","activationId":"{activation_id}",'
        f'"start":{start},"end":{start + 5},"duration":5,'
        f'"response":{{"status":"{status}","success":{str(status == "success").lower()},'
        '"result":{}},"logs":[],'
        f'"annotations":[{{"key":"path","value":"{namespace}/hello"}}]}}'
    )


def old_file(path: Path) -> None:
    """A file of the schema before migration 9, as the Squall of then wrote it: final
    records of two namespaces, a queued and a started one."""
    before = len(sqlite_schema.MIGRATIONS) - 1
    assert any("activations_final" in s for s in sqlite_schema.MIGRATIONS[before])
    with raw(path) as conn:
        for migration in sqlite_schema.MIGRATIONS[:before]:
            for statement in migration:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {before}")
        insert = (
            "INSERT INTO activations (activation_id, namespace, name, start, body, state)"
            " VALUES (?, ?, 'hello', ?, ?, ?)"
        )
        rows = [
            ("a" * 32, "guest", 1000, "success", None),
            ("b" * 32, "guest", 1001, "pending", "queued"),
            ("c" * 32, "guest", 1002, "pending", "started"),
            ("d" * 32, "guest", 1003, "application error", None),
            ("e" * 32, "other", 1000, "success", None),
        ]
        for activation_id, namespace, start, status, state in rows:
            conn.execute(
                insert,
                (
                    activation_id,
                    namespace,
                    start,
                    body(activation_id, namespace, start, status),
                    state,
                ),
            )


async def test_an_older_file_is_migrated_and_reads_as_before(tmp_path: Path) -> None:
    # Given a file of the previous schema with final, queued and started records
    path = tmp_path / "s.db"
    old_file(path)
    # When this Squall opens it
    async with await SqliteStore.open(path) as store:
        # Then the activation indexes are the partial ones
        with raw(path) as conn:
            indexes = {
                name
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index'"
                    " AND tbl_name = 'activations'"
                )
            }
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(
                sqlite_schema.MIGRATIONS
            )
        assert set(FINAL_INDEXES) <= indexes
        assert not indexes & set(DROPPED)
        # And every record is listed, counted and summarised, whatever its state
        activations = store.activations
        listed = await activations.list(ActivationQuery("guest"))
        assert [r.activation_id for r in listed] == ["d" * 32, "c" * 32, "b" * 32, "a" * 32]
        assert await activations.count(ActivationQuery("guest", since=1001)) == 3
        stats = await activations.stats(ActivationQuery("guest"))
        assert stats.total == 4
        assert sum(b.statuses.get("pending", 0) for b in stats.buckets) == 2
        unfinished = await activations.unfinished("", 10)
        assert [(u.record.activation_id, u.started) for u in unfinished] == [
            ("b" * 32, False),
            ("c" * 32, True),
        ]
        # And retention reaches both namespaces and the unfinished records
        assert await activations.prune(1002) == 3
        assert await activations.count(ActivationQuery("other")) == 0
        left = await activations.list(ActivationQuery("guest"))
        assert [r.activation_id for r in left] == ["d" * 32, "c" * 32]


async def test_every_read_is_served_by_an_index(tmp_path: Path) -> None:
    # Given a store with records (the planner sees no statistics, as in production)
    path = tmp_path / "s.db"
    old_file(path)
    async with await SqliteStore.open(path) as store:
        statements: list[str] = []
        conn = store._db.conn
        conn.set_trace_callback(statements.append)
        # When every kind of read runs
        activations = store.activations
        for query in (
            ActivationQuery("guest"),
            ActivationQuery("guest", name="hello", since=1000, upto=2000, skip=1),
            ActivationQuery("guest", since=1001),
        ):
            await activations.list(query)
            await activations.count(query)
            await activations.stats(query)
        await activations.get("guest", "a" * 32)
        await activations.prune(0)
        conn.set_trace_callback(None)
        # Then no plan scans the table: final records come from the partial indexes,
        # unfinished ones from activations_unfinished
        plans = {
            sql: [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
            for sql in statements
            if "activations" in sql
        }
        assert plans
        for sql, plan in plans.items():
            on_table = [
                step for step in plan if step.startswith(("SCAN activations", "SEARCH activations"))
            ]
            assert on_table, sql
            for step in on_table:
                assert "USING" in step, (sql, plan)
            if "state IS NULL" in sql and not sql.startswith("SELECT namespace"):
                assert any(name in step for step in on_table for name in FINAL_INDEXES), plan
