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

``--baseline DIR`` (another checkout, e.g. ``/work/main``) compares two versions of the
cluster in one run instead: ``--rounds`` rounds, each a cluster of DIR's tree then one of
this tree (members run from the tree: ``-m`` puts the working directory first), measuring
the Node.js no-op's B1 and B3 plus the CPU time the members (and the machine's
nats-server, if it is found, and its PostgreSQL's processes) used per invoke during B3 —
a figure that holds up when other work shares the cores, where requests/s does not —
and the read- and write-side system calls per invoke of the members and nats-server
(``/proc/<pid>/io``: how many writes the bus coalesced, how often nats-server was woken),
which follow the load less. Load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from invoke_latency import (  # noqa: E402
    REPO,
    UNTHROTTLED,
    create_actions,
    load,
    measure,
    own_server,
    ratio,
    report_head,
    table,
    targets,
)

from squall.cli.local_cluster import LocalCluster  # noqa: E402

RESULTS = HERE / "results" / "cluster_bench.json"


def measure_cluster(
    args: argparse.Namespace,
    node: str,
    measure_on: Callable[[str, str, LocalCluster], dict[str, Any]] | None = None,
) -> dict[str, Any]:
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
                if measure_on is not None:
                    return measure_on(local.controllers[0].url, local.auth, local)
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


def cpu_ms(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def syscalls(pid: int) -> tuple[int, int]:
    """``pid``'s read-side and write-side system calls so far (``/proc/<pid>/io``: ``read``,
    ``readv``, ``write``, ``writev`` and the like; not ``sendto``/``recvfrom``, which
    psycopg uses). Deterministic where CPU time follows the load: how many writes the bus
    coalesced, how often a process was woken to read."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["syscr"]), int(fields["syscw"])


def nats_server_pid(url: str) -> int | None:
    """The pid of the server listening on ``url``'s port (``ss``), if it can be found."""
    port = urlsplit(url).port or 4222
    found = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    )
    match = re.search(r"pid=(\d+)", found.stdout)
    return int(match.group(1)) if match else None


