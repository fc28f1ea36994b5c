"""How fast Node.js stem cells refill, by how many start at once (issue 12, B8).

    .venv/bin/python bench/stem_refill.py [--cells 40] [--parallel 4,8] [--rounds 3]
        [--network egress|none] [--kind nodejs:20]

One :class:`~squall.sandbox.process.ProcessContainerFactory` (isolation on, the sandbox
network as the server opens it unless ``--network none``) starts ``--cells`` idle 128 MB
Node.js containers — what the invoker's pool does to refill stem cells after a burst
(``invoker/poolbooks.py`` ``refill``: ``create(..., idle=True)``, at most
``REFILL_PARALLEL`` starting at once, the next one as soon as one listens) — with each
``--parallel`` value in turn, ``--rounds`` times (values taking turns, so the machine's
load changes hit each alike); the cells are destroyed after each round. Per round: cells
per second (wall time of the whole refill), CPU per cell (the whole process tree: a
cpuacct cgroup (v1) this script joins), the load average before and after. Prints a
table (medians per value) and writes ``bench/results/stem_refill.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from zygote_burst import CPUACCT, bench_factory, cpuacct_ns, own_cpuacct

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "stem_refill.json"
#: The longest a round may take (a bound on a saturated machine).
ROUND_TIMEOUT_S = 300.0


async def refill(factory: Any, kind: str, cells: int, parallel: int, network: bool,
                 tree: Path | None) -> dict[str, Any]:  # fmt: skip
    """Start ``cells`` idle containers, at most ``parallel`` at once; destroy them after."""
    slots = asyncio.Semaphore(parallel)
    started: list[Any] = []

    async def one() -> None:
        async with slots:
            started.append(await factory.create(kind, 128, network=network, idle=True))

    load0 = os.getloadavg()[0]
    cpu0 = cpuacct_ns(tree)
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(cells))), ROUND_TIMEOUT_S)
        wall = time.perf_counter() - t0
        cpu = cpuacct_ns(tree) - cpu0
    finally:
        await asyncio.gather(*(c.destroy() for c in started), return_exceptions=True)
    return {
        "parallel": parallel,
        "cells": cells,
        "wall_s": round(wall, 3),
        "cells_per_s": round(cells / wall, 1),
        "cpu_ms_per_cell": round(cpu / 1e6 / cells, 1) if tree is not None else None,
        "load_average_1min": [load0, os.getloadavg()[0]],
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    network = args.network == "egress"
    tree = own_cpuacct()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="squall-refill-") as tmp:
        factory = bench_factory(tmp, network)
        try:
            first = await factory.create(args.kind, 128, network=network)  # warms caches
            await first.destroy()
            for _ in range(args.rounds):
                for parallel in args.parallel:
                    await asyncio.sleep(args.gap)
                    rounds.append(
                        await refill(factory, args.kind, args.cells, parallel, network, tree)
                    )
                    print(rounds[-1], flush=True)
        finally:
            await factory.close()
            if tree is not None:
                (CPUACCT / "cgroup.procs").write_text(str(os.getpid()))
                tree.rmdir()
    return {"rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=40)
    parser.add_argument("--parallel", default="4,8", help="comma-separated starts at once")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds before each round")
    parser.add_argument("--network", choices=("egress", "none"), default="egress")
    parser.add_argument("--kind", default="nodejs:20", help="a Node.js kind of the manifest")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.parallel = [int(p) for p in args.parallel.split(",")]
    result = asyncio.run(main_async(args))
    loads = [x for r in result["rounds"] for x in r["load_average_1min"]]
    print(f"load average (1 min) {min(loads):.1f}-{max(loads):.1f}, median "
          f"{statistics.median(loads):.1f}")  # fmt: skip
    print(f"{'parallel':>8} {'cells/s (median; each)':<36} CPU ms per cell")
    summary = {}
    for parallel in args.parallel:
        mine = [r for r in result["rounds"] if r["parallel"] == parallel]
        rates = [r["cells_per_s"] for r in mine]
        cpus = [r["cpu_ms_per_cell"] for r in mine if r["cpu_ms_per_cell"] is not None]
        summary[parallel] = {
            "cells_per_s": statistics.median(rates),
            "cpu_ms_per_cell": statistics.median(cpus) if cpus else None,
        }
        rate = f"{statistics.median(rates):.1f} ({', '.join(map(str, rates))})"
        print(f"{parallel:>8} {rate:<36} {summary[parallel]['cpu_ms_per_cell']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {"parameters": {**vars(args), "output": str(args.output)}, **result,
              "summary": summary, "load": [min(loads), max(loads)]}  # fmt: skip
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
