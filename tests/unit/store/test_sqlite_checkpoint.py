"""The SQLite store's WAL is checkpointed by a thread of its own, never by the event
loop's commits (squall/store/sqlite_checkpoint.py)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest
from _polling import until

from squall.entities.activation import Activation, ActivationResponse
from squall.store import sqlite_checkpoint, sqlite_writehold
from squall.store.contracts import ActivationQuery
from squall.store.sqlite import SqliteStore
from squall.store.sqlite_checkpoint import MIN_FRAMES, Checkpointer

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _frequent_checkpoints(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stores these tests open checkpoint every 0.05 s, so that waiting for a few
    checkpoints takes a fraction of a second (the default is a second or more)."""
    if "by_default" not in request.node.name:
        monkeypatch.setattr(sqlite_checkpoint, "INTERVAL_S", 0.05)


def _record(i: int) -> Activation:
    return Activation(
        activation_id=f"{i:032x}",
        namespace="guest",
        name="a",
        start=1_000 + i,
        response=ActivationResponse.ok({"n": i, "padding": "x" * 500}),
        annotations=[{"key": "path", "value": "guest/a"}],
    )


def _checkpointer(store: SqliteStore) -> Checkpointer:
    checkpointer = store._db.checkpointer
    assert checkpointer is not None
    return checkpointer


async def _checkpointed(store: SqliteStore) -> bool:
    """Whether a checkpoint begun after this call copied the whole WAL into the file."""
    checkpointer = _checkpointer(store)
    # The one under way may have begun before the last commit: wait for the one after it.
    after = checkpointer.runs + 1

    def done() -> bool:
        last = checkpointer.last
        return checkpointer.runs > after and last is not None and 0 < last[0] == last[1]

    return await until(done)


async def _write(store: SqliteStore, first: int, count: int) -> None:
    for i in range(first, first + count):  # one commit each, as sequential invokes do
        await store.activations.put(_record(i))


