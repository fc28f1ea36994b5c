"""Group commit of activation writes in PostgreSQL: the writes that arrive while a batch
is being committed are committed together next, in one transaction sent in one round
trip (psycopg's pipeline mode).

Why: a cluster invoker writes twice per activation (the started mark, then the final
record), each an autocommit statement of its own — a pool checkout, a round trip that
wakes a backend, a transaction and its commit record. Under load most of that is per
statement, not per row. Last session's group commit batched the writes of one event
loop iteration and measured no gain: under load they rarely arrive in the same
iteration. This one waits for the batch in flight instead (one batch at a time per
process), so the batch grows with the load: at one activation at a time nothing waits
and a write is the single statement it was; with many, one commit carries many.

Guarantees (those of :class:`~squall.store.postgres_activations.PostgresActivationStore`
are unchanged):

- A write returns only after the transaction that holds it committed (the server's
  ``synchronous_commit`` applies as before); its answer (``rowcount == 1``) is its own
  statement's, evaluated under the row's lock inside the transaction.
- Rows are written in activation id order, so two processes' batches lock their rows in
  the same order (no deadlock between them; a deadlock with anything else is refused by
  the server, which rolls the batch back — see below).
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
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import PoolClosed, PoolTimeout

from squall.errors import ProviderError
from squall.store.postgres_schema import PgDatabase

log = logging.getLogger(__name__)

Conn = AsyncConnection[Any]

#: Writes committed in one transaction at most.
MAX_BATCH = 64


@dataclass
class _Write:
    statement: str
    row: tuple[Any, ...]
    answering: bool
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


class WriteBatcher:
    """Commits activation writes in batches (see the module docstring)."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._queue: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        #: Transactions that committed writes (a batch, or a write alone), and the writes
        #: they held: their ratio is the batch size achieved.
        self.commits = 0
        self.written = 0

    async def write(self, statement: str, row: tuple[Any, ...], *, answering: bool) -> bool:
        """Run ``statement`` with ``row`` (an activation write whose first parameter is
        the activation id) once committed; True when it wrote the row."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(statement, row, answering, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="pg-group-commit")
        # Awaited as it is (a shield costs a loop iteration per write): a caller
        # cancelled meanwhile cancels only its future, which the flusher then skips.
        return await done

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit(batch)
        except BaseException:
            # Cancelled (the store closes): the writes still queued get an answer too.
            rest, self._queue = self._queue, []
            for write in rest:
                _settle(write, error=ProviderError("store is closed"))
            raise
        finally:
            self._flusher = None

    async def close(self) -> None:
        """Stop the flusher; every write not committed yet fails with ``ProviderError``
        (a write that arrives later fails as the closed store's statements do)."""
        flusher = self._flusher
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher

    async def _commit(self, batch: list[_Write]) -> None:
        if len(batch) == 1:
            await self._alone(batch[0])
            return
        ordered = sorted(batch, key=lambda w: w.order)

        async def work(conn: Conn) -> list[bool]:
            async with conn.pipeline(), conn.transaction():
                cursors = [await conn.execute(w.statement, w.row) for w in ordered]
            return [cursor.rowcount == 1 for cursor in cursors]

        try:
            answers = await self._db.run(work, idempotent=False)
        except ProviderError as error:
            if _unsent(error):
                # Nothing was sent: every write fails now, as it would have alone (one
                # by one, each would wait the pool's timeout again).
                for write in ordered:
                    _settle(write, error=error)
                return
            if _ambiguous(error):
                # The connection broke: it may have committed. An answering write fails
                # (its answer would change once committed); the idempotent ones are sent
                # again, together, once (as ``run`` retries a single idempotent write).
                again = [w for w in ordered if not w.answering]
                for write in ordered:
                    if write.answering:
                        _settle(write, error=error)
                if again:
                    await self._again(again)
                return
            log.warning("a batch of %d activation writes failed (%s); writing them one by one",
                        len(batch), error.message)  # fmt: skip
            for write in ordered:
                await self._alone(write)
            return
        except BaseException:  # cancelled (closing): nobody gets an answer
            for write in ordered:
                _settle(write, error=ProviderError("store is closed"))
            raise
        self.commits += 1
        self.written += len(ordered)
        for write, answer in zip(ordered, answers, strict=True):
            _settle(write, answer=answer)

    async def _again(self, writes: list[_Write]) -> None:
        """Idempotent writes of a batch whose connection broke, sent once more as one
        batch; if that fails too, each gets the error."""

        async def work(conn: Conn) -> list[bool]:
            async with conn.pipeline(), conn.transaction():
                cursors = [await conn.execute(w.statement, w.row) for w in writes]
            return [cursor.rowcount == 1 for cursor in cursors]

        try:
            answers = await self._db.run(work, idempotent=True)
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
        async def work(conn: Conn) -> bool:
            cursor = await conn.execute(write.statement, write.row)
            return cursor.rowcount == 1

        try:
            # An answering write is not repeated after an ambiguous failure (its answer
            # would change once its first attempt committed).
            answer = await self._db.run(work, idempotent=not write.answering)
        except BaseException as error:
            _settle(write, error=error)
            if not isinstance(error, Exception):
                raise
            return
        self.commits += 1
        self.written += 1
        _settle(write, answer=answer)


def _settle(write: _Write, *, answer: bool = False, error: BaseException | None = None) -> None:
    if write.done.done():
        return
    if error is None:
        write.done.set_result(answer)
    elif isinstance(error, Exception):
        write.done.set_exception(error)
    else:
        write.done.cancel()
