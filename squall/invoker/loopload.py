"""How busy the invoker's event loop is: the share of wall time its thread was running or
waiting for a CPU to run on.

WARM WAIT (:mod:`squall.invoker.pool`) divides a run's hold time into what the container
explains and what it does not. On a busy loop (a noop at c=50: the server's one thread,
not the runtimes, bounds the throughput) a run holds its container mostly while its
task waits for the loop — for its started point's commit, for the loop to read the
runtime's answer, for the task to resume — and more containers only lengthen that wait.
:meth:`LoopLoad.busy` tells how much: the thread's CPU time plus its run-queue wait
(``/proc/thread-self/schedstat``: on a host with other work the loop may be ready but
not running, which is as saturated), over wall time, 0 to 1, averaged over the last
samples.

Guarantees: :meth:`busy` is cheap on every call (a clock read; the file is read at most
every :data:`SAMPLE_S`); it must be called from the thread that runs the loop (the
figures are that thread's); without the schedstat file (not Linux, or no schedstats)
it falls back to the thread's CPU time alone.

Concurrency: no locks; one instance per loop, used from that loop's thread only.
"""

from __future__ import annotations

import time

#: How often the thread's figures are read: often enough to follow a burst's first
#: tenth of a second, rarely enough to cost nothing (a file read, ~10 µs, 20 times a s).
SAMPLE_S = 0.05
#: Weight of the newest sample: the figure follows a change within a few samples.
WEIGHT = 0.5
SCHEDSTAT = "/proc/thread-self/schedstat"


def _thread_ns() -> int:
    """Nanoseconds the calling thread ran or waited to run (run queue), or ran only."""
    try:
        with open(SCHEDSTAT, "rb") as f:
            ran, waited, _ = f.read().split(maxsplit=2)
        return int(ran) + int(waited)
    except (OSError, ValueError):
        return time.thread_time_ns()


class LoopLoad:
    """The loop thread's busy share, see the module docstring."""

    def __init__(self) -> None:
        self._at = time.monotonic()
        self._ns = _thread_ns()
        self._busy = 0.0

    def busy(self) -> float:
        """The thread's busy share, 0 (idle) to 1 (saturated)."""
        now = time.monotonic()
        elapsed = now - self._at
        if elapsed >= SAMPLE_S:
            ns = _thread_ns()
            share = min(1.0, max(0.0, (ns - self._ns) / 1e9 / elapsed))
            self._busy += WEIGHT * (share - self._busy)
            self._at, self._ns = now, ns
        return self._busy
