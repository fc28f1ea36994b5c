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
- The WAL stays bounded as with SQLite's own checkpoints: once a checkpoint has copied
  every frame, the next commit starts the WAL over from its beginning. It holds at most
  about :data:`MIN_FRAMES` frames plus what is committed in :data:`INTERVAL_S` (and more
  only while a reader keeps an old snapshot, as before).
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
file (read only) and the ``threading.Event`` that stops it; nothing is shared with the
event loop.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import threading

log = logging.getLogger(__name__)

#: How often the thread checkpoints. At ~500 commits/s of ~8 pages (one request at a
#: time, two commits per invoke) the WAL holds ~4 MB between checkpoints; SQLite's own
#: threshold (1000 pages) was crossed about every 0.25 s at that rate too.
INTERVAL_S = 0.25

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
    """Checkpoints the WAL of the database file at ``path`` every ``interval_s`` on a
    daemon thread until :meth:`stop`; see the module docstring."""

    def __init__(self, path: str, *, interval_s: float = INTERVAL_S, busy_timeout_ms: int) -> None:
        # Opened here, so that a file that cannot be opened fails the caller, not the thread.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        self._shm = f"{path}-shm"
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._failing = False
        #: Read by tests and benchmarks, from other threads (each a single assignment):
        #: checkpoints done, and what the last one reported, (frames in the WAL, frames of
        #: it copied into the database file so far): equal once everything is copied.
        self.runs = 0
        self.last: tuple[int, int] | None = None
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
        """One PASSIVE checkpoint, unless the WAL is small (see the module docstring); a
        failure is logged (once until one succeeds again) and the next interval tries
        again."""
        frames = self.wal_frames()
        self.looked += 1
        if frames is not None and frames[0] < MIN_FRAMES:
            return
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
            return
        self._failing = False
        if row is not None:  # (busy, frames in the WAL, frames copied); -1s if not WAL
            self.last = (int(row[1]), int(row[2]))
        self.runs += 1

    @property
    def running(self) -> bool:
        """Whether the thread still runs (False once :meth:`stop` returned)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the thread (after the checkpoint under way, if any); idempotent."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(STOP_TIMEOUT_S)
