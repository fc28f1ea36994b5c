"""How many SQLite commits the activation store's group commit makes per write, by how
many quiet flushes it waits for before committing a write at once.

    .venv/bin/python bench/group_commit_policy.py [--writes 4000] [--concurrency 1 10 50]

For each concurrency and each ``QUIET_FLUSHES`` (1, 2, 4, and "never": every write joins
a batch, as before the at-once path), that many tasks write against a real SQLite store
in a temporary directory, each a ``start`` mark then a final ``put`` per activation with
a random number (0 to 11, seeded) of loop iterations before each write, as activations of
a loaded invoker spread over iterations. Counts the transactions from SQLite's statement
trace (a ``BEGIN`` for a batch, an ``INSERT`` outside one for a write committed alone)
and prints commits per write and the process CPU per activation (which depends on the
load, recorded). The commit counts depend only on the seeded schedule, not on the load.
JSON to ``bench/results/group_commit_policy.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from invoke_latency import write_report

import squall.store.sqlite_activations as activations_module
from squall.entities.activation import Activation, ActivationResponse
from squall.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "group_commit_policy.json"
NEVER = 1 << 30
POLICIES = (1, 2, 4, NEVER)


def _record(n: int) -> Activation:
    return Activation(
        activation_id=f"{n:032x}",
        namespace="guest",
        name="a",
        start=1_000 + n,
        response=ActivationResponse.ok({}),
        annotations=[],
    )


def _commits(statements: list[str]) -> int:
    commits, in_batch = 0, False
    for statement in statements:
        if statement.startswith("BEGIN"):
            commits, in_batch = commits + 1, True
        elif statement.startswith("COMMIT"):
            in_batch = False
        elif statement.startswith("INSERT") and not in_batch:
            commits += 1
    return commits


async def measure(quiet: int, concurrency: int, per_task: int) -> dict[str, float]:
    activations_module.QUIET_FLUSHES = quiet
    with tempfile.TemporaryDirectory(prefix="squall-gcp-") as tmp:
        store = await SqliteStore.open(Path(tmp) / "s.db")
        statements: list[str] = []
        store._db.conn.set_trace_callback(statements.append)
        schedule = random.Random(1)
        ids = iter(range(1 << 40))

        async def iterations() -> None:
            for _ in range(schedule.randrange(12)):
                await asyncio.sleep(0)

        async def activations() -> None:
            for _ in range(per_task):
                record = _record(next(ids))
                await iterations()
                await store.activations.start(record)
                await iterations()
                await store.activations.put(record)

        cpu = time.process_time()
        await asyncio.gather(*(activations() for _ in range(concurrency)))
        cpu = time.process_time() - cpu
        store._db.conn.set_trace_callback(None)
        await store.close()
    done = concurrency * per_task
    return {
        "commits_per_write": round(_commits(statements) / (2 * done), 3),
        "cpu_us_per_activation": round(cpu / done * 1e6, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for concurrency in args.concurrency:
        for quiet in POLICIES:
            name = "never" if quiet == NEVER else str(quiet)
            row = await measure(quiet, concurrency, max(1, args.writes // 2 // concurrency))
            results[f"c={concurrency} quiet={name}"] = row
            commits, cpu = row["commits_per_write"], row["cpu_us_per_activation"]
            print(f"c={concurrency:<4} QUIET_FLUSHES={name:<6} commits/write {commits:<7} "
                  f"CPU µs/activation {cpu}")  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not (2 <= args.writes <= 200_000 and all(1 <= c <= 1000 for c in args.concurrency)):
        parser.error("2 ≤ --writes ≤ 200000, 1 ≤ --concurrency ≤ 1000")
    started = time.time()
    load = [os.getloadavg()[0]]
    uvloop.install()
    results = asyncio.run(run(args))
    load.append(os.getloadavg()[0])
    print(f"load average {load[0]:.1f} → {load[1]:.1f}")
    write_report("group_commit_policy", started, args, load_average=load, results=results)


if __name__ == "__main__":
    main()
