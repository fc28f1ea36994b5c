"""A lone PostgreSQL activation write, the batcher idle: its latency, two trees in turns.

    .venv/bin/python bench/pg_lone_write.py --baseline /tmp/base-main [--writes 400]
        [--rounds 3] [--gap-ms 2] [--store postgresql://postgres@127.0.0.1:5432/test]

What a cluster invoker's started mark is at one activation at a time: a ``start``
(``WriteBatcher.write``) that finds the group commit's flusher ended (``--gap-ms``
after the last write: the flusher returns its connection one loop iteration after its
last commit). In a child process under uvloop (as the members run), the tree on
``PYTHONPATH``, a fresh schema of the machine's PostgreSQL: per write, the time from the
call to the statement's send (psycopg's cursor ``execute`` entered: the send follows in
the same step) and to the answer; medians and minimums in µs. The trees alternate, the
load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

NS = "guest"


async def child(store_url: str, writes: int, gap_s: float) -> dict[str, Any]:
    import psycopg
    from psycopg import AsyncCursor, AsyncRawCursor

    from squall.entities.activation import pending_record
    from squall.store.postgres import PostgresStore

    sent: list[float] = []
    # Record when a statement's execute begins (the send follows in the same step).
    for cls in (AsyncCursor, AsyncRawCursor):
        original = cls.execute

        async def execute(self: Any, *a: Any, _original: Any = original, **k: Any) -> Any:
            sent.append(time.perf_counter())
            return await _original(self, *a, **k)

        cls.execute = execute  # type: ignore[method-assign]

    schema = f"squall_lone_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    to_send: list[float] = []
    to_answer: list[float] = []
    try:
        async with await PostgresStore.open(store_url, schema=schema) as store:
            for i in range(writes + 50):
                record = pending_record(
                    namespace=NS, subject=NS, activation_id=uuid.uuid4().hex, name="noop",
                    path=f"{NS}/noop", version="0.0.1", accepted_ms=1_000,
                )  # fmt: skip
                await asyncio.sleep(gap_s)
                sent.clear()
                t0 = time.perf_counter()
                await store.activations.start(record)
                t1 = time.perf_counter()
                if i >= 50 and sent:  # after a warm-up
                    to_send.append((sent[0] - t0) * 1e6)
                    to_answer.append((t1 - t0) * 1e6)
    finally:
        with psycopg.connect(store_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return {
        "send_us_median": round(statistics.median(to_send), 1),
        "send_us_min": round(min(to_send), 1),
        "answer_us_median": round(statistics.median(to_answer), 1),
        "answer_us_min": round(min(to_answer), 1),
        "writes": len(to_send),
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another source tree, in turns")
    parser.add_argument("--writes", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap-ms", type=float, default=2.0)
    parser.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        print(json.dumps(uvloop.run(child(args.store, args.writes, args.gap_ms / 1000))))
        return
    here = Path(__file__).resolve().parent.parent
    trees = [("this", here)] + ([("baseline", args.baseline)] if args.baseline else [])
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
    print(f"{'round':>5} {'tree':<9} {'send med':>9} {'send min':>9} "
          f"{'answer med':>10} {'answer min':>10} {'load':>5}")  # fmt: skip
    for round_ in range(1, args.rounds + 1):
        for label, tree in trees if round_ % 2 else trees[::-1]:
            done = subprocess.run(
                [sys.executable, __file__, "--child", "--store", args.store,
                 "--writes", str(args.writes), "--gap-ms", str(args.gap_ms)],
                env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                text=True, check=True, timeout=600,
            )  # fmt: skip
            r = json.loads(done.stdout)
            print(f"{round_:>5} {label:<9} {r['send_us_median']:>9} {r['send_us_min']:>9} "
                  f"{r['answer_us_median']:>10} {r['answer_us_min']:>10} {r['load']:>5.1f}",
                  flush=True)  # fmt: skip
    print(f"load average after:  {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
