"""CPU per activation of the PostgreSQL activation store's writes, two trees in turns.

    .venv/bin/python bench/postgres_batch_cost.py --other /tmp/base [--activations 1200]
        [--concurrency 1 2 4 8 50] [--rounds 2] [--store postgresql://postgres@127.0.0.1:5432/test]

What a cluster invoker writes per activation — ``start`` (the started mark), then the
final record (``put``) — done by ``--concurrency`` activations at once, each one after
the other, in a child process (``--child``, the tree on ``PYTHONPATH``) with a store of
its own in a fresh schema of the machine's PostgreSQL (dropped at the end). After a
warm-up of the same size, it measures ``--activations`` activations: the child's CPU
(user + system: the store, psycopg, the event loop) and the CPU of every process of the
machine's PostgreSQL (its user's: anything else using the server meanwhile is counted
too), each per activation, and the writes per commit the group commit achieved
(``WriteBatcher.written / commits``). At one at a time every write is its own statement;
at a few at once (a cluster invoker under load) the group commit batches them.

This tree and ``--other`` run in turns, per concurrency, ``--rounds`` times; the load
average is recorded with every figure. JSON to ``bench/results/postgres_batch_cost.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "postgres_batch_cost.json"
NS = "guest"


def postgres_cpu_ms() -> float:
    """CPU time so far of every process of the machine's PostgreSQL (its user's), in ms."""
    found = subprocess.run(["pgrep", "-u", "postgres"], capture_output=True, text=True)
    total = 0
    for pid in found.stdout.split():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        total += int(fields[11]) + int(fields[12])
    return total * 1000 / os.sysconf("SC_CLK_TCK")


def own_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000


async def child(store_url: str, activations: int, concurrency: int) -> dict[str, Any]:
    import psycopg

    from squall.entities.activation import ActivationResponse, final_record, pending_record
    from squall.store.postgres import PostgresStore

    schema = f"squall_pgcost_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        async with await PostgresStore.open(store_url, schema=schema) as store:
            store_activations = store.activations

            async def one() -> None:
                activation_id = uuid.uuid4().hex
                pending = pending_record(
                    namespace=NS, subject=NS, activation_id=activation_id, name="noop",
                    path=f"{NS}/noop", version="0.0.1", accepted_ms=1_000,
                )  # fmt: skip
                if not await store_activations.start(pending):
                    raise SystemExit(f"start of {activation_id} lost")
                await store_activations.put(
                    final_record(
                        namespace=NS, name="noop", subject=NS, activation_id=activation_id,
                        start=1_000, end=1_002, response=ActivationResponse.ok({}),
                        annotations=[{"key": "path", "value": f"{NS}/noop"}],
                    )
                )  # fmt: skip

            async def run(count: int) -> int:
                each = max(1, count // concurrency)

                async def worker() -> None:
                    for _ in range(each):
                        await one()

                await asyncio.gather(*(worker() for _ in range(concurrency)))
                return each * concurrency

            await run(activations)  # warm-up: connections, prepared statements
            batcher = getattr(store_activations, "_batcher", None)
            commits0 = getattr(batcher, "commits", 0)
            written0 = getattr(batcher, "written", 0)
            mine, server, wall = own_cpu_ms(), postgres_cpu_ms(), time.perf_counter()
            done = await run(activations)
            mine, server = own_cpu_ms() - mine, postgres_cpu_ms() - server
            wall = time.perf_counter() - wall
            commits = getattr(batcher, "commits", 0) - commits0
            written = getattr(batcher, "written", 0) - written0
    finally:
        with psycopg.connect(store_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return {
        "concurrency": concurrency,
        "activations": done,
        "client_cpu_ms_per_activation": round(mine / done, 3),
        "postgres_cpu_ms_per_activation": round(server / done, 3),
        "activations_per_s": round(done / wall, 1),
        "writes_per_commit": round(written / commits, 2) if commits else None,
        "load": os.getloadavg()[0],
    }


def measure(tree: Path, args: argparse.Namespace, concurrency: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", "--store", args.store,
         "--activations", str(args.activations), "--concurrency", str(concurrency)],
        env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
        check=False, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the child of {tree} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, help="another source tree, measured in turns")
    parser.add_argument("--activations", type=int, default=1200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 50])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop  # as the members run

        result = uvloop.run(child(args.store, args.activations, args.concurrency[0]))
        print(json.dumps(result))
        return
    started = time.time()
    load_before = Path("/proc/loadavg").read_text().strip()
    trees = [("this", REPO)] + ([("other", args.other)] if args.other else [])
    results: list[dict[str, Any]] = []
    print(f"{'round':>5} {'tree':<6} {'conc':>4} {'client ms':>10} {'server ms':>10} "
          f"{'act/s':>8} {'writes/commit':>13} {'load':>5}")  # fmt: skip
    for round_ in range(1, args.rounds + 1):
        for concurrency in args.concurrency:
            # Alternate which tree goes first, so neither always gets the quieter turn.
            order = trees if round_ % 2 else trees[::-1]
            for label, tree in order:
                r = {"round": round_, "tree": label, **measure(tree, args, concurrency)}
                results.append(r)
                per_commit = r["writes_per_commit"]
                print(f"{round_:>5} {label:<6} {concurrency:>4} "
                      f"{r['client_cpu_ms_per_activation']:>10.3f} "
                      f"{r['postgres_cpu_ms_per_activation']:>10.3f} "
                      f"{r['activations_per_s']:>8.0f} "
                      f"{'-' if per_commit is None else per_commit:>13} {r['load']:>5.1f}",
                      flush=True)  # fmt: skip
    load_after = Path("/proc/loadavg").read_text().strip()
    print(f"load average before: {load_before}\nload average after:  {load_after}")
    report = {
        "benchmark": "postgres_batch_cost",
        "started": started,
        "seconds": round(time.time() - started, 1),
        "parameters": {**vars(args), "other": str(args.other)},
        "load_average": {"before": load_before, "after": load_after},
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
