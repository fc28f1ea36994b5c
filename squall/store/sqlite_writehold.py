"""The embedded store's group commit, held for a moment while the WAL is caught up.

Why: SQLite starts its WAL over from the beginning only at a commit that finds every
frame of it already copied into the database file. The checkpoint thread
(:mod:`squall.store.sqlite_checkpoint`) copies beside the event loop and never stops a
commit — which is why, under a steady load (a commit every ~0.5 ms, a checkpoint taking
milliseconds for its two fsyncs), some commit always lands during the copy: every
checkpoint copies the frames, none leaves the WAL fully copied, and the WAL file grew by
~50 MB a second without end (bench/README.md, "request_breakdown.py"). SQLite's own
checkpoints bounded it by stalling the committing request for the copy.

So once the WAL is past :data:`~squall.store.sqlite_checkpoint.CATCH_UP_FRAMES`, the
checkpoint thread asks for a :class:`WriteHold`: the activation store's group commit
(:mod:`squall.store.sqlite_activations`), which makes almost every commit, then queues
its writes instead of committing them — the event loop runs on, requests are read and
answered, only the writers of activation records wait — while the thread copies the
last frames; then it lets go and the queued writes commit as one batch, the first commit
after the catch-up, which starts the WAL over (and truncates its file to
``journal_size_limit`` if it grew past it). A catch-up holds the writers for one
checkpoint of the frames committed during the previous one: a few milliseconds, once per
``CATCH_UP_FRAMES`` frames written.

Guarantees:

- A write is still committed before it returns; a held write waits, it is never lost.
  ``SqliteActivationStore.flush`` (the store's close) commits whatever waits, held or not.
- The hold ends by itself after :data:`HOLD_MAX_S` even when the thread never lets go
  (stuck in a slow fsync, stopped): the writers wait at most that long per catch-up.
- Other writers (entities, retention's deletes) are not held; one committing during the
  catch-up means the WAL is not started over this time, and the thread tries again at
  its next checkpoint.

Concurrency: :attr:`WriteHold.held` and the timer are touched only on the event loop's
thread; the checkpoint thread reaches it through ``call_soon_threadsafe`` and waits on a
``threading.Event`` for the hold to be in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

#: The longest the group commit stays held for one catch-up.
HOLD_MAX_S = 0.25


class WriteHold:
    """A hold on the group commit's writes, asked for by the checkpoint thread; see the
    module docstring. The group commit :meth:`register`\\ s itself (on the event loop);
    until then :meth:`hold` says no."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_release: Callable[[], None] | None = None
        self._granted = threading.Event()
        self._timer: asyncio.TimerHandle | None = None
        #: Whether writes are held now (read and written on the loop's thread only).
        self.held = False
        #: Holds granted so far (read by tests and benchmarks).
        self.granted = 0

    def register(self, loop: asyncio.AbstractEventLoop, on_release: Callable[[], None]) -> None:
        """Called on ``loop`` by the group commit: ``on_release`` runs on it when a hold
        ends (to commit what waited)."""
        self._loop = loop
        self._on_release = on_release

    # -- the checkpoint thread's side --

    def hold(self, timeout: float) -> bool:
        """Hold the writes; True once held (the loop granted it within ``timeout``). After
        True or False alike, call :meth:`release`."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        self._granted.clear()
        try:
            loop.call_soon_threadsafe(self._grant)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return self._granted.wait(timeout)

    def release(self) -> None:
        """Let the writes go (also a hold granted after :meth:`hold` gave up waiting)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits on it
            loop.call_soon_threadsafe(self._release)

    # -- the event loop's side --

    def _grant(self) -> None:
        loop = self._loop
        assert loop is not None
        if not self.held:
            self.held = True
            self.granted += 1
            self._timer = loop.call_later(HOLD_MAX_S, self._release)
        self._granted.set()

    def _release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_release is not None:
            self._on_release()
