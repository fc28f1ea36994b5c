"""Activation writes in one event-loop iteration share one SQLite transaction."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from squall.entities.activation import Activation, ActivationResponse
from squall.errors import ProviderError
from squall.store.contracts import ActivationQuery
from squall.store.sqlite import SqliteStore

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
    # Given a put whose batch has not been flushed yet
    store = await SqliteStore.open(tmp_path / "s.db")
    pending = asyncio.create_task(store.activations.put(_record(1)))
    await asyncio.sleep(0)  # the put has queued its row and awaits the flush
    # When the store closes before the flush runs
    await store.close()
    # Then the put completes and the record is in the file
    await pending
    reopened = await SqliteStore.open(tmp_path / "s.db")
    assert (await reopened.activations.get("guest", f"{1:032x}")).start == 1_001
    await reopened.close()


async def test_a_cancelled_writer_does_not_cancel_the_batch(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    first = asyncio.create_task(store.activations.put(_record(1)))
    second = asyncio.create_task(store.activations.put(_record(2)))
    await asyncio.sleep(0)
    first.cancel()
    await second
    # Both rows were written: the batch ran although one writer gave up waiting
    assert await store.activations.count(ActivationQuery("guest", limit=None)) == 2
    await store.close()


async def test_put_after_close_raises(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    await store.close()
    with pytest.raises(ProviderError):
        await store.activations.put(_record(1))
