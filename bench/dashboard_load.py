"""B7: how long the dashboard's data takes for a namespace with 100k activations.

    .venv/bin/python bench/dashboard_load.py [--activations 100000] [--repeat 5]
        [--providers sqlite,postgres] [--pg postgresql://postgres@127.0.0.1:5432/test]

For each store provider (SQLite in a temporary file; PostgreSQL in a schema of its own,
dropped at the end, skipped when unreachable) it stores ``--activations`` records of one
namespace spread over the last 24 hours (20 actions; 1 in 7 a cold start; 1 in 20 an
application error; bodies with a result and a log line, as real records have) plus 10%
as many of another namespace, then measures, ``--repeat`` times each, median and best:

- ``summary <window>``: what ``GET /dashboard/api/summary`` does for the 15-minute, 1-hour,
  6-hour and 24-hour windows (``ActivationStore.stats`` per minute, and the JSON
  encoding of the answer); the 24-hour one covers all 100k records;
- ``list``: the activations list's first page (50 newest);
- ``full scan`` (the baseline, same run): reading every record of the 24 hours and
  summarising them in Python, which is what the figures would cost without the indexed
  columns; the summary rows carry their ratio to it.

It prints a table, records the load average before and after (the machine may be shared),
and writes JSON to ``bench/results/dashboard_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from squall.controller.ui import data
from squall.entities.activation import Activation, from_builtins
from squall.store.contracts import ActivationQuery, Store
from squall.store.stats import summarize

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "dashboard_load.json"
NS = "bench"
OTHER = "neighbour"
DAY_MS = 24 * 3600 * 1000
ACTIONS = 20


def record(i: int, namespace: str, now: int) -> Activation:
    start = now - (i * 7919) % DAY_MS  # spread over the day, deterministic
    name = f"action{i % ACTIONS}"
    duration = 1 + (i * 31) % 400
    annotations: list[dict[str, Any]] = [
        {"key": "path", "value": f"{namespace}/{name}"},
        {"key": "waitTime", "value": 1 + i % 5},
        {"key": "kind", "value": "nodejs:20"},
        {"key": "timeout", "value": False},
        {"key": "limits", "value": {"concurrency": 1, "logs": 10, "memory": 256, "timeout": 60000}},
    ]
    if i % 7 == 0:
        annotations.append({"key": "initTime", "value": 20 + i % 60})
    failed = i % 20 == 0
    return from_builtins(
        {
            "namespace": namespace,
            "name": name,
            "subject": namespace,
            "activationId": f"{i:08x}{uuid.uuid4().hex[:24]}",
            "start": start,
            "end": start + duration,
            "duration": duration,
            "version": "0.0.1",
            "publish": False,
            "response": {
                "status": "application error" if failed else "success",
                "statusCode": 1 if failed else 0,
                "success": not failed,
                "result": {"error": "bad input"} if failed else {"greeting": f"Hello {i}", "n": i},
            },
            "logs": [f"2024-01-01T00:00:00.000000Z stdout: handled request {i}"],
            "annotations": annotations,
        }
    )


async def fill(store: Store, count: int, now: int) -> float:
    """Store the records through the provider's own ``put`` (batched by ``gather``);
    returns the seconds it took."""
    began = time.perf_counter()
    records = [record(i, NS, now) for i in range(count)]
    records += [record(i, OTHER, now) for i in range(count // 10)]
    for first in range(0, len(records), 500):
        await asyncio.gather(*(store.activations.put(r) for r in records[first : first + 500]))
    return time.perf_counter() - began


async def timed(work: Callable[[], Awaitable[object]], repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        await work()
        runs.append((time.perf_counter() - began) * 1000)
    return {"median_ms": statistics.median(runs), "best_ms": min(runs)}


async def measure(store: Store, count: int, repeat: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    fill_s = await fill(store, count, now)
    figures: dict[str, Any] = {"fill_s": fill_s, "records": count + count // 10}
    acts = store.activations

    async def full_scan() -> object:
        records = await acts.list(ActivationQuery(NS, since=now - DAY_MS, limit=None))
        rows = []
        for r in records:
            init = r.annotation("initTime")
            duration = r.duration if isinstance(r.duration, int) else None
            rows.append((r.start, r.name, r.response.status, duration, init))
        return summarize(rows, data.MINUTE_MS)

    figures["full scan"] = await timed(full_scan, max(1, repeat // 2))
    for minutes in data.WINDOWS:

        async def summary(minutes: int = minutes) -> object:
            return orjson.dumps(await data.summary(acts, NS, now, minutes))

        figures[f"summary {minutes} min"] = await timed(summary, repeat)
    answer = await data.summary(acts, NS, now, 1440)
    figures["summary 1440 min"]["total"] = answer["total"]

    async def first_page() -> object:
        listing = await data.activations(acts, NS, name=None, status=None, since=None, upto=None)
        return orjson.dumps(listing)

    figures["list"] = await timed(first_page, repeat)
    return figures


async def open_provider(name: str, home: Path, dsn: str) -> tuple[Store, Callable[[], None]]:
    if name == "sqlite":
        from squall.store.sqlite import SqliteStore

        return await SqliteStore.open(home / "squall.db"), lambda: None
    from squall.store.postgres import PostgresStore

    schema = f"squall_bench_{uuid.uuid4().hex[:10]}"
    store = await PostgresStore.open(dsn, schema=schema, max_size=4)

    def drop() -> None:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    return store, drop


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in args.providers.split(","):
        with tempfile.TemporaryDirectory(prefix="squall-bench-") as tmp:
            try:
                store, drop = await open_provider(name, Path(tmp), args.pg)
            except Exception as exc:  # an unreachable PostgreSQL: say so, go on
                print(f"{name}: skipped ({exc})")
                continue
            try:
                results[name] = await measure(store, args.activations, args.repeat)
            finally:
                await store.close()
                drop()
    return results


def table(results: dict[str, Any]) -> str:
    lines = [f"{'provider':<10} {'query':<18} {'median ms':>10} {'best ms':>9} {'/full scan':>10}"]
    for provider, figures in results.items():
        base = figures["full scan"]["median_ms"]
        for query, f in figures.items():
            if not isinstance(f, dict):
                continue
            ratio = f"{f['median_ms'] / base:.3f}" if query != "full scan" else "1"
            times = f"{f['median_ms']:>10.1f} {f['best_ms']:>9.1f}"
            lines.append(f"{provider:<10} {query:<18} {times} {ratio:>10}")
        lines.append(
            f"{provider:<10} {'(fill)':<18} {figures['records']} records stored in "
            f"{figures['fill_s']:.1f} s"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--activations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--providers", default="sqlite,postgres")
    parser.add_argument(
        "--pg",
        default=os.environ.get("SQUALL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = asyncio.run(run(args))
    load_after = os.getloadavg()
    print(table(results))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "bench": "dashboard_load",
                "activations": args.activations,
                "repeat": args.repeat,
                "load_average": {"before": load_before, "after": load_after},
                "results": results,
            },
            indent=2,
        )
    )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
