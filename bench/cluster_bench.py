"""B1 and B3 against the cluster shape, beside standalone, in one run.

    .venv/bin/python bench/cluster_bench.py [--requests 2000] [--duration 10] [--connections 50]
        [--store postgresql://postgres@127.0.0.1:5432/test] [--nats nats://127.0.0.1:4222]

Starts, one after the other (never both at once, so they do not share the cores):

- ``standalone``: a ``squall standalone`` of its own (SQLite, in-process bus);
- ``cluster``: ``squall.cli.local_cluster`` with 2 controllers and 2 invokers on this
  machine, over PostgreSQL (a fresh schema, dropped at the end) and NATS JetStream (a
  unique stream prefix, streams deleted at the end), measured through controller 0.

On each it runs ``invoke_latency.measure``: (a) B1 — one keep-alive connection, warm
blocking no-op invokes one after another (p50/p90/p99), and (b) B3 — ``--connections``
connections in a closed loop (requests/s), with ``GET /api/v1`` as the baseline of the
same server. It prints both tables and the cluster/standalone ratios, and writes
``bench/results/cluster_bench.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from invoke_latency import (  # noqa: E402
    UNTHROTTLED,
    measure,
    own_server,
    ratio,
    report_head,
    table,
)

from squall.cli.local_cluster import LocalCluster  # noqa: E402

RESULTS = HERE / "results" / "cluster_bench.json"


def measure_cluster(args: argparse.Namespace, node: str) -> dict[str, Any]:
    import psycopg

    schema = f"squall_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    with psycopg.connect(args.store, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        with tempfile.TemporaryDirectory(prefix="squall-cbench-") as tmp:
            store_url = f"{args.store}?options=-csearch_path%3D{schema}"
            local = LocalCluster(
                Path(tmp),
                store_url=store_url,
                bus_url=f"{args.nats}?prefix={prefix}",
                controllers=2,
                invokers=2,
                env={
                    **UNTHROTTLED,
                    "SQUALL_LOG_LEVEL": "warning",
                    "SQUALL_KEEP_WARM_S": "600",
                },
            )
            try:
                local.start()
                return measure(args, local.controllers[0].url, local.auth, node)
            finally:
                local.close()
                asyncio.run(delete_streams(args.nats, prefix))
    finally:
        with psycopg.connect(args.store, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def delete_streams(url: str, prefix: str) -> None:
    from squall.bus.nats import NatsBus

    bus = await NatsBus.connect(url, prefix=prefix)
    try:
        await bus.delete_streams()
    finally:
        await bus.close()


def compare(standalone: dict[str, Any], cluster: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for target in ("nodejs", "python"):
        s, c = standalone[target], cluster[target]
        out[target] = {
            "latency_p50_cluster_over_standalone": ratio(
                c["latency"]["latencyMs"]["p50"], s["latency"]["latencyMs"]["p50"]
            ),
            "throughput_cluster_over_standalone": ratio(
                c["throughput"]["rps"], s["throughput"]["rps"]
            ),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests for (a)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds for (b)")
    parser.add_argument("--connections", type=int, default=50, help="connections for (b)")
    parser.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for bench/load.js")
    started = time.time()
    with own_server() as (apihost, auth):
        standalone = measure(args, apihost, auth, node)
    cluster = measure_cluster(args, node)
    ratios = compare(standalone, cluster)
    print("== standalone (SQLite, in-process bus, 1 process)")
    print(table(standalone, args))
    print("\n== cluster (PostgreSQL, NATS JetStream, 2 controllers + 2 invokers), via controller 0")
    print(table(cluster, args))
    print("\n== cluster / standalone")
    for target, r in ratios.items():
        print(f"{target:<8} latency p50 x{r['latency_p50_cluster_over_standalone']}"
              f"   throughput x{r['throughput_cluster_over_standalone']}")  # fmt: skip
    report = {
        **report_head("cluster_bench", started, "started", node),
        "parameters": {
            "requests": args.requests,
            "duration_s": args.duration,
            "connections": args.connections,
        },
        "results": {"standalone": standalone, "cluster": cluster, "ratios": ratios},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