async def test_the_event_loops_connection_never_checkpoints(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        row = store._db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert row[0] == 0
        assert _checkpointer(store).running
    finally:
        await store.close()


async def test_the_thread_copies_committed_records_into_the_database_file(
    tmp_path: Path,
) -> None:
    # Given a file store and records committed to its WAL
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        await _write(store, 0, 300)
        # When the checkpointer has copied every frame of the WAL
        assert await _checkpointed(store)
        # Then the database file alone (without its WAL) holds them all
        shutil.copyfile(tmp_path / "s.db", tmp_path / "copy.db")
        with sqlite3.connect(tmp_path / "copy.db") as copy:
            assert copy.execute("SELECT count(*) FROM activations").fetchone()[0] == 300
    finally:
        await store.close()


async def test_the_wal_starts_over_after_each_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store whose WAL was checkpointed once after a batch of writes (of more
    # frames than a WAL needs to be checkpointed)
    monkeypatch.setattr(sqlite_checkpoint, "MIN_FRAMES", 100)
    store = await SqliteStore.open(tmp_path / "s.db")
    wal = tmp_path / "s.db-wal"
    try:
        await _write(store, 0, 200)
        assert await _checkpointed(store)
        await _write(store, 200, 1)  # starts the WAL over from its beginning
        first = wal.stat().st_size
        # When more batches of the same size follow, each checkpointed
        for batch in range(1, 5):
            await _write(store, batch * 1000, 200)
            assert await _checkpointed(store)
        # Then the WAL file did not grow: its frames were reused, not appended
        assert wal.stat().st_size <= 2 * first
        assert await store.activations.count(ActivationQuery("guest", limit=None)) == 1001
    finally:
        await store.close()


async def test_a_quiet_store_does_not_restart_its_wal_on_the_next_commit(
    tmp_path: Path,
) -> None:
    # Given a store whose WAL holds a few commits (fewer frames than MIN_FRAMES), quiet
    # for two of the checkpointer's intervals
    store = await SqliteStore.open(tmp_path / "s.db")
    wal = tmp_path / "s.db-wal"
    checkpointer = _checkpointer(store)
    try:
        await _write(store, 0, 5)
        frames = checkpointer.wal_frames()
        assert frames is not None and 0 < frames[0] < MIN_FRAMES
        salts = wal.read_bytes()[16:24]
        after = checkpointer.looked + 2
        assert await until(lambda: checkpointer.looked >= after)
        # When the next commit comes
        await _write(store, 5, 1)
        # Then it appended to the WAL: no restart (new salts, the header written and
        # fsynced by that commit, on the event loop), nothing copied yet
        assert wal.read_bytes()[16:24] == salts
        grown = checkpointer.wal_frames()
        assert grown is not None and grown[0] > frames[0] and grown[1] == 0
        assert await store.activations.count(ActivationQuery("guest", limit=None)) == 6
    finally:
        await store.close()


async def test_close_stops_the_thread_and_keeps_every_record(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    checkpointer = _checkpointer(store)
    await _write(store, 0, 50)
    await store.close()
    assert not checkpointer.running
    reopened = await SqliteStore.open(tmp_path / "s.db")
    try:
        assert await reopened.activations.count(ActivationQuery("guest", limit=None)) == 50
    finally:
        await reopened.close()


async def test_an_in_memory_store_has_no_checkpointer() -> None:
    store = await SqliteStore.open(":memory:")
    try:
        assert store._db.checkpointer is None
    finally:
        await store.close()


async def test_a_store_checkpoints_at_most_once_a_second_by_default(tmp_path: Path) -> None:
    # Each checkpoint costs the server a wake-up, the GIL twice and two fsyncs beside the
    # event loop, whatever it copies; and the pages it copies are mostly the same few, so
    # fewer checkpoints copy less (bench/README.md, "request_breakdown.py").
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        assert _checkpointer(store)._interval_s >= 1.0
    finally:
        await store.close()


async def test_a_steady_stream_of_writes_keeps_the_wal_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store whose WAL is caught up past 300 frames and cut back to 1 MiB
    monkeypatch.setattr(sqlite_checkpoint, "CATCH_UP_FRAMES", 300)
    monkeypatch.setattr(sqlite_checkpoint, "WAL_LIMIT_BYTES", 1 << 20)
    store = await SqliteStore.open(tmp_path / "s.db")
    wal = tmp_path / "s.db-wal"
    try:
        # When writes follow each other without a pause (a commit never waits for a
        # checkpoint: without the catch-up the WAL grows by every commit's frames,
        # ~100 MB here)
        largest = 0
        for first in range(0, 6000, 500):
            await _write(store, first, 500)
            largest = max(largest, wal.stat().st_size)
        # Then the WAL was started over along the way and stayed small
        assert _checkpointer(store).catch_ups >= 1
        assert largest < 48 << 20  # ~130 MB without the catch-up, ~13 MB with it
        assert await store.activations.count(ActivationQuery("guest", limit=None)) == 6000
    finally:
        await store.close()


async def test_a_caught_up_wal_keeps_its_file_when_it_starts_over_by_default(
    tmp_path: Path,
) -> None:
    # The commit that starts the WAL over truncates a file longer than
    # journal_size_limit, on the event loop: the freed tail is discarded in the call on
    # a discard mount, and the next frames allocate it again (an append that allocates
    # can wait for the inode while a checkpoint's fsync writes the WAL back; README, "The
    # slow 1 % on a quiet machine"). Given a store opened with the defaults
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        # When its connection's limit is read
        with store._db.autocommit() as c:
            limit = int(c.execute("PRAGMA journal_size_limit").fetchone()[0])
            page = int(c.execute("PRAGMA page_size").fetchone()[0])
        # Then a WAL caught up at the threshold, plus what one request at a time commits
        # during one more interval (~4000 frames a second), is not cut back
        frames = sqlite_checkpoint.CATCH_UP_FRAMES + 4000 * sqlite_checkpoint.INTERVAL_S
        assert limit >= 32 + frames * (24 + page)
    finally:
        await store.close()


async def test_writes_held_for_a_catch_up_commit_when_it_ends(tmp_path: Path) -> None:
    # Given a store whose writes the checkpoint thread holds
    store = await SqliteStore.open(tmp_path / "s.db")
    hold = _checkpointer(store).hold
    try:
        await _write(store, 0, 1)  # the group commit registers with the hold
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, hold.hold, 5.0)
        # When two records are written meanwhile
        writes = [asyncio.ensure_future(store.activations.put(_record(i))) for i in (1, 2)]
        await asyncio.sleep(0.02)
        # Then they wait, uncommitted (another connection does not see them)
        assert not any(w.done() for w in writes)
        with sqlite3.connect(tmp_path / "s.db") as other:
            assert other.execute("SELECT count(*) FROM activations").fetchone()[0] == 1
        # And once the hold ends they are committed, in one batch
        hold.release()
        await asyncio.wait_for(asyncio.gather(*writes), 5.0)
        with sqlite3.connect(tmp_path / "s.db") as other:
            assert other.execute("SELECT count(*) FROM activations").fetchone()[0] == 3
    finally:
        await store.close()


async def test_a_hold_ends_by_itself_and_close_commits_held_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a hold the thread never lets go of
    monkeypatch.setattr(sqlite_writehold, "HOLD_MAX_S", 0.2)
    store = await SqliteStore.open(tmp_path / "s.db")
    hold = _checkpointer(store).hold
    await _write(store, 0, 1)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, hold.hold, 5.0)
    # Then a write made during it still returns (after HOLD_MAX_S)
    await asyncio.wait_for(store.activations.put(_record(1)), 5.0)
    assert not hold.held
    # And a write queued during a second hold is committed by the store's close
    assert await loop.run_in_executor(None, hold.hold, 5.0)
    pending = asyncio.ensure_future(store.activations.put(_record(2)))
    await asyncio.sleep(0.01)
    await store.close()
    await asyncio.wait_for(pending, 5.0)
    with sqlite3.connect(tmp_path / "s.db") as other:
        assert other.execute("SELECT count(*) FROM activations").fetchone()[0] == 3
