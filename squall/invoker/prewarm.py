"""Stem cells: which prewarmed containers the pool keeps, per kind and memory.

A stem cell is a runtime started ahead of any action, listening but not initialized
(state ``PREWARMED``). A cold start of an action of the same kind and memory (and
concurrency 1: a runtime's concurrency is fixed when it starts) takes one and only sends
it /init; the pool then starts a replacement in the background. Stem cells count against
the invoker's memory like any container and are the first to go when an action of another
shape needs the room.

Defaults: the ``stemCells`` of the runtimes manifest's offered kinds
(``squall/runtimes/runtimes.json``; ``Settings.stem_cells``, ``SQUALL_STEM_CELLS`` give an
explicit list instead): 2 x ``nodejs:20`` at 256 MB,
as OpenWhisk's invoker ships (two, so two cold starts arriving together both find one),
and 1 x ``python:3.13`` at 256 MB (the default action memory): a stem cell cuts a Python
cold start as much as a Node.js one, but Python is to get zygotes for its cold starts, so
one cell covers the first of them for 256 MB of capacity. Measured through the factory
and the pool (2 vCPUs, bubblewrap + cgroups, p50 of 20, acquire + /init + first /run):
``nodejs:20`` 78 ms cold, 16 ms from a stem cell; ``python:3.11`` 71 ms cold, 16 ms from a
stem cell — what is left is the /init itself (11-12 ms).

BURSTS. A Node.js sandbox is a new ``node`` process (+ ``bwrap`` and the sandbox's pid 1):
≈ 60 ms of CPU in a burst, so two cores start ≈ 35 a second however the invoker orders
them (bench/README.md, "Node.js stem cells follow bursts"). Taking a stem cell instead
costs the burst its /init only. So a kind whose manifest stem cell is ``reactive``
(OpenWhisk's option: ``maxCount``, ``ttl``; ``nodejs:20`` ships ``100``, ``60 seconds``)
keeps stem cells the way a Python zygote keeps its spares, by the same code
(:class:`~squall.sandbox.sparedemand.SpareDemand` and ``SpareSchedule``): once
:data:`~squall.sandbox.sparedemand.BURST_CREATES` cold starts of one shape (kind, memory)
are in flight at once — a cold start is in flight from the take of a stem cell or the
start of a container until its /init ended — the pool keeps as many stem cells of that
shape as the burst had in flight, up to ``maxCount``, for ``ttl`` after the last burst
or after the last of the burst's own refill became ready (ready within ``ttl`` of the
burst: at most ``2 * ttl`` after it), whichever is later (as OpenWhisk's prewarmed
container expires ``ttl`` after its start: a refill of 100 needs ≈ 6 s of CPU and took
longer than the ttl on a saturated machine, whose cells were then removed unused just
before the next burst), then falls back to the shape's ``initialCount`` (0 for a memory
the manifest does not name) and removes the ones beyond it (idle ones first, then ones
still starting). They are started once the burst's last cold start has its runtime,
:data:`~squall.sandbox.sparedemand.REFILL_PARALLEL` at a time, only from the invoker's
free memory (each counts its memory like any container) and only while no request waits
for memory, and they are the first evicted (POLICY rule 5); the controller's balancer
does not see them (it routes by the memory of the activations it sent). An explicit
``SQUALL_STEM_CELLS`` list has no reactive cells.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from squall.entities.manifest import Manifest

_ITEM = re.compile(r"^\s*(?P<kind>[a-z0-9.:_-]+)@(?P<memory>\d+)x(?P<count>\d+)\s*$")


@dataclass(frozen=True, slots=True)
class StemCellSpec:
    """Keep ``count`` stem cells of ``kind`` with ``memory_mb`` each; ``max_count`` > 0:
    after a burst of cold starts of ``kind`` (any memory), up to that many of the burst's
    shape for ``ttl_s`` (BURSTS above)."""

    kind: str
    memory_mb: int
    count: int
    max_count: int = 0
    ttl_s: float = 0.0

    @property
    def shape(self) -> tuple[str, int]:
        return (self.kind, self.memory_mb)


def parse_stem_cells(text: str) -> tuple[StemCellSpec, ...]:
    """``"nodejs:20@256x2,python:3.11@256x1"`` → specs; ``""`` → none.

    Raises ValueError for a malformed item or a shape given twice; items with count 0 are
    dropped.
    """
    specs: list[StemCellSpec] = []
    seen: set[tuple[str, int]] = set()
    for item in filter(str.strip, text.split(",")):
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"stem cells: {item.strip()!r} is not kind@memoryMBxcount")
        spec = StemCellSpec(match["kind"], int(match["memory"]), int(match["count"]))
        if spec.memory_mb <= 0:
            raise ValueError(f"stem cells: {item.strip()!r} needs memory > 0")
        if spec.shape in seen:
            raise ValueError(f"stem cells: {spec.kind}@{spec.memory_mb} is given twice")
        seen.add(spec.shape)
        if spec.count:
            specs.append(spec)
    return tuple(specs)


def manifest_stem_cells(manifest: Manifest) -> tuple[StemCellSpec, ...]:
    """The stem cells the manifest's kinds ask for (``stemCells``: count and memory)."""
    return tuple(
        StemCellSpec(kind, cell.memory_mb, cell.count, cell.max_count, cell.ttl_s)
        for kind, cell in manifest.stem_cells()
        if cell.count > 0
    )
