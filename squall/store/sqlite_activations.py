"""Activation records in SQLite, written with group commit.

A write is committed before it returns: a ``put`` returns only after its record is
committed, so a reader that got an activation id from a completion always finds the
record; ``flush`` at close writes what is pending, so nothing is lost on a clean
shutdown. How writes share commits:

- *Alone, at once.* The first write of a loop iteration after quiet ones (whose
  writes had no company: :data:`QUIET_FLUSHES` flushes in a row) commits in its own
  call, without awaiting, and schedules a flush for the next iteration (``call_soon``)
  to commit whatever else this iteration writes. A lone writer (a warm invoke at c=1:
  the started mark, the final record) so costs no loop iteration: the group commit as
  it was — the flush one iteration later, then the writer's future another — cost two
  per write, four per invoke.
- *Together, under load.* Once an iteration's flush found company (another write after
  the one committed at once, or two or more in a batch), every write of the next
  iterations joins the batch: it queues its row, the flush commits the batch in one
  transaction and wakes each writer through a future of its own. It goes back to
  committing at once after :data:`QUIET_FLUSHES` flushes in a row had at most the one
  write each. Under load the commit cost (WAL append, locks) is so shared by the
  batch, roughly halving the cost per record, as before.

Nothing else changed: a write committed at once is the one write of its transaction,
as a batch of one was; it precedes the batch of its iteration, which is an order its
writers could have had anyway (none of them has returned, so they are concurrent).
Writes queued in one batch are concurrent, so any order of them is a valid outcome;
the batch applies replacing puts first, then ``put_unless_final`` writes one by one
(each needs its own answer), then pending ones, then ``start`` claims one by one. Each
statement keeps the guarantees in any order of the callers (a final record is never
replaced by an error record nor hidden by a pending one, and never started); the order
makes a ``start`` claim a ``put_pending`` of the same batch.

The started point (``start``) is an ordinary write, so marking an activation started
before it runs shares the commit of the other writes of its loop iteration under load
instead of paying one of its own; it returns once committed, as ``put`` does.

*Held.* While the checkpoint thread catches up a long WAL (``sqlite_writehold.py``), every
write queues as in a batch, and the batch commits when the hold ends (a few
milliseconds; at most ``HOLD_MAX_S``): that commit starts the WAL over.

A writer loop that awaits nothing else (recovery's, a test's) still yields: with a flush
scheduled, its next write joins the batch and awaits it.

``prune`` deletes in batches of :data:`PRUNE_BATCH` rows, yielding to the event loop
between batches: the connection is shared, so one huge DELETE would stall every request.

Pages per write: the indexes of listings, counts, the dashboard's figures and retention
hold final records only (partial indexes, ``sqlite_schema``'s migration 9), so a pending
record — the ``start`` mark of a blocking invoke, a queued non-blocking one — is written
into three b-trees (the table, its primary key, ``activations_unfinished``) and enters
the two others once, when its final record replaces it. A commit appends one WAL frame
per b-tree page it changes: a warm blocking invoke's two commits write about 8 frames
instead of 16 (bench/README.md, "store_syscalls.py and store_cost.py"). Reads see every
record as before: each one is the union of the final records (by those indexes) and the
unfinished ones (few: what runs or waits now, by ``activations_unfinished``).
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
from collections.abc import Coroutine
from typing import Any

import msgspec

from squall.entities.activation import Activation
from squall.errors import NotFound, ProviderError
from squall.store.contracts import ActivationQuery, Unfinished
from squall.store.records import (
    STARTED,
    activation_filter,
    activation_key,
    dumps_record,
    loads_record,
    run_state,
)
from squall.store.sqlite_schema import Database, limit_offset
from squall.store.stats import ActivationStats, summarize

# ``owner`` is only ever written by an insert (put_pending's): a replace or a start
# keeps the stored one, and it is read only while the record is unfinished.
_INSERT = (
    "INSERT INTO activations (activation_id, namespace, name, start, body, state, message,"
    " owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT = (
    _INSERT + " ON CONFLICT (activation_id) DO UPDATE SET namespace = excluded.namespace,"
    " name = excluded.name, start = excluded.start, body = excluded.body,"
    " state = excluded.state, message = excluded.message"
)

# A pending record never replaces a stored one: the final record may have won the race.
_INSERT_IF_ABSENT = _INSERT + " ON CONFLICT (activation_id) DO NOTHING"

# A stored pending record has a state; one written by an older Squall (a process of a
# cluster not yet upgraded) may have none, so its body says it too.
_PENDING_BODY = "json_extract(activations.body, '$.response.status') = 'pending'"

# Replaces only a pending record; the WHERE is evaluated on the stored row, inside the
# one statement, so nothing can slip in between the check and the write.
_REPLACE_PENDING = _UPSERT + f" WHERE activations.state IS NOT NULL OR {_PENDING_BODY}"

# The started point: the record if none is stored, else the stored one marked started if
# it is queued (pending, not started); never a final or started one.
_START = (
    _INSERT + " ON CONFLICT (activation_id) DO UPDATE SET state = 'started', message = NULL"
    f" WHERE activations.state = 'queued' OR (activations.state IS NULL AND {_PENDING_BODY})"
)

PRUNE_BATCH = 5000

# Quiet flushes in a row (none found a write beside the first of its iteration) before a
# write commits at once again: under load an iteration with one write is often followed
# by busier ones, whose first write would then commit alone and the rest in a batch —
# two commits where one does. bench/group_commit_policy.py (seeded schedules, a real
# store): at c=10, 0.500 commits per write after 1 quiet flush, 0.444 after 2, 0.425
# after 4, 0.426 when every write joins a batch; at c=50 0.129-0.132 for all. At c=1
# every flush is quiet, so writes stay at once.
QUIET_FLUSHES = 4

# Final records are in the indexes of listings, counts and figures, which are partial
# (sqlite_schema's migration 9): a pending record is indexed by `activations_unfinished`
# only, so writing one, or marking it started, touches three b-trees instead of seven.
# Every read names one of the two conditions, so SQLite can use the partial indexes.
_FINAL = "state IS NULL"
_UNFINISHED = "state IS NOT NULL"

_PRUNE_FINAL = (
    "DELETE FROM activations WHERE rowid IN (SELECT rowid FROM activations"
    f" WHERE {_FINAL} AND namespace = ? AND start < ? LIMIT ?)"
)
_PRUNE_UNFINISHED = (
    "DELETE FROM activations WHERE rowid IN (SELECT rowid FROM activations"
    f" WHERE {_UNFINISHED} AND start < ? LIMIT ?)"
)
# The first namespace holding final records, and the one after ?: a seek each, in an
# index leading with the namespace.
_FIRST_NAMESPACE = f"SELECT namespace FROM activations WHERE {_FINAL} ORDER BY namespace LIMIT 1"
_NEXT_NAMESPACE = (
    f"SELECT namespace FROM activations WHERE {_FINAL} AND namespace > ? ORDER BY namespace LIMIT 1"
)

Row = tuple[str, str, str, int, str, str | None, bytes | None, str | None]


class _Write(msgspec.Struct):
    """One write: its statement, its row, for a write queued in a batch the future its
    writer awaits, and (set once committed) whether it changed a row. A Struct: its
    ``__init__`` is C (two writes per invoke). Never encoded."""

    statement: str
    row: Row
    committed: asyncio.Future[None] | None = None
    stored: bool = False


class SqliteActivationStore:
    """:class:`~squall.store.contracts.ActivationStore` over the ``activations`` table.

    Records with the same ``start`` are ordered by activation id, descending, so paging
    is stable. Concurrency: ``_pending``, ``_scheduled``, ``_at_once`` and ``_quiet`` are
    touched only on the event-loop thread, a write committed at once does not await, and
    ``flush`` runs between tasks, so no lock is needed.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: builtins.list[_Write] = []
        # A flush is scheduled (call_soon): this iteration's further writes join it.
        self._scheduled = False
        # This iteration's first write was committed at once (so a batch of one beside it
        # is company).
        self._at_once = False
        # Flushes in a row that found no company; from QUIET_FLUSHES on, the next first
        # write commits at once.
        self._quiet = QUIET_FLUSHES
        # The checkpoint thread's hold on these writes (a file database's), registered
        # with the loop of the first write: while held, writes queue (sqlite_writehold.py).
        checkpointer = db.checkpointer
        self._hold = checkpointer.hold if checkpointer is not None else None
        self._registered = False

    async def put(self, record: Activation) -> None:
        await self._write(_UPSERT, record, run_state(record))

    async def put_pending(
        self, record: Activation, message: bytes | None = None, owner: str | None = None
    ) -> None:
        await self._write(_INSERT_IF_ABSENT, record, run_state(record), message, owner)

    # The write's own coroutine, not one awaiting it: one frame less per resume (the
    # start mark is on every invoke's path).
    def put_unless_final(self, record: Activation) -> Coroutine[Any, Any, bool]:
        return self._write(_REPLACE_PENDING, record, run_state(record))

    def start(self, record: Activation) -> Coroutine[Any, Any, bool]:
        return self._write(_START, record, STARTED)

    async def _write(
        self,
        statement: str,
        record: Activation,
        state: str | None,
        message: bytes | None = None,
        owner: str | None = None,
    ) -> bool:
        """Write the row; whether it changed one (``_Write.stored``)."""
        if self._db.closed:
            raise ProviderError("store is closed")
        if state is None:
            message = None  # a final record needs nothing to run it again
        loop = asyncio.get_running_loop()
        row = (*activation_key(record), dumps_record(record), state, message, owner)
        hold = self._hold
        if hold is not None and not self._registered:
            self._registered = True
            hold.register(loop, self._released)
        if not self._scheduled and not (hold is not None and hold.held):
            self._scheduled = True
            loop.call_soon(self._scheduled_flush)
            if self._quiet >= QUIET_FLUSHES:
                # The first write after a quiet iteration: committed here, without
                # awaiting (the module docstring says why); the flush takes the rest of
                # this iteration's writes, and sees from them whether it is quiet still.
                self._at_once = True
                # One statement commits by itself (autocommit).
                return self._db.write_one(statement, row) == 1
        committed: asyncio.Future[None] = loop.create_future()
        write = _Write(statement, row, committed)
        self._pending.append(write)
        # Each writer awaits a future of its own (no shield, which cost one more loop
        # iteration per write): a cancelled writer cancels only that future, and its row
        # is committed with the batch all the same.
        await committed
        return write.stored

    def _scheduled_flush(self) -> None:
        """The iteration's flush, unless the writes are held: then the hold's end
        (:meth:`_released`) schedules it."""
        if self._hold is not None and self._hold.held:
            self._scheduled = self._at_once = False
            return
        if not self._pending:
            # Nothing joined the write committed at once (a lone writer: every write at
            # c=1): a quiet flush, as ``flush`` would count it, without calling it.
            self._quiet += 1
            self._scheduled = self._at_once = False
            return
        self.flush()

    def _released(self) -> None:
        """A hold ended (on the loop): commit what waited, as this iteration's flush."""
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def flush(self) -> None:
        """Commit every pending record in one transaction; wake their writers. (Held or
        not: the store's close calls it.)"""
        writes, self._pending = self._pending, []
        # Company: any write beside the one committed at once, or a batch of several.
        alone = len(writes) <= (0 if self._at_once else 1)
        self._quiet = self._quiet + 1 if alone else 0
        self._scheduled = self._at_once = False
        if not writes:
            return
        try:
            if len(writes) == 1:
                only = writes[0]  # one statement commits by itself (autocommit)
                only.stored = self._db.write_one(only.statement, only.row) == 1
            else:
                self._db.in_transaction(self._apply, writes)
        except Exception as exc:
            waiting = [w.committed for w in writes if w.committed and not w.committed.done()]
            if not waiting:
                raise  # every writer gave up: nobody else would see it
            for committed in waiting:
                committed.set_exception(exc)
        else:
            for w in writes:
                if w.committed is not None and not w.committed.done():
                    w.committed.set_result(None)

    @staticmethod
    def _apply(conn: sqlite3.Connection, writes: builtins.list[_Write]) -> None:
        # Replacing puts first (in queue order: a re-put replaces), then conditional
        # replacements of pending records, then pending inserts; see the module docstring.
        upserts = [w for w in writes if w.statement is _UPSERT]
        if upserts:
            conn.executemany(_UPSERT, [w.row for w in upserts])
            for w in upserts:
                w.stored = True
        for w in writes:
            if w.statement is _REPLACE_PENDING:
                w.stored = conn.execute(_REPLACE_PENDING, w.row).rowcount == 1
        inserts = [w.row for w in writes if w.statement is _INSERT_IF_ABSENT]
        if inserts:
            conn.executemany(_INSERT_IF_ABSENT, inserts)
        # Starts last: one queued by put_pending in the same batch is then claimed.
        for w in writes:
            if w.statement is _START:
                w.stored = conn.execute(_START, w.row).rowcount == 1

    async def prune(self, before_ms: int) -> int:
        # Final records one namespace at a time (``activations_final`` leads with the
        # namespace: each batch is a range of it), then the unfinished ones.
        removed = 0
        with self._db.autocommit() as conn:
            row = conn.execute(_FIRST_NAMESPACE).fetchone()
        while row is not None:
            removed += await self._prune_batches(_PRUNE_FINAL, (row[0], before_ms))
            await asyncio.sleep(0)  # many namespaces: let requests in between them too
            with self._db.autocommit() as conn:
                row = conn.execute(_NEXT_NAMESPACE, (row[0],)).fetchone()
        return removed + await self._prune_batches(_PRUNE_UNFINISHED, (before_ms,))

    async def _prune_batches(self, statement: str, params: tuple[str | int, ...]) -> int:
        removed = 0
        while True:
            with self._db.autocommit() as conn:
                deleted = conn.execute(statement, (*params, PRUNE_BATCH)).rowcount
            removed += deleted
            if deleted < PRUNE_BATCH:
                return removed
            await asyncio.sleep(0)  # let requests in between batches

    async def unfinished(
        self, after: str, limit: int, owned_by: str | None = None
    ) -> builtins.list[Unfinished]:
        # Owned ones: a prefix compared as text (no LIKE, whose % and _ would match more).
        owned = "" if owned_by is None else " AND substr(owner, 1, length(?)) = ?"
        with self._db.autocommit() as conn:
            rows = conn.execute(
                "SELECT body, state, message, owner FROM activations"
                f" WHERE state IS NOT NULL AND activation_id > ?{owned}"
                " ORDER BY activation_id LIMIT ?",
                (after, *(() if owned_by is None else (owned_by, owned_by)), limit),
            ).fetchall()
        return [
            Unfinished(
                loads_record(body),
                state == STARTED,
                None if message is None else bytes(message),
                owner,
            )
            for body, state, message, owner in rows
        ]

    async def get(self, namespace: str, activation_id: str) -> Activation:
        with self._db.autocommit() as conn:
            row = conn.execute(
                "SELECT body FROM activations WHERE activation_id = ? AND namespace = ?",
                (activation_id, namespace),
            ).fetchone()
        if row is None:
            raise NotFound()
        return loads_record(row[0])

    async def list(self, query: ActivationQuery) -> builtins.list[Activation]:
        where, params = activation_filter(query, "?")
        # Both arms in order (the final one by its index), merged, so LIMIT stops early.
        with self._db.autocommit() as conn:
            rows = conn.execute(
                _both("body, start, activation_id", where)
                + " ORDER BY 2 DESC, 3 DESC LIMIT ? OFFSET ?",
                (*params, *params, *limit_offset(query.skip, query.limit)),
            ).fetchall()
        return [loads_record(body) for body, _, _ in rows]

    async def count(self, query: ActivationQuery) -> int:
        where, params = activation_filter(query, "?")
        with self._db.autocommit() as conn:
            row = conn.execute(
                f"SELECT (SELECT count(*) FROM activations WHERE {_FINAL} AND {where})"
                f" + (SELECT count(*) FROM activations WHERE {_UNFINISHED} AND {where})",
                (*params, *params),
            ).fetchone()
        return int(row[0])

    async def stats(self, query: ActivationQuery, bucket_ms: int = 60_000) -> ActivationStats:
        where, params = activation_filter(query, "?")
        # The final records' five columns are all in `activations_final`: a range scan.
        with self._db.autocommit() as conn:
            rows = conn.execute(
                _both("start, name, status, duration, init_time", where), (*params, *params)
            ).fetchall()
        return summarize(rows, bucket_ms)


def _both(columns: str, where: str) -> str:
    """``columns`` of the records matching ``where``: the final ones (through the partial
    indexes of final records), then the unfinished ones (``activations_unfinished``);
    the two conditions split the table, so every record is in exactly one arm. The
    parameters of ``where`` are given twice."""
    return (
        f"SELECT {columns} FROM activations WHERE {_FINAL} AND {where}"
        f" UNION ALL SELECT {columns} FROM activations WHERE {_UNFINISHED} AND {where}"
    )
