"""MEMORY GUARD: a warm container near its memory limit is retired before a run fails.

A warm container's memory can grow with every run it serves, whatever the action does:
the runtimes export each run's ``__OW_*`` values into their environment, and glibc's
``setenv`` keeps every distinct ``NAME=value`` string for the life of the process (≈ 350 B
a run for Node.js; Python's proxy avoids it with buffers of its own, ``OwnedEnv`` in
runtimes/python/proxy_action.py, where it grew 272 B; bench/README.md "setenv"), so a
Node.js container kept busy for an hour at c=50 reached its limit and the kernel killed it
in the middle of a user's run — an out-of-memory error the user's action did not cause.
An action that keeps state in globals grows the same way, by its own doing.

The rule (the pool's POLICY, "MEMORY GUARD", and docs/architecture.md):

- every :data:`CHECK_INTERVAL_S`, the pool reads the memory use of each initialized
  container that was handed a run since it was last read (:meth:`Container.memory_used`:
  its cgroup's use less the page cache the kernel can reclaim); an idle container serves
  no run, so the platform's per-run growth cannot have moved it;
- one using at least :data:`RETIRE_SHARE` of its limit that has also *grown* since the
  guard's first read of it (after its first run) by at least :func:`growth_margin`
  (max(:data:`GROWTH_MIN_MB`, :data:`GROWTH_SHARE` of the limit)) is *retired*: it takes
  no new run; an idle one is removed at once, a busy one when its runs in flight end (they
  are not interrupted). The next run of its action finds another warm container or starts
  one, as after a keep-warm expiry — the user sees a cold start, not an error. A container
  that sits near its limit from its /init on (an action that loads a 235 MB model into
  256 MB) is kept: retiring it would buy a cold start per run and prevent nothing, as
  its runs do not grow it;
- a container whose memory cannot be read is skipped (the others are still read); the
  failure is logged once per container, not once a second.

Why once a second is enough, and why nothing is read on a run's path: the read is two
small cgroup file reads (tens of µs) on the event loop, which would be paid per run at
tens of thousands of runs a second; once a second per used container it is bounded by the
number of containers. Between two reads a container grows by its runs of that second: at
the growth above and the fastest warm runs measured (≤ 2 400 a second for the whole
invoker at c=50, bench/README.md), that is < 1 MB, well inside the 10 % (≥ 12.8 MB for the
smallest 128 MB limit) left above the threshold. An action that grows faster than 10 % of
its limit within a second can still hit its limit: its own growth, which its own error
reports (as in OpenWhisk, whose runtimes have no such guard at all).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from squall.invoker.container import PooledContainer

log = logging.getLogger(__name__)

#: A container using this share of its memory limit (or more) is retired, if it grew.
RETIRE_SHARE = 0.9
#: The growth since the first read that makes a container at RETIRE_SHARE retired: the
#: larger of these two (8 MB: a run's worth of the platform's per-run growth over hours,
#: far above the cgroup's own noise; 5 %: half the room left above the threshold).
GROWTH_MIN_MB = 8
GROWTH_SHARE = 0.05
#: How often the pool reads its containers' memory use (seconds).
CHECK_INTERVAL_S = 1.0

MIB = 1024 * 1024


def growth_margin(memory_mb: int) -> int:
    """Bytes a container of ``memory_mb`` must have grown by to be retired."""
    return max(GROWTH_MIN_MB * MIB, int(GROWTH_SHARE * memory_mb * MIB))


def too_full(pcs: Iterable[PooledContainer], share: float = RETIRE_SHARE) -> list[PooledContainer]:
    """The initialized containers of ``pcs`` that were handed a run since their last read,
    use at least ``share`` of their limit now and grew by :func:`growth_margin` since
    their first read (each read is recorded on the container)."""
    full = []
    for pc in pcs:
        if not pc.initialized or pc.uses == pc.memory_read_at_use:
            continue
        pc.memory_read_at_use = pc.uses
        try:
            used = pc.container.memory_used()
        except Exception:
            # One container's failure must not stop the others' reads; a lasting one
            # would log a traceback a second: once per container is enough.
            if not pc.memory_read_failed:
                pc.memory_read_failed = True
                log.exception("reading the memory of container %s failed", pc.describe())
            continue
        if used is None:
            continue
        if pc.memory_first_read is None:
            pc.memory_first_read = used
        grown = used - pc.memory_first_read
        if used >= share * pc.memory_mb * MIB and grown >= growth_margin(pc.memory_mb):
            full.append(pc)
    return full
