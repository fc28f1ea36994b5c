"""WAL checkpoints of the embedded SQLite store, on a thread of their own.

Why: SQLite checkpoints a WAL database by itself, inside the commit that takes the WAL
past ``wal_autocheckpoint`` pages (1000): that commit copies the WAL's pages into the
database file and fsyncs both (with ``synchronous=NORMAL``, checkpoints are the only
syncs). The store's connection is used on the event-loop thread (see
:mod:`squall.store.sqlite_schema`), so every such commit stalled the loop for the copy
(1.1 to 1.6 ms of CPU) and two fsyncs (3 to 5 ms on this project's test machine when
quiet, more while other processes write), once every ~63 warm invokes (two commits of
~8 pages each per invoke: the started point and the final record). At one request at a
time that was the ~17 ms p99 of issue 12 (bench/README.md, "loop_stalls.py").

So the loop's connection checkpoints never (``PRAGMA wal_autocheckpoint = 0``) and a
:class:`Checkpointer` thread, with a connection of its own, runs ``PRAGMA
wal_checkpoint(PASSIVE)`` every :data:`INTERVAL_S`.

Guarantees:

- Durability is unchanged: a commit is durable once it is in the WAL, exactly as before;
  a checkpoint only copies committed pages into the database file. A crash in the middle
  of one is recovered by SQLite from the WAL, as for its own checkpoints.
- The loop never waits for it: a PASSIVE checkpoint takes no write lock and waits for no
  reader or writer (it copies only the frames no reader still needs), and ``sqlite3``
  releases the GIL while the statement runs, so the copy and the fsyncs happen beside the
  loop. A checkpoint with nothing new to copy returns without any I/O.
- Once a checkpoint has copied every frame, the next commit starts the WAL over from its
  beginning. That needs a checkpoint during which nothing was committed: while commits
  never pause for a checkpoint's length (its two fsyncs take milliseconds; sequential
  invokes commit every ~0.5 ms), every checkpoint copies the frames but the WAL file
  kept growing, until the load paused (measured: ~300 MB in 6 s of back-to-back puts;
  bench/README.md, "request_breakdown.py"). SQLite's own checkpoints bounded it, at the
  price of the stalls above. So a WAL past :data:`CATCH_UP_FRAMES` is *caught up*: the
  activation store's group commit is held for one more checkpoint
  (:mod:`squall.store.sqlite_writehold` says how and what it costs), and the commit
  after it starts the WAL over; ``journal_size_limit`` then truncates a file grown
  past :data:`WAL_LIMIT_BYTES` back to it (a caught-up WAL at one request at a time
  stays within it and keeps its file). Below the catch-up, the WAL holds at most about
  :data:`MIN_FRAMES` frames plus what is committed in :data:`INTERVAL_S` (more only while
  a reader keeps an old snapshot).
- :meth:`Checkpointer.stop` wakes the thread, waits for it and closes its connection;
  the last ``close`` of the store's own connection then checkpoints what is left, as
  SQLite always does.

Not while the WAL is small (fewer than :data:`MIN_FRAMES` frames, read from the
wal-index header in the ``-shm`` file; documented at sqlite.org/walformat.html): once a
checkpoint has copied every frame, the next commit restarts the WAL, and SQLite writes
and *fsyncs* the new WAL header in that commit, on the event loop (1.5-8 ms on this
project's test machine; with ``synchronous=NORMAL`` it is the checkpoints' sync). With a
checkpoint of every quiet WAL, that was nearly every first request after 0.25 s of quiet
— B2's cold starts among them (bench/README.md, "cold_api.py"). Now a quiet store keeps
its last few hundred frames in the WAL, and the restart is paid once per
:data:`MIN_FRAMES` frames written, as with SQLite's own threshold. A ``-shm`` file that
cannot be read, or a header caught mid-update, means a checkpoint as before.

Concurrency: the thread touches only its own connection, its descriptor of the ``-shm``
file (read only), the ``threading.Event`` that stops it and, for a catch-up, the
:class:`~squall.store.sqlite_writehold.WriteHold` (which reaches the loop through
``call_soon_threadsafe``); nothing else is shared with the event loop.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import threading

from squall.store.sqlite_writehold import WriteHold

log = logging.getLogger(__name__)

#: How often the thread checkpoints. Each checkpoint, however little it copies, costs
#: the process a wake-up, two turns of the GIL, the WAL index's scan and two fsyncs (with
#: the journal commit they cause): ~1-2 ms of CPU and 10-25 ms of wall time beside the
#: loop, during which a request's three processes have one core fewer. The pages it
#: copies are mostly the same few (the tails of the activations table and its indexes,
#: rewritten by every commit), so checkpointing less often copies them fewer times: at
#: one request at a time, every 1 s instead of every 0.25 s took the thread's CPU from
#: 3.4-4.5 to 2.5 ms per second and the share of time a checkpoint runs from ~5 % to
#: ~2.5 % (bench/README.md, "request_breakdown.py"). Between two checkpoints the WAL
#: takes what is committed in a second (~16 MB at ~500 commits/s of ~8 pages).
INTERVAL_S = 1.0

#: A WAL of this many frames or more is caught up (see the module docstring): with 4 KiB
#: pages 32 MiB, ~1000 warm invokes' worth at one request at a time.
CATCH_UP_FRAMES = 8192

#: What the WAL file is truncated to when it starts over (``PRAGMA journal_size_limit``
#: of the store's connection, set by ``sqlite_schema.connect``). Room for a caught-up
#: WAL (:data:`CATCH_UP_FRAMES` frames of 4 KiB pages, 24-byte headers: 33.75 MB) plus a
#: second's commits at one request at a time (~16 MB), so that a catch-up's restart keeps
#: the file: the truncation runs in the commit that starts the WAL over, on the event
#: loop, and frees the file's tail, which ext4 on a ``discard`` mount discards in the
#: call (1.8-7.5 ms each, measured); the next frames then allocate those blocks again,
#: and an append that allocates can wait for the inode's lock while a checkpoint's fsync
#: writes the WAL back. Within this size the WAL's blocks stay allocated and a commit
#: overwrites them (bench/README.md, "The slow 1 % on a quiet machine").
WAL_LIMIT_BYTES = 64 * 1024 * 1024

#: How long the thread waits for the event loop to grant a hold before it gives up (a
#: loop that busy has its writers queued anyway; the next checkpoint tries again).
HOLD_WAIT_S = 0.1

#: How long :meth:`Checkpointer.stop` waits for a checkpoint under way.
STOP_TIMEOUT_S = 10.0

#: A WAL with fewer frames is not checkpointed (SQLite's own ``wal_autocheckpoint``
#: default; ~4 MB of 4 KiB pages, ~60 warm invokes): see the module docstring.
MIN_FRAMES = 1000

# The wal-index header (native byte order): two copies of a 48-byte header, mxFrame (the
# WAL's last valid frame) at offset 16 of each, then nBackfill (frames copied) at 96.
_HEADER = struct.Struct("=48s48sI")
_MX_FRAME = struct.Struct("=I")


class Checkpointer:
    """Checkpoints the WAL of the database file at ``path`` every ``interval_s``
    (:data:`INTERVAL_S` by default) on a daemon thread until :meth:`stop`; see the module
    docstring."""

    def __init__(self, path: str, *, interval_s: float | None = None, busy_timeout_ms: int) -> None:
        # Opened here, so that a file that cannot be opened fails the caller, not the thread.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        self._shm = f"{path}-shm"
        # INTERVAL_S read now, not at import: tests shorten it for the stores they open.
        self._interval_s = INTERVAL_S if interval_s is None else interval_s
        self._stopping = threading.Event()
        self._failing = False
        #: Read by tests and benchmarks, from other threads (each a single assignment):
        #: checkpoints done, and what the last one reported, (frames in the WAL, frames of
        #: it copied into the database file so far): equal once everything is copied.
        self.runs = 0
        self.last: tuple[int, int] | None = None
        #: Catch-ups done (the writers held and the last frames copied).
        self.catch_ups = 0
        #: The group commit registers itself here (sqlite_activations.py).
        self.hold = WriteHold()
        #: Intervals ended (a checkpoint done or a small WAL left alone).
        self.looked = 0
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.wait(self._interval_s):
                self.checkpoint()
        finally:
            self._conn.close()

    def wal_frames(self) -> tuple[int, int] | None:
        """(frames in the WAL, frames of it copied) from the wal-index header, or None
        when it cannot be read consistently."""
        try:
            fd = os.open(self._shm, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            data = os.pread(fd, _HEADER.size, 0)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) < _HEADER.size:
            return None
        first, second, backfill = _HEADER.unpack(data)
        if first != second:  # a writer is updating it: no answer this time
            return None
        return _MX_FRAME.unpack_from(first, 16)[0], backfill

    def checkpoint(self) -> None:
        """One PASSIVE checkpoint unless the WAL is small, and a catch-up when it is long
        (see the module docstring); a failure is logged (once until one succeeds again)
        and the next interval tries again."""
        header = self.wal_frames()
        self.looked += 1
        if header is not None and header[0] < MIN_FRAMES:
            return
        frames = self._passive()
        if frames is None or frames[0] < CATCH_UP_FRAMES:
            return
        # Long: copy what was committed during that checkpoint with the writers held, so
        # that the WAL is wholly copied when they commit again and the next commit starts
        # it over.
        try:
            if self.hold.hold(HOLD_WAIT_S) and self._passive() is not None:
                self.catch_ups += 1
        finally:
            self.hold.release()

    def _passive(self) -> tuple[int, int] | None:
        """A PASSIVE checkpoint: (frames in the WAL, frames of it copied), None if it failed."""
        try:
            row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            if not self._failing:
                log.warning(
                    "sqlite WAL checkpoint failed (tried again every %g s): %s",
                    self._interval_s,
                    exc,
                )
            self._failing = True
            return None
        self._failing = False
        frames = None
        if row is not None and int(row[1]) >= 0:  # (busy, frames, copied); -1s if not WAL
            frames = self.last = (int(row[1]), int(row[2]))
        self.runs += 1  # after ``last``: a reader of ``runs`` then finds its ``last``
        return frames

    @property
    def running(self) -> bool:
        """Whether the thread still runs (False once :meth:`stop` returned)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the thread (after the checkpoint under way, if any); idempotent."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(STOP_TIMEOUT_S)