def postgres_pids() -> list[int]:
    """Every process of the machine's PostgreSQL (its user's): the server is shared, so
    their CPU over a run includes anything else using it meanwhile."""
    found = subprocess.run(["pgrep", "-u", "postgres"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def total_cpu_ms(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        # Ended meanwhile (a backend whose client disconnected): not counted.
        with contextlib.suppress(OSError):
            total += cpu_ms(pid)
    return total


def measure_ab_round(args: argparse.Namespace, node: str) -> dict[str, Any]:
    """B1 and B3 of the Node.js no-op, with CPU per invoke during B3."""

    def on(apihost: str, auth: str, local: LocalCluster) -> dict[str, Any]:
        name = create_actions(apihost, auth, str(os.getpid()))["nodejs"]
        request = targets(apihost, auth, {"nodejs": name})["nodejs"]
        load(node, {**request, "connections": 1, "requests": min(200, args.requests)})
        load(node, {**request, "connections": args.connections, "durationMs": 2000})
        latency = load(node, {**request, "connections": 1, "requests": args.requests})
        pids = {m.name: m.process.pid for m in local.members.values() if m.process}
        nats = nats_server_pid(args.nats)
        if nats is not None:
            pids["nats-server"] = nats
        before = {name: cpu_ms(pid) for name, pid in pids.items()}
        calls_before = {name: syscalls(pid) for name, pid in pids.items()}
        postgres_before = total_cpu_ms(postgres_pids())
        duration_ms = int(args.duration * 1000)
        throughput = load(
            node, {**request, "connections": args.connections, "durationMs": duration_ms}
        )
        served = max(1, throughput["requests"])
        per_invoke = {n: round((cpu_ms(pid) - before[n]) / served, 3) for n, pid in pids.items()}
        per_invoke["members"] = round(
            sum(v for n, v in per_invoke.items() if n != "nats-server"), 3
        )
        calls = {n: syscalls(pid) for n, pid in pids.items()}
        reads = {n: (calls[n][0] - calls_before[n][0]) / served for n in pids}
        writes = {n: (calls[n][1] - calls_before[n][1]) / served for n in pids}
        syscalls_per_invoke = {
            "members_reads": round(sum(v for n, v in reads.items() if n != "nats-server"), 2),
            "members_writes": round(sum(v for n, v in writes.items() if n != "nats-server"), 2),
            "nats_reads": round(reads.get("nats-server", float("nan")), 2),
            "nats_writes": round(writes.get("nats-server", float("nan")), 2),
        }
        # Processes that ended during the run are missed (their CPU is not counted).
        per_invoke["postgres"] = round(
            (total_cpu_ms(postgres_pids()) - postgres_before) / served, 3
        )
        return {
            "p50_ms": latency["latencyMs"]["p50"],
            "p99_ms": latency["latencyMs"]["p99"],
            "rps": throughput["rps"],
            "errors": latency["errors"] + throughput["errors"],
            "cpu_ms_per_invoke": per_invoke,
            "syscalls_per_invoke": syscalls_per_invoke,
        }

    return measure_cluster(args, node, on)


def main_ab(args: argparse.Namespace, node: str) -> None:
    started = time.time()
    here = Path.cwd()
    load_before = Path("/proc/loadavg").read_text().strip()
    rounds: list[dict[str, Any]] = []
    for i in range(args.rounds):
        for label, tree in (("baseline", args.baseline), ("this", REPO)):
            os.chdir(tree)  # the members run `python -m squall...` from here
            try:
                result = measure_ab_round(args, node)
            finally:
                os.chdir(here)
            result.update(round=i + 1, tree=label, load=os.getloadavg()[0])
            rounds.append(result)
            cpu = result["cpu_ms_per_invoke"]
            calls = result["syscalls_per_invoke"]
            print(f"round {i + 1} {label:<8} p50 {result['p50_ms']:7.2f} ms  "
                  f"p99 {result['p99_ms']:7.2f} ms  c={args.connections} {result['rps']:7.1f}/s  "
                  f"CPU/invoke members {cpu['members']:.2f} ms, nats "
                  f"{cpu.get('nats-server', float('nan')):.2f} ms, postgres "
                  f"{cpu['postgres']:.2f} ms  (load {result['load']:.1f})\n"
                  f"        system calls/invoke: members {calls['members_reads']:.2f} reads "
                  f"{calls['members_writes']:.2f} writes, nats {calls['nats_reads']:.2f} reads "
                  f"{calls['nats_writes']:.2f} writes",
                  flush=True)  # fmt: skip
    load_after = Path("/proc/loadavg").read_text().strip()
    print(f"load average before: {load_before}\nload average after:  {load_after}")
    report = {
        **report_head("cluster_bench_ab", started, "started", node),
        "parameters": {
            "baseline": str(args.baseline),
            "rounds": args.rounds,
            "requests": args.requests,
            "duration_s": args.duration,
            "connections": args.connections,
        },
        "load_before": load_before,
        "load_after": load_after,
        "results": rounds,
    }
    # The A/B's own default name, unless --output named a file.
    output = args.output if args.output != RESULTS else RESULTS.with_name("cluster_bench_ab.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests for (a)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds for (b)")
    parser.add_argument("--connections", type=int, default=50, help="connections for (b)")
    parser.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS,
        help="JSON report (default bench/results/cluster_bench.json; with --baseline "
        "cluster_bench_ab.json)",
    )
    parser.add_argument("--baseline", type=Path, help="another checkout: compare its cluster")
    parser.add_argument("--rounds", type=int, default=2, help="rounds with --baseline")
    args = parser.parse_args()
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for bench/load.js")
    if args.baseline is not None:
        main_ab(args, node)
        return
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
