"""The SQLite store's cost per activation in instructions and WAL frames, two trees.

    .venv/bin/python bench/store_cost.py --other /tmp/base [--activations 400]

For each source tree (this one and ``--other``, in turns) and each flow, a child process
(``--child``, the tree on ``PYTHONPATH``, ``PYTHONHASHSEED=0``) opens a SQLite store in a
temporary directory (as standalone does: WAL, group commit; the checkpointer thread
stopped, so the WAL only grows and its size counts the frames), writes 100 activations
to warm up, then ``--activations`` more; it runs under ``valgrind --tool=callgrind``,
once with ``--activations`` and once with none, and the difference divided by the count
is the instructions per activation (the store, ``sqlite3`` and SQLite, the event loop's
share; no start-up). Flows, in the order the platform writes:

- ``blocking``: ``start`` (the invoker's mark), then the final record, one activation
  at a time (each write its own commit);
- ``blocking x100``: the same with 100 activations at once (group commit);
- ``non-blocking``: the pending record with its message (1 KB), ``start``, the final
  record, one at a time.

Instruction and frame counts do not depend on the machine's load (the load average is
recorded all the same). A frame is one b-tree page a commit changed, written to the WAL
(two ``pwrite`` calls) and later copied by a checkpoint. JSON to
``bench/results/store_cost.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "store_cost.json"
WARM_UP = 100
FLOWS = ("blocking", "blocking x100", "non-blocking")


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def child(flow: str, count: int) -> None:
    """Run ``flow`` for WARM_UP + ``count`` activations; print the WAL frames of the
    ``count`` (as JSON)."""
    from started_point import _final, _message, _pending

    from squall.store.sqlite import SqliteStore

    async def blocking(a: Any, activation_id: str) -> None:
        await a.start(_pending(activation_id))
        await a.put(_final(activation_id))

    async def nonblocking(a: Any, activation_id: str) -> None:
        await a.put_pending(_pending(activation_id), _message(activation_id))
        await a.start(_pending(activation_id))
        await a.put(_final(activation_id))

    run = nonblocking if flow == "non-blocking" else blocking
    at_once = 100 if flow == "blocking x100" else 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "squall.db"
        store = await SqliteStore.open(path)
        checkpointer = store._db.checkpointer
        if checkpointer is not None:
            checkpointer.stop()  # the WAL only grows: its size counts the frames
        wal = Path(f"{path}-wal")
        frames = [0, 0]
        try:
            for phase, n in enumerate((WARM_UP, count)):
                ids = [uuid.UUID(int=(phase << 64) + i).hex for i in range(n)]
                before = size(wal)
                for i in range(0, n, at_once):
                    await asyncio.gather(*(run(store.activations, a) for a in ids[i : i + at_once]))
                frames[phase] = size(wal) - before
        finally:
            await store.close()
    page = 4096 + 24  # a frame: its header and the page
    print(json.dumps({"frames": frames[1] / page}))


def instructions(tree: Path, flow: str, count: int) -> tuple[int, float]:
    """(instructions, WAL frames) of one child run under callgrind."""
    env = {**os.environ, "PYTHONPATH": f"{tree}:{HERE}", "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            flow,
            "--activations",
            str(count),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    collected = re.search(r"Collected : (\d+)", done.stderr)
    if collected is None:
        raise SystemExit(f"callgrind printed no total:\n{done.stderr[-2000:]}")
    return int(collected.group(1)), float(json.loads(done.stdout.splitlines()[-1])["frames"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, help="the other source tree")
    parser.add_argument("--activations", type=int, default=400)
    parser.add_argument("--child", choices=FLOWS, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child, args.activations))
        return
    if args.other is None:
        parser.error("--other is required")
    trees = {"this": HERE.parent, "other": args.other.resolve()}
    started = time.time()
    load = [os.getloadavg()[0]]
    results: dict[str, dict[str, dict[str, float]]] = {flow: {} for flow in FLOWS}
    for i, flow in enumerate(FLOWS):
        for name in list(trees) if i % 2 == 0 else list(reversed(trees)):
            full, frames = instructions(trees[name], flow, args.activations)
            base, _ = instructions(trees[name], flow, 0)
            results[flow][name] = {
                "instructions": round((full - base) / args.activations),
                "frames": round(frames / args.activations, 2),
            }
    load.append(os.getloadavg()[0])
    print(
        f"SQLite store, per activation ({args.activations} after {WARM_UP} to warm up),"
        f" load average {load[0]:.1f} → {load[1]:.1f}"
    )
    print(f"{'flow':<15}{'tree':<7}{'instructions':>14}{'WAL frames':>12}{'ratio':>8}")
    for flow, by_tree in results.items():
        for name, r in by_tree.items():
            ratio = r["instructions"] / by_tree["other"]["instructions"]
            print(f"{flow:<15}{name:<7}{r['instructions']:>14}{r['frames']:>12}{ratio:>8.2f}")
    report = {
        "benchmark": "store_cost",
        "started": started,
        "parameters": {**vars(args), "other": str(args.other)},
        "load_average": load,
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
