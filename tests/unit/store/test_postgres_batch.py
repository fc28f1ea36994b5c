"""The PostgreSQL group commit of activation writes (``store/postgres_batch.py``): writes
that arrive together share a transaction, each keeps its own answer, and a write the
server refuses fails alone."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pgsupport import PG_DSN

from squall.entities.activation import (
    Activation,
    ActivationResponse,
    final_record,
    pending_record,
)
from squall.errors import ProviderError
from squall.store import postgres_held
from squall.store.postgres import PostgresStore
from squall.store.postgres_activations import PostgresActivationStore

pytestmark = pytest.mark.anyio

NS = "guest"


def pending(activation_id: str) -> Activation:
    return pending_record(
        namespace=NS,
        subject=NS,
        activation_id=activation_id,
        name="noop",
        path=f"{NS}/noop",
        version="0.0.1",
        accepted_ms=1_000,
    )


def final(activation_id: str) -> Activation:
    return final_record(
        namespace=NS,
        name="noop",
        subject=NS,
        activation_id=activation_id,
        start=1_000,
        end=1_002,
        response=ActivationResponse.ok({"done": True}),
        annotations=[{"key": "path", "value": f"{NS}/noop"}],
    )


def batcher_of(store: PostgresStore) -> PostgresActivationStore:
    activations = store.activations
    assert isinstance(activations, PostgresActivationStore)
    return activations


async def test_concurrent_writes_share_transactions_and_keep_their_answers(schema: str) -> None:
    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        activations = batcher_of(store)
        ids = [uuid.uuid4().hex for _ in range(40)]
        # When 40 activations are started at once, and then started again at once
        first = await asyncio.gather(*(activations.start(pending(i)) for i in ids))
        again = await asyncio.gather(*(activations.start(pending(i)) for i in reversed(ids)))
        # Then each first start won and each second lost, row by row
        assert first == [True] * 40
        assert again == [False] * 40
        # And they were committed in fewer transactions than writes
        counts = activations._batcher
        assert counts.written == 80
        assert counts.commits < counts.written
        # When the final records are put at once / Then each is stored, final
        await asyncio.gather(*(activations.put(final(i)) for i in ids))
        for i in ids:
            assert not (await activations.get(NS, i)).pending
        # And a start after the end loses
        assert await activations.start(pending(ids[0])) is False


async def test_two_writes_of_one_activation_in_one_batch_apply_in_order(schema: str) -> None:
    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        activations = batcher_of(store)
        activation_id = uuid.uuid4().hex
        # When a start and a second start of the same id are written together
        answers = await asyncio.gather(
            activations.start(pending(activation_id)), activations.start(pending(activation_id))
        )
        # Then one of them won
        assert sorted(answers) == [False, True]


async def test_writes_of_every_kind_in_one_batch_keep_their_own_answers(schema: str) -> None:
    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        activations = batcher_of(store)
        queued, ended, waiting, new_pending, new_final = (uuid.uuid4().hex for _ in range(5))
        # Given a queued record, a final one and another queued one
        await activations.put_pending(pending(queued), b"message")
        await activations.put(final(ended))
        await activations.put_pending(pending(waiting))
        counts = activations._batcher
        commits, written = counts.commits, counts.written
        # When writes of every kind arrive together, one id twice
        answers = await asyncio.gather(
            activations.start(pending(queued)),
            activations.start(pending(ended)),
            activations.put_unless_final(final(waiting)),
            activations.put_unless_final(final(ended)),
            activations.put_pending(pending(new_pending)),
            activations.put(final(new_final)),
        )
        # Then each has its own row's answer: the queued one started, the final one did
        # not start and was not replaced, the pending one was replaced
        assert list(answers) == [True, False, True, False, None, None]
        # And they took two statements: the batch, then the id written twice, after it
        assert (counts.commits - commits, counts.written - written) == (2, 6)
        # And the rows are as each write left them
        unfinished = {u.record.activation_id: u for u in await activations.unfinished("", 10)}
        assert set(unfinished) == {queued, new_pending}
        assert unfinished[queued].started and unfinished[queued].message is None
        assert not unfinished[new_pending].started
        for activation_id in (ended, waiting, new_final):
            assert not (await activations.get(NS, activation_id)).pending


@pytest.mark.parametrize("copies", [1, 2], ids=["values", "arrays"])
async def test_records_written_in_one_batch_read_back_as_written(schema: str, copies: int) -> None:
    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        activations = batcher_of(store)
        # (Four final records are sent as a VALUES list, eight as arrays.)
        results: list[dict[str, object]] = [
            {"nul": "a\u0000b"},
            {"text": "é ü € 😀", "quotes": '"\\'},
            {"big": "x" * 100_000},
            {},
        ] * copies
        records = []
        for result in results:
            record = final(uuid.uuid4().hex)
            record.response = ActivationResponse.ok(result)
            records.append(record)
        queued = pending(uuid.uuid4().hex)
        # When final records of every shape and a pending one with its message and owner
        # are written together (one batch)
        await asyncio.gather(
            *(activations.put(r) for r in records),
            activations.put_pending(queued, b"\x00\xffmessage", "controller0/abc"),
        )
        assert activations._batcher.commits == 1
        # Then each reads back as it was written
        for record in records:
            assert await activations.get(NS, record.activation_id) == record
        (unfinished,) = await activations.unfinished("", 10)
        assert unfinished.record == queued
        assert (unfinished.message, unfinished.owner) == (b"\x00\xffmessage", "controller0/abc")


async def test_a_write_the_server_refuses_fails_alone(schema: str) -> None:
    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        activations = batcher_of(store)
        good = [uuid.uuid4().hex for _ in range(5)]
        # Given a record the server refuses (a NUL character in a text column)
        bad = final(uuid.uuid4().hex)
        bad.name = "no\x00pe"
        # When it is written together with good ones
        results = await asyncio.gather(
            *(activations.start(pending(i)) for i in good[:3]),
            activations.put(bad),
            *(activations.start(pending(i)) for i in good[3:]),
            return_exceptions=True,
        )
        # Then only it failed; the others are stored, each with its own answer
        assert [type(r) for r in results] == [bool] * 3 + [ProviderError] + [bool] * 2
        assert [r for r in results if isinstance(r, bool)] == [True] * 5
        for i in good:
            assert (await activations.get(NS, i)).pending


async def test_a_batch_that_gets_no_connection_fails_every_write_after_one_wait(
    schema: str,
) -> None:
    async with await PostgresStore.open(PG_DSN, schema=schema, max_size=1, timeout=0.5) as store:
        activations = batcher_of(store)
        pool = store.database.pool
        ids = [uuid.uuid4().hex for _ in range(6)]
        # Given the pool's only connection held elsewhere
        async with pool.connection():
            pool.pop_stats()
            # When six writes arrive together (one batch)
            results = await asyncio.gather(
                *(activations.start(pending(i)) for i in ids[:3]),
                *(activations.put(final(i)) for i in ids[3:]),
                return_exceptions=True,
            )
            stats = pool.pop_stats()
        # Then every write failed with the pool's words after one wait for a connection:
        # the batch was not tried again write by write (each would wait again)
        assert all(isinstance(r, ProviderError) for r in results)
        messages = [r.message for r in results if isinstance(r, ProviderError)]
        assert all("no connection within" in m for m in messages)
        assert stats.get("requests_num") == 1
        assert activations._batcher.commits == 0


async def test_closing_answers_the_writes_still_waiting(schema: str) -> None:
    store = await PostgresStore.open(PG_DSN, schema=schema, max_size=1, timeout=30)
    activations = batcher_of(store)
    pool = store.database.pool
    try:
        # Given writes waiting for the group commit (the only connection held elsewhere)
        async with pool.connection():
            writes = [
                asyncio.ensure_future(activations.start(pending(uuid.uuid4().hex)))
                for _ in range(4)
            ]
            await asyncio.sleep(0.05)
            assert not any(w.done() for w in writes)
            # When the activation store closes
            await activations.close()
            # Then each of them got an answer: the store is closed
            results = await asyncio.gather(*writes, return_exceptions=True)
        assert all(isinstance(r, ProviderError) for r in results), results
    finally:
        await store.close()


async def test_writes_that_keep_coming_take_one_connection_from_the_pool(schema: str) -> None:
    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        activations = batcher_of(store)
        pool = store.database.pool
        ids = [uuid.uuid4().hex for _ in range(150)]
        pool.pop_stats()
        # When more writes arrive at once than one batch holds (three batches in a row)
        answers = await asyncio.gather(*(activations.start(pending(i)) for i in ids))
        stats = pool.pop_stats()
        # Then each kept its answer, in several commits, on one connection of the pool
        assert answers == [True] * 150
        assert activations._batcher.commits >= 3
        assert stats.get("requests_num") == 1
        # And the connection went back to the pool once the writes stopped
        assert pool.get_stats()["pool_available"] == pool.get_stats()["pool_size"]


async def test_a_caller_answered_runs_before_the_connection_goes_back(schema: str) -> None:
    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        activations = batcher_of(store)
        pool = store.database.pool
        activation_id = uuid.uuid4().hex
        pool.pop_stats()
        # When one activation is marked started, alone
        assert await activations.start(pending(activation_id))
        # Then its caller runs on while the flusher still holds the connection (the
        # pool's return is not on the answer's path)
        stats = pool.get_stats()
        assert stats["pool_available"] == stats["pool_size"] - 1
        # And a write it makes at once goes on that connection: one checkout for both
        await activations.put(final(activation_id))
        assert pool.pop_stats().get("requests_num") == 1
        # And the connection goes back once the flusher finds its queue still empty
        for _ in range(100):
            stats = pool.get_stats()
            if stats["pool_available"] == stats["pool_size"]:
                break
            await asyncio.sleep(0)  # a loop iteration: the flusher's next step
        assert stats["pool_available"] == stats["pool_size"]


async def test_a_connection_held_for_long_goes_back_to_the_pool_all_the_same(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a held connection returned after two calls (MAX_USES, 1000 by default)
    monkeypatch.setattr(postgres_held, "MAX_USES", 2)
    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        activations = batcher_of(store)
        pool = store.database.pool
        pool.pop_stats()
        # When writes keep coming for three batches and more
        ids = [uuid.uuid4().hex for _ in range(150)]
        answers = await asyncio.gather(*(activations.start(pending(i)) for i in ids))
        # Then the flusher took a connection from the pool again along the way
        assert answers == [True] * 150
        assert activations._batcher.commits >= 3
        assert pool.pop_stats().get("requests_num", 0) >= 2


async def test_a_batch_sends_its_columns_without_psycopg_scanning_them(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from psycopg.types.array import BaseListDumper

    scans = 0
    scan = BaseListDumper._find_list_element

    def counted(self: BaseListDumper, *args: object) -> object:
        nonlocal scans
        scans += 1
        return scan(self, *args)  # type: ignore[arg-type]

    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        activations = batcher_of(store)
        ids = [uuid.uuid4().hex for _ in range(10)]
        monkeypatch.setattr(BaseListDumper, "_find_list_element", counted)
        # When writes of two kinds are committed in one batch as arrays (five of each)
        await asyncio.gather(
            *(activations.start(pending(i)) for i in ids[:5]),
            *(activations.put(final(i)) for i in ids[5:]),
        )
        # Then psycopg never looked inside a column for its type (each is typed)
        assert activations._batcher.commits == 1
        assert scans == 0
        # And the rows read back as written
        stored = [await activations.get(NS, i) for i in ids]
        assert [r.pending for r in stored] == [True] * 5 + [False] * 5


async def test_a_small_batch_sends_its_rows_as_values_without_array_dumpers(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from psycopg.types.array import ListBinaryDumper

    dumped = 0
    dump = ListBinaryDumper.dump

    def counted(self: ListBinaryDumper, obj: list[object]) -> object:
        nonlocal dumped
        dumped += 1
        return dump(self, obj)

    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        activations = batcher_of(store)
        ids = [uuid.uuid4().hex for _ in range(8)]
        await activations.put_pending(pending(ids[0]), b"message")
        monkeypatch.setattr(ListBinaryDumper, "dump", counted)
        commits = activations._batcher.commits
        # When writes of two kinds are committed in one batch, four of each (the queued
        # one's start among them)
        answers = await asyncio.gather(
            *(activations.start(pending(i)) for i in ids[:4]),
            *(activations.put(final(i)) for i in ids[4:]),
        )
        # Then no column went as an array: psycopg dumped each value alone
        assert activations._batcher.commits == commits + 1
        assert dumped == 0
        # And each write has its own answer, and its row reads back as written
        assert list(answers) == [True] * 4 + [None] * 4
        stored = [await activations.get(NS, i) for i in ids]
        assert [r.pending for r in stored] == [True] * 4 + [False] * 4
        assert stored[4] == final(ids[4])
        (queued, *_) = [
            u for u in await activations.unfinished("", 10) if u.record.activation_id == ids[0]
        ]
        assert queued.started and queued.message is None
        # When one kind has five rows / Then the batch goes as arrays, as before
        more = [uuid.uuid4().hex for _ in range(5)]
        assert await asyncio.gather(*(activations.start(pending(i)) for i in more)) == [True] * 5
        assert dumped > 0
