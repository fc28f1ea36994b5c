"""The SQLite connection behind :mod:`squall.store.sqlite`: settings, schema, migrations.

Guarantees:

- :func:`connect` returns a :class:`Database` whose schema is at :data:`SCHEMA_VERSION`:
  migrations not yet recorded in ``PRAGMA user_version`` are applied in order, each in its
  own transaction together with the version bump, so a crash mid-migration leaves the file
  at the previous version and the next open retries. Reopening a current file changes
  nothing.
- A file written by a newer Squall (higher version) is refused with ``ProviderError``
  rather than misread.
- Every ``sqlite3`` failure surfaces as :class:`squall.errors.ProviderError`; after
  :meth:`Database.close` every use raises ``ProviderError("store is closed")``.

Why the connection is used straight from coroutines, on the event-loop thread: in WAL mode
with ``synchronous=NORMAL`` a commit appends to the WAL without an fsync, so a statement
costs microseconds. Handing each one to a worker thread (as aiosqlite does) costs more
than the statement itself, and Squall aims at sub-millisecond warm invokes. Committed data
still survives a crash of the process (the WAL is in the OS page cache); only power loss
can take the last transactions, which is the durability the store contract promises for
the embedded provider. The one costly thing SQLite would do inside a commit, the WAL
checkpoint (a copy and two fsyncs, every 1000 pages), is done by a thread of its own
instead (:mod:`squall.store.sqlite_checkpoint`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

from squall.errors import ProviderError
from squall.store import sqlite_checkpoint
from squall.store.records import dumps_body
from squall.store.sqlite_checkpoint import Checkpointer

_T = TypeVar("_T")

__all__ = ["Database", "connect", "dumps_body", "limit_offset", "migrate", "schema_version"]

# How long a writer waits for another *process* holding the write lock (e.g. `squall
# admin` next to a running standalone server). Within one process there is never a wait:
# see Database.transaction.
BUSY_TIMEOUT_MS = 5000

# Each migration is a list of statements run in one transaction. Append, never edit: the
# position in this tuple (1-based) is the schema version stored in PRAGMA user_version.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # Entities. `package` is derived from `name` (the part before the last "/") so
        # package listings use an index instead of a LIKE scan.
        """CREATE TABLE entities (
            namespace  TEXT    NOT NULL,
            collection TEXT    NOT NULL,
            name       TEXT    NOT NULL,
            package    TEXT    NOT NULL,
            rev        TEXT    NOT NULL,
            body       TEXT    NOT NULL,
            updated    INTEGER NOT NULL,
            PRIMARY KEY (namespace, collection, name)
        )""",
        """CREATE INDEX entities_by_updated
            ON entities (namespace, collection, updated DESC, name)""",
        """CREATE INDEX entities_by_package
            ON entities (namespace, collection, package, updated DESC, name)""",
        # Activations. `name` is the entity path ("action" or "pkg/action"), copied out of
        # the record so the name filter is an index lookup.
        """CREATE TABLE activations (
            activation_id TEXT    PRIMARY KEY,
            namespace     TEXT    NOT NULL,
            name          TEXT    NOT NULL,
            start         INTEGER NOT NULL,
            body          TEXT    NOT NULL
        )""",
        """CREATE INDEX activations_by_start
            ON activations (namespace, start DESC, activation_id DESC)""",
        """CREATE INDEX activations_by_name
            ON activations (namespace, name, start DESC, activation_id DESC)""",
        # Subjects: one namespace per subject. `key_hash` is squall.store.keys.hash_key's
        # "scheme$salt$digest"; `limits` is a JSON object.
        """CREATE TABLE subjects (
            namespace TEXT    PRIMARY KEY,
            uuid      TEXT    NOT NULL UNIQUE,
            key_hash  TEXT    NOT NULL,
            limits    TEXT    NOT NULL DEFAULT '{}',
            created   INTEGER NOT NULL
        )""",
    ),
    (
        # Feed schedules (squall.store.sqlite_schedules): one per trigger; `due` is NULL
        # when nothing is scheduled, so the due-index skips paused and ended schedules.
        """CREATE TABLE feed_schedules (
            namespace TEXT NOT NULL,
            trigger   TEXT NOT NULL,
            rev       TEXT NOT NULL,
            body      TEXT NOT NULL,
            due       INTEGER,
            PRIMARY KEY (namespace, trigger)
        )""",
        """CREATE INDEX feed_schedules_by_due
            ON feed_schedules (due, namespace, trigger) WHERE due IS NOT NULL""",
        # Ticks claimed by a controller before it fires them: the primary key makes a
        # second claim of the same tick fail, in this process or another one.
        """CREATE TABLE feed_ticks (
            tick TEXT    PRIMARY KEY,
            at   INTEGER NOT NULL
        )""",
        "CREATE INDEX feed_ticks_by_at ON feed_ticks (at)",
    ),
    (
        # Retention (ActivationStore.prune) deletes by start across namespaces.
        "CREATE INDEX activations_by_age ON activations (start)",
    ),
    (
        # Action keys (squall.store.sqlite_auth): a namespace's second credential, the one
        # the invoker gives actions. The key is derived from a platform secret and the
        # uuid; only its hash_key hash is stored. It goes with its subject.
        """CREATE TABLE action_keys (
            namespace TEXT    PRIMARY KEY
                REFERENCES subjects (namespace) ON DELETE CASCADE,
            uuid      TEXT    NOT NULL UNIQUE,
            key_hash  TEXT    NOT NULL,
            created   INTEGER NOT NULL
        )""",
    ),
    (
        # The figures the dashboard plots (ActivationStore.stats), as virtual columns
        # computed from the record and kept in a covering index: a window of 100k records
        # is then read from the index alone, without parsing one record body.
        """ALTER TABLE activations ADD COLUMN status TEXT
            GENERATED ALWAYS AS (json_extract(body, '$.response.status')) VIRTUAL""",
        """ALTER TABLE activations ADD COLUMN duration REAL
            GENERATED ALWAYS AS (CASE json_type(body, '$.duration')
                WHEN 'integer' THEN json_extract(body, '$.duration')
                WHEN 'real' THEN json_extract(body, '$.duration') END) VIRTUAL""",
        # The value of the `initTime` annotation. A generated column may not hold a
        # subquery (json_each), so it is found in the annotations' JSON text, which SQLite
        # writes minified: an unescaped `{"key":"initTime","value":` can only be such an
        # annotation (inside a string its quotes would be escaped), and CAST reads the
        # number that follows it (up to the closing brace).
        """ALTER TABLE activations ADD COLUMN init_time REAL
            GENERATED ALWAYS AS (CASE WHEN instr(json_extract(body, '$.annotations'),
                    '{"key":"initTime","value":') > 0
                THEN CAST(substr(json_extract(body, '$.annotations'),
                    instr(json_extract(body, '$.annotations'),
                        '{"key":"initTime","value":') + 26) AS REAL) END) VIRTUAL""",
        """CREATE INDEX activations_figures
            ON activations (namespace, start, name, status, duration, init_time)""",
    ),
    (
        # Crash recovery (squall.store.sqlite_activations): a pending record's run state
        # (`queued`, `started`; NULL once final) and, while queued, what it takes to run
        # it (the activation message: kept beside the record, never in its JSON, and
        # dropped when it starts or ends). The partial index lists the unfinished ones.
        "ALTER TABLE activations ADD COLUMN state TEXT",
        "ALTER TABLE activations ADD COLUMN message BLOB",
        # Records left pending by an older Squall: queued, with nothing to run them
        # from (a restart ends them with an error saying so; an invoker that gets their
        # message may still start them, once).
        """UPDATE activations SET state = 'queued'
            WHERE json_extract(body, '$.response.status') = 'pending'""",
        """CREATE INDEX activations_unfinished
            ON activations (activation_id) WHERE state IS NOT NULL""",
    ),
    (
        # The API gateway's APIs (squall.store.sqlite_apis): one swagger document per
        # namespace and base path; a gateway request finds its API by tenant.
        """CREATE TABLE gateway_apis (
            namespace TEXT    NOT NULL,
            base_path TEXT    NOT NULL,
            tenant    TEXT    NOT NULL,
            rev       TEXT    NOT NULL,
            body      TEXT    NOT NULL,
            updated   INTEGER NOT NULL,
            PRIMARY KEY (namespace, base_path)
        )""",
        "CREATE INDEX gateway_apis_by_tenant ON gateway_apis (tenant, base_path)",
    ),
    (
        # Who runs an unfinished activation, when one member must finish it after a
        # crash: a cluster controller's composer writes "<controller id>/<incarnation>"
        # with the pending record of a topmost sequence or composition, and a restart
        # of that controller id ends or runs what an earlier incarnation left
        # (controller/restart.py). NULL for everything else.
        "ALTER TABLE activations ADD COLUMN owner TEXT",
    ),
    (
        # Fewer b-tree pages per activation write (each changed page is one WAL frame, two
        # pwrites, per commit). The indexes that serve listings, counts, the dashboard's
        # figures and retention hold final records only (`state IS NULL`): a pending
        # record (queued or started) is written into the table, its primary key and
        # `activations_unfinished` alone, and enters these two once, when it ends. Reads
        # add the unfinished records (few: what runs now or waits) through
        # `activations_unfinished` (squall.store.sqlite_activations).
        # `activations_final` serves what `activations_by_start` (listing in a reverse
        # scan), `activations_figures` (counts, the dashboard's figures) and
        # `activations_by_age` (retention, one namespace after the other) did; the
        # trailing `state` (always NULL) makes counts index-only.
        "DROP INDEX activations_by_start",
        "DROP INDEX activations_by_name",
        "DROP INDEX activations_by_age",
        "DROP INDEX activations_figures",
        """CREATE INDEX activations_final ON activations
            (namespace, start, activation_id, name, status, duration, init_time, state)
            WHERE state IS NULL""",
        """CREATE INDEX activations_final_by_name ON activations
            (namespace, name, start, activation_id, state) WHERE state IS NULL""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class Database:
    """One ``sqlite3`` connection shared by the entity, activation and auth stores.

    Not thread-safe and not meant to be: it belongs to the event-loop thread that opened
    it (``sqlite3``'s ``check_same_thread`` stays on to catch misuse).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = conn
        #: Checkpoints the WAL off the event loop (a file database; see connect).
        self.checkpointer: Checkpointer | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection; ``ProviderError("store is closed")`` after :meth:`close`."""
        if self._conn is None:
            raise ProviderError("store is closed")
        return self._conn

    @property
    def closed(self) -> bool:
        return self._conn is None

    @contextmanager
    def autocommit(self) -> Iterator[sqlite3.Connection]:
        """Run statements in autocommit mode, each atomic on its own (a single INSERT,
        UPDATE or DELETE needs no explicit transaction); sqlite errors → ProviderError."""
        conn = self.conn
        try:
            yield conn
        except sqlite3.Error as exc:
            raise ProviderError(f"sqlite: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; any exception rolls back and propagates.

        IMMEDIATE takes the write lock at the start, so a read-check-write sequence
        (compare the revision, then write) cannot be interleaved by another process.
        Within this process no interleaving is possible either: all stores run on the
        one event-loop thread and the body of a transaction never awaits, so no other
        task runs between BEGIN and COMMIT. That is why no asyncio lock is needed.
        """
        conn = self._begin()
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            _roll_back(conn, exc)

    # The activation store's write path (two writes per warm invoke) uses these plain
    # methods rather than the context managers above: the same statements, errors and
    # rollback, without a generator and its context manager per write (five Python calls
    # each: ``autocommit()``, ``__enter__``, the generator twice, ``__exit__``).

    def write_one(self, statement: str, row: tuple[object, ...]) -> int:
        """Run one statement in autocommit mode (atomic on its own, as in
        :meth:`autocommit`); the rows it changed. sqlite errors → ProviderError."""
        conn = self._conn
        if conn is None:
            raise ProviderError("store is closed")
        try:
            return conn.execute(statement, row).rowcount
        except sqlite3.Error as exc:
            raise ProviderError(f"sqlite: {exc}") from exc

    def in_transaction(self, apply: Callable[[sqlite3.Connection, _T], None], arg: _T) -> None:
        """``apply(connection, arg)`` between ``BEGIN IMMEDIATE`` and ``COMMIT``, as
        :meth:`transaction` runs its block: any exception rolls back and propagates,
        sqlite errors as ProviderError. ``apply`` must not await (it cannot: it is not a
        coroutine), so no other task runs inside the transaction."""
        conn = self._begin()
        try:
            apply(conn, arg)
            conn.execute("COMMIT")
        except BaseException as exc:
            _roll_back(conn, exc)

    def _begin(self) -> sqlite3.Connection:
        """The open connection with ``BEGIN IMMEDIATE`` run; sqlite errors → ProviderError."""
        conn = self._conn
        if conn is None:
            raise ProviderError("store is closed")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise ProviderError(f"sqlite: {exc}") from exc
        return conn

    def close(self) -> None:
        """Close the connection; idempotent. SQLite checkpoints the WAL on last close."""
        checkpointer, self.checkpointer = self.checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()  # before the close: that one is then the last
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def connect(path: str | Path) -> Database:
    """Open (creating if needed) the database at ``path`` or ``":memory:"`` and migrate it."""
    target = str(path)
    if target != ":memory:":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    try:
        # isolation_level=None: the sqlite3 module opens no implicit transactions; we
        # issue BEGIN IMMEDIATE ourselves where atomicity across statements matters.
        conn = sqlite3.connect(target, isolation_level=None)
    except sqlite3.Error as exc:
        raise ProviderError(f"sqlite: cannot open {target}: {exc}") from exc
    db = Database(conn)
    try:
        with db.autocommit() as c:
            c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]  # ":memory:": "memory"
            c.execute("PRAGMA synchronous = NORMAL")  # no fsync per commit in WAL mode
            c.execute("PRAGMA foreign_keys = ON")
        migrate(db)
        if str(mode).lower() == "wal":
            # Checkpoints (a copy and two fsyncs) off the event loop: sqlite_checkpoint.py.
            with db.autocommit() as c:
                c.execute("PRAGMA wal_autocheckpoint = 0")
                # The WAL file shrinks back to this when it starts over (a catch-up).
                c.execute(f"PRAGMA journal_size_limit = {sqlite_checkpoint.WAL_LIMIT_BYTES}")
            try:
                db.checkpointer = Checkpointer(target, busy_timeout_ms=BUSY_TIMEOUT_MS)
            except sqlite3.Error as exc:
                raise ProviderError(f"sqlite: cannot open {target}: {exc}") from exc
    except BaseException:
        db.close()
        raise
    return db


def schema_version(db: Database) -> int:
    with db.autocommit() as conn:
        row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(db: Database) -> int:
    """Apply pending migrations in order; returns the resulting schema version."""
    while True:
        with db.transaction() as conn:
            # Read the version inside the write transaction: two processes opening the
            # same new file at once must not both apply the same migration.
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise ProviderError(
                    f"database schema version {version} is newer than this Squall "
                    f"supports ({SCHEMA_VERSION})"
                )
            if version == SCHEMA_VERSION:
                return version
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")


def limit_offset(skip: int, limit: int | None) -> tuple[int, int]:
    if skip < 0 or (limit is not None and limit < 0):
        raise ValueError(f"skip and limit must not be negative (skip={skip}, limit={limit})")
    return (-1 if limit is None else limit), skip  # LIMIT -1: no limit in SQLite


def _roll_back(conn: sqlite3.Connection, exc: BaseException) -> NoReturn:
    """End a failed transaction: roll back what it wrote (if it is still open) and raise
    ``exc`` again, a sqlite error as ProviderError."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    if isinstance(exc, sqlite3.Error):
        raise ProviderError(f"sqlite: {exc}") from exc
    raise exc
