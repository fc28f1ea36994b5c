"""Activation writes in one event-loop iteration share one SQLite transaction; a lone
write (the first after a quiet iteration) commits at once, without awaiting."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from squall.entities.activation import Activation, ActivationResponse
from squall.errors import ProviderError
from squall.store.contracts import ActivationQuery
from squall.store.sqlite import SqliteStore
from squall.store.sqlite_activations import QUIET_FLUSHES

pytestmark = pytest.mark.anyio


def _record(i: int) -> Activation:
    return Activation(
        activation_id=f"{i:032x}",
        namespace="guest",
        name="a",
        start=1_000 + i,
        response=ActivationResponse.ok({}),
        annotations=[{"key": "path", "value": "guest/a"}],
    )


async def test_concurrent_puts_are_all_committed_when_they_return(tmp_path: Path) -> None:
    # Given a store and many writers in the same loop iteration
    store = await SqliteStore.open(tmp_path / "s.db")
    await asyncio.gather(*(store.activations.put(_record(i)) for i in range(50)))
    # When another connection reads the file / Then every record is there
    other = await SqliteStore.open(tmp_path / "s.db")
    assert await other.activations.count(ActivationQuery("guest", limit=None)) == 50
    await other.close()
    await store.close()


async def test_close_writes_what_is_pending(tmp_path: Path) -> None:
    # Given a put whose batch has not been flushed yet (the first write of the iteration
    # committed at once; the second queued its row and awaits the flush)
    store = await SqliteStore.open(tmp_path / "s.db")
    first = asyncio.create_task(store.activations.put(_record(0)))
    pending = asyncio.create_task(store.activations.put(_record(1)))
    await asyncio.sleep(0)
    assert first.done() and not pending.done()
    # When the store closes before the flush runs
    await store.close()
    # Then the put completes and the record is in the file
    await pending
    reopened = await SqliteStore.open(tmp_path / "s.db")
    assert (await reopened.activations.get("guest", f"{1:032x}")).start == 1_001
    await reopened.close()


async def test_a_cancelled_writer_does_not_cancel_the_batch(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    # (the iteration's first write commits at once: the next ones queue)
    writers = [asyncio.create_task(store.activations.put(_record(i))) for i in range(3)]
    await asyncio.sleep(0)
    _, first, second = writers
    assert not first.done()
    first.cancel()
    await second
    # Both rows were written: the batch ran although one writer gave up waiting
    assert await store.activations.count(ActivationQuery("guest", limit=None)) == 3
    await store.close()


async def test_put_after_close_raises(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    await store.close()
    with pytest.raises(ProviderError):
        await store.activations.put(_record(1))


def _commits(statements: list[str]) -> list[str]:
    """The transactions in a statement trace: "at once" for a write in autocommit mode,
    "batch" for a BEGIN IMMEDIATE … COMMIT."""
    commits: list[str] = []
    in_batch = False
    for statement in statements:
        if statement.startswith("BEGIN"):
            commits.append("batch")
            in_batch = True
        elif statement.startswith("COMMIT"):
            in_batch = False
        elif statement.startswith("INSERT") and not in_batch:
            commits.append("at once")
    return commits


async def test_a_lone_write_commits_before_it_returns_without_awaiting(tmp_path: Path) -> None:
    # Given a store nobody else writes to
    store = await SqliteStore.open(tmp_path / "s.db")
    other = await SqliteStore.open(tmp_path / "s.db")
    # When a put is stepped once, as a task would (no loop iteration in between)
    put = store.activations.put(_record(1))
    with pytest.raises(StopIteration):
        put.send(None)
    # Then it returned, and another connection already reads the record
    assert (await other.activations.get("guest", f"{1:032x}")).start == 1_001
    # And a start claimed at once says whether it won, as one in a batch does
    started = _record(1)
    assert await store.activations.start(started) is False  # a final record: never started
    await other.close()
    await store.close()


async def test_writes_join_batches_under_load_and_go_back_to_at_once(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    statements: list[str] = []
    store._db.conn.set_trace_callback(statements.append)
    # Given a quiet store, when 20 writers write in one iteration
    await asyncio.gather(*(store.activations.put(_record(i)) for i in range(20)))
    # Then the first commits at once and the other 19 share one transaction
    assert _commits(statements) == ["at once", "batch"]
    # When 20 more write in one iteration, right after (the store has seen company)
    statements.clear()
    await asyncio.gather(*(store.activations.put(_record(i)) for i in range(20, 40)))
    # Then all 20 share one transaction
    assert _commits(statements) == ["batch"]
    # When one writer writes alone, one write after the other: the first QUIET_FLUSHES
    # join batches (of one, each committed as one statement), quiet flushes in a row,
    # which tell the store it is quiet again: the next commits at once
    statements.clear()
    for n in range(40, 40 + QUIET_FLUSHES):
        lone = asyncio.create_task(store.activations.put(_record(n)))
        await asyncio.sleep(0)
        assert not lone.done()  # queued for the flush
        await lone
    await asyncio.sleep(0)  # the iteration after the flush: quiet
    last = store.activations.put(_record(40 + QUIET_FLUSHES))
    with pytest.raises(StopIteration):
        last.send(None)
    assert _commits(statements) == ["at once"] * (QUIET_FLUSHES + 1)
    store._db.conn.set_trace_callback(None)
    total = 41 + QUIET_FLUSHES
    assert await store.activations.count(ActivationQuery("guest", limit=None)) == total
    await store.close()


def _refuse_writes(store: SqliteStore, activation_id: str = "") -> None:
    """Have SQLite refuse every write of an activation row (of ``activation_id`` only,
    if given) from now on: a real constraint, so the failure is SQLite's own, as a full
    disk or a broken file would be."""
    when = f" WHEN NEW.activation_id = '{activation_id}'" if activation_id else ""
    store._db.conn.execute(
        f"CREATE TRIGGER refuse BEFORE INSERT ON activations{when}"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )


async def test_a_write_committed_at_once_that_fails_is_a_provider_error(tmp_path: Path) -> None:
    # Given a quiet store whose writes SQLite refuses
    store = await SqliteStore.open(tmp_path / "s.db")
    _refuse_writes(store)
    # When a lone write commits at once / Then it raises the store's error, with SQLite's
    with pytest.raises(ProviderError, match="sqlite: refused"):
        await store.activations.put(_record(1))
    await store.close()


async def test_a_failed_batch_rolls_back_and_every_writer_gets_the_error(tmp_path: Path) -> None:
    # Given a store whose writes of one activation SQLite refuses
    store = await SqliteStore.open(tmp_path / "s.db")
    await store.activations.put(_record(0))
    _refuse_writes(store, f"{2:032x}")
    statements: list[str] = []
    store._db.conn.set_trace_callback(statements.append)
    # When three writers write in one iteration: the first commits at once; the other
    # two (a replacement of the stored record, the refused one) share a batch that fails
    results = await asyncio.gather(
        store.activations.put(_record(0)),
        store.activations.put(_record(0)),
        store.activations.put(_record(2)),
        return_exceptions=True,
    )
    store._db.conn.set_trace_callback(None)
    # Then the batch was rolled back whole and both of its writers got the store's error
    assert results[0] is None
    assert [type(r) for r in results[1:]] == [ProviderError, ProviderError]
    assert "sqlite: refused" in str(results[2])
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")] == [
        "BEGIN IMMEDIATE",
        "ROLLBACK",
    ]
    assert await store.activations.count(ActivationQuery("guest", limit=None)) == 1
    # And the store goes on: the connection is out of the failed transaction
    store._db.conn.execute("DROP TRIGGER refuse")
    await store.activations.put(_record(3))
    assert await store.activations.count(ActivationQuery("guest", limit=None)) == 2
    await store.close()
