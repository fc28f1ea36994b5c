"""Group commit of activation writes in PostgreSQL: the writes that arrive while a batch
is being committed are committed together next, as **one statement** (one round trip,
one transaction, one statement for the server to run).

Why: a cluster invoker writes twice per activation (the started mark, then the final
record), each an autocommit statement of its own — a pool checkout, a round trip that
wakes a backend, a transaction and its commit record. Under load most of that is per
statement, not per row. The batch waits for the batch in flight (one batch at a time per
process), so it grows with the load: at one activation at a time nothing waits and a
write is the single statement it was; with many, one commit carries many. The flusher
takes one pooled connection for as long as writes keep coming and returns it when its
queue is still empty one loop iteration after its last commit (``PgDatabase.hold``): a
batch after the first skips the pool's checkout and return, and the callers it answered
run before the return.

How a batch is one statement: every activation write is ``INSERT INTO activations …
ON CONFLICT (activation_id) <what to do with a stored row>`` (a :class:`WriteKind`). A
batch groups its writes by kind; each kind present becomes one data-modifying CTE
``INSERT … SELECT * FROM unnest(<one array per column>) ON CONFLICT … RETURNING
activation_id``, and the statement returns the ids each CTE wrote. A write's answer (was
its row written: inserted, or updated because the stored one matched its condition) is
whether its id is among its kind's returned ids — what ``rowcount == 1`` said of the
statement alone. The text depends only on the kinds present, so psycopg prepares it
after a few uses. The arrays go in binary (``%b``): psycopg's text form of an array
escapes every element with a regular expression, which cost as much as the rest of the
batch's Python side. (The previous batch — ``BEGIN``, one ``INSERT`` per write, ``COMMIT``
in psycopg's pipeline mode — spent most of the invoker's store CPU in the pipeline's
Python machinery, and made the server run every statement and the transaction's
commands one by one.)

A small batch (at most :data:`VALUES_ROWS` rows of each kind: most batches under load)
sends its rows as ``INSERT … VALUES ($1, …), (…)`` instead, through a raw cursor (``$n``
placeholders, so psycopg parses no query text: its parse cache skips statements of more
than 50 parameters): each value is dumped by psycopg's C dumpers, as a write alone's
are, where each array cost a Python dumper (``ListBinaryDumper``: a dozen Python calls
per array and per element, ~40 µs for a batch of two kinds, three rows each, against
~8 µs). The values are the same ones a write alone sends, coerced by the server to the
columns' types the same way. The text then depends on the kinds and each one's number
of rows — a few dozen texts, each prepared by psycopg after a few uses.

Guarantees (those of :class:`~squall.store.postgres_activations.PostgresActivationStore`
are unchanged):

- A write returns only after the statement that holds it committed (the server's
  ``synchronous_commit`` applies as before); its answer is its own row's, evaluated by
  the server under the row's lock as it writes.
- One activation id appears at most once in a batch (an ``ON CONFLICT DO UPDATE`` may
  not touch a row twice in one statement): a second write of the same id waits for the
  next batch, so writes of one id apply in the order they were made.
- Each kind's rows are written in activation id order. Across the kinds of one batch the
  server picks the order; two processes' batches that wrote the same rows in opposite
  orders would deadlock, which the server refuses (one batch rolled back, see below) —
  in practice one activation's writes come from one process at a time.
- A batch the server refused (any error it reports: a statement it would not run, a
  deadlock, a serialization failure), or one psycopg would not send (a value PostgreSQL
  cannot hold), was rolled back as a whole: each of its writes is
  then run again alone, so one bad write fails only its own caller. A batch that got no
  connection (the pool's timeout, a closed store) was never sent: every write in it
  fails with that ``ProviderError`` at once, after one wait, not one per write. A batch
  whose connection broke may or may not have committed: its idempotent writes are sent
  again together, once; an *answering* one (``start``, ``put_unless_final``, whose
  answer would change once committed) is not, and fails with ``ProviderError`` as a
  single statement does.
- Closing (:meth:`WriteBatcher.close`) answers every write not committed yet with
  ``ProviderError("store is closed")``; none is left waiting.

Concurrency: everything runs on the event loop's thread; the flusher is one task at a
time, started by the first write that finds none running. A caller cancelled while it
waits does not cancel its write (it is in the batch already); only its answer is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncRawCursor
from psycopg_pool import PoolClosed, PoolTimeout

from squall.errors import ProviderError
from squall.store.postgres_batch_sql import (
    COLUMN_ARRAYS,
    WriteKind,
    batch_statement,
    values_statement,
)
from squall.store.postgres_database import PgDatabase
from squall.store.postgres_held import HeldConnection

__all__ = ["MAX_BATCH", "VALUES_ROWS", "WriteBatcher", "WriteKind"]

log = logging.getLogger(__name__)

Conn = AsyncConnection[Any]

#: Writes committed in one statement at most.
MAX_BATCH = 64
#: Rows of each kind a batch sends as a VALUES list at most (more: arrays).
VALUES_ROWS = 4


@dataclass
class _Write:
    kind: WriteKind
    row: tuple[Any, ...]
    done: asyncio.Future[bool] = field(repr=False)

    @property
    def order(self) -> str:
        return str(self.row[0])  # the activation id: locks taken in id order


def _unsent(error: ProviderError) -> bool:
    """Whether a failed batch was never sent: no connection (the pool timed out or is
    closed) or the store is closed."""
    return error.__cause__ is None or isinstance(error.__cause__, (PoolTimeout, PoolClosed))


def _ambiguous(error: ProviderError) -> bool:
    """Whether a failed batch may have committed: its connection broke (an operational
    error without a server's SQLSTATE). An error the server reported, or one psycopg
    raised before sending (a value it cannot send), means it did not."""
    cause = error.__cause__
    return isinstance(cause, psycopg.OperationalError) and cause.sqlstate is None


def _take(queue: list[_Write]) -> tuple[list[_Write], list[_Write]]:
    """The next batch out of ``queue`` (at most ``MAX_BATCH`` writes, each id once) and
    what stays queued, in order: a later write of an id already taken waits, so the
    writes of one id are committed in the order they were made."""
    if len(queue) == 1:
        return queue, []
    batch: list[_Write] = []
    rest: list[_Write] = []
    ids: set[str] = set()
    for write in queue:
        if len(batch) < MAX_BATCH and write.order not in ids:
            ids.add(write.order)
            batch.append(write)
        else:
            rest.append(write)
    return batch, rest


class WriteBatcher:
    """Commits activation writes in batches (see the module docstring)."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._queue: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        #: Batch statements by the kinds they write and, for a VALUES list, each one's
        #: number of rows (their text is built once).
        self._statements: dict[tuple[tuple[WriteKind, ...], tuple[int, ...] | None], str] = {}
        #: The flusher's connection (taken at its first statement, kept while it runs).
        self._held: HeldConnection | None = None
        #: Statements that committed writes (a batch, or a write alone), and the writes
        #: they held: their ratio is the batch size achieved.
        self.commits = 0
        self.written = 0

    async def write(self, kind: WriteKind, row: tuple[Any, ...]) -> bool:
        """Write ``row`` (its ``COLUMNS``) as ``kind`` once committed; True when it wrote
        the row."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(kind, row, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="pg-group-commit")
        # Awaited as it is (a shield costs a loop iteration per write): a caller
        # cancelled meanwhile cancels only its future, which the flusher then skips.
        return await done

    async def _flush(self) -> None:
        # One connection for as long as writes keep coming (see the module docstring).
        self._held = held = self._db.hold()
        try:
            while self._queue:
                while self._queue:
                    batch, self._queue = _take(self._queue)
                    await self._commit(batch)
                # One loop iteration before the connection goes back: the callers just
                # answered run first (their wake-ups were queued before this step), so
                # the pool's return is off their answer's path, and a write one of them
                # makes at once (a mark, then its next step's) still finds the flusher
                # and its connection.
                await asyncio.sleep(0)
        except BaseException:
            # Cancelled (the store closes): the writes still queued get an answer too.
            rest, self._queue = self._queue, []
            for write in rest:
                _settle(write, error=ProviderError("store is closed"))
            raise
        finally:
            # No flusher from here: a write that arrives while the connection goes back
            # starts the next one (with a connection of its own).
            self._flusher = None
            await held.release()

    async def close(self) -> None:
        """Stop the flusher; every write not committed yet fails with ``ProviderError``
        (a write that arrives later fails as the closed store's statements do)."""
        flusher = self._flusher
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher

    def _statement(
        self, writes: list[_Write]
    ) -> tuple[str, tuple[WriteKind, ...], list[Any], bool]:
        """The batch statement for ``writes`` (distinct ids), its kinds in the order it
        writes them (a fixed order, so a set of kinds is always the same text), its
        parameters — per kind, its rows in id order: as VALUES when every kind has at most
        ``VALUES_ROWS`` (each row's values; then True: for a raw cursor), else as arrays,
        column by column."""
        by_kind: dict[WriteKind, list[_Write]] = {}
        for write in writes:
            by_kind.setdefault(write.kind, []).append(write)
        kinds = tuple(sorted(by_kind, key=lambda k: k.on_conflict))
        rows_of = [sorted((w.row for w in by_kind[k]), key=lambda row: str(row[0])) for k in kinds]
        counts = tuple(len(rows) for rows in rows_of)
        values = max(counts) <= VALUES_ROWS
        key = (kinds, counts if values else None)
        statement = self._statements.get(key)
        if statement is None:
            built = values_statement(kinds, counts) if values else batch_statement(kinds)
            statement = self._statements[key] = built
        params: list[Any] = []
        for rows in rows_of:
            if values:
                for row in rows:
                    params.extend(row)
            else:
                columns = zip(COLUMN_ARRAYS, zip(*rows, strict=True), strict=True)
                params.extend(array(column) for array, column in columns)
        return statement, kinds, params, values

    async def _run_batch(self, writes: list[_Write], *, idempotent: bool) -> list[bool]:
        """Commit ``writes`` in one statement; each one's answer, in the same order."""
        statement, kinds, params, raw = self._statement(writes)
        index = {kind: i for i, kind in enumerate(kinds)}

        async def work(conn: Conn) -> set[tuple[int, str]]:
            if raw:
                cursor: Any = AsyncRawCursor(conn)
                await cursor.execute(statement, params)
            else:
                cursor = await conn.execute(statement, params)
            return {(int(i), str(activation_id)) for i, activation_id in await cursor.fetchall()}

        written = await self._db.run(work, idempotent=idempotent, held=self._held)
        return [(index[w.kind], w.order) in written for w in writes]

    async def _commit(self, batch: list[_Write]) -> None:
        if len(batch) == 1:
            await self._alone(batch[0])
            return
        try:
            answers = await self._run_batch(batch, idempotent=False)
        except ProviderError as error:
            if _unsent(error):
                # Nothing was sent: every write fails now, as it would have alone (one
                # by one, each would wait the pool's timeout again).
                for write in batch:
                    _settle(write, error=error)
                return
            if _ambiguous(error):
                # The connection broke: it may have committed. An answering write fails
                # (its answer would change once committed); the idempotent ones are sent
                # again, together, once (as ``run`` retries a single idempotent write).
                again = [w for w in batch if not w.kind.answering]
                for write in batch:
                    if write.kind.answering:
                        _settle(write, error=error)
                if again:
                    await self._again(again)
                return
            log.warning("a batch of %d activation writes failed (%s); writing them one by one",
                        len(batch), error.message)  # fmt: skip
            for write in sorted(batch, key=lambda w: w.order):
                await self._alone(write)
            return
        except BaseException:  # cancelled (closing): nobody gets an answer
            for write in batch:
                _settle(write, error=ProviderError("store is closed"))
            raise
        self.commits += 1
        self.written += len(batch)
        for write, answer in zip(batch, answers, strict=True):
            _settle(write, answer=answer)

    async def _again(self, writes: list[_Write]) -> None:
        """Idempotent writes of a batch whose connection broke, sent once more as one
        batch; if that fails too, each gets the error."""

        try:
            if len(writes) == 1:
                answers = [
                    await self._db.run(_alone_work(writes[0]), idempotent=True, held=self._held)
                ]
            else:
                answers = await self._run_batch(writes, idempotent=True)
        except ProviderError as error:
            for write in writes:
                _settle(write, error=error)
            return
        except BaseException:
            for write in writes:
                _settle(write, error=ProviderError("store is closed"))
            raise
        self.commits += 1
        self.written += len(writes)
        for write, answer in zip(writes, answers, strict=True):
            _settle(write, answer=answer)

    async def _alone(self, write: _Write) -> None:
        try:
            # An answering write is not repeated after an ambiguous failure (its answer
            # would change once its first attempt committed).
            answer = await self._db.run(
                _alone_work(write), idempotent=not write.kind.answering, held=self._held
            )
        except BaseException as error:
            _settle(write, error=error)
            if not isinstance(error, Exception):
                raise
            return
        self.commits += 1
        self.written += 1
        _settle(write, answer=answer)


def _alone_work(write: _Write) -> Callable[[Conn], Awaitable[bool]]:
    async def work(conn: Conn) -> bool:
        cursor = await conn.execute(write.kind.alone, write.row)
        return cursor.rowcount == 1

    return work


def _settle(write: _Write, *, answer: bool = False, error: BaseException | None = None) -> None:
    if write.done.done():
        return
    if error is None:
        write.done.set_result(answer)
    elif isinstance(error, Exception):
        write.done.set_exception(error)
    else:
        write.done.cancel()
