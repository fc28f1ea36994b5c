"""Event-loop stalls of ``squall standalone`` at one connection, measured in the server.

    .venv/bin/python bench/loop_stalls.py [--requests 3000] [--other /work/main]

Wall-clock latency on a shared two-core machine mostly measures the load; this measures
what the server's event loop waits for or spends, independently of it. The standalone
runs under this file's ``--serve`` wrapper, which adds, inside the server process:

- around every commit of the activation store's group commit
  (``SqliteActivationStore.flush``): wall time, CPU time and run-queue wait of the
  thread (``/proc/thread-self/schedstat``); ``blocked = wall - CPU - run-queue wait`` is
  time spent waiting for I/O or a lock (an fsync), which load does not explain;
- ``gc.callbacks``: every collection's generation and CPU time (the loop does nothing
  else meanwhile).

The driver creates a no-op action (Node.js and Python), warms it, loads it with 50
connections for ``--warm-c50`` seconds (several containers, as after a throughput run),
then sends ``--requests`` blocking invokes over one connection (``--connections``: more)
with ``bench/load.js`` and counts the events of that window only. With ``--other DIR``
a second source tree (e.g. the main checkout) is measured too, in turns. Prints a table and writes
``bench/results/loop_stalls.json``. Only loopback is loaded.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import runpy
import sys
import time
from pathlib import Path
from typing import Any

EVENTS_ENV = "SQUALL_BENCH_STALL_EVENTS"
BLOCKED_MS = 2.0  # commits recorded above this blocked time


def _serve() -> None:
    """Run ``squall.cli.main`` (the arguments after ``--serve``) with the probes above,
    appending JSON events to the file named by ``SQUALL_BENCH_STALL_EVENTS``."""
    out = open(os.environ[EVENTS_ENV], "a", buffering=1)  # noqa: SIM115 - lives with the process

    def emit(**event: Any) -> None:
        out.write(json.dumps({"t": time.monotonic(), **event}) + "\n")

    started: dict[str, float] = {}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started["gc"] = time.thread_time()
        elif "gc" in started:
            emit(
                kind="gc", gen=info["generation"], cpu_ms=(time.thread_time() - started["gc"]) * 1e3
            )

    gc.callbacks.append(on_gc)

    sys.path.insert(0, os.getcwd())  # the tree own_server runs in, not this script's
    from squall.store import sqlite_activations

    flush = sqlite_activations.SqliteActivationStore.flush

    def run_queue_ns() -> int:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])

    def timed_flush(self: sqlite_activations.SqliteActivationStore) -> None:
        writes = len(self._pending)
        queued, wall, cpu = run_queue_ns(), time.perf_counter(), time.thread_time()
        try:
            flush(self)
        finally:
            wall_ms = (time.perf_counter() - wall) * 1e3
            cpu_ms = (time.thread_time() - cpu) * 1e3
            queued_ms = (run_queue_ns() - queued) / 1e6
            emit(
                kind="commit",
                writes=writes,
                wall_ms=wall_ms,
                cpu_ms=cpu_ms,
                blocked_ms=wall_ms - cpu_ms - queued_ms,
            )

    sqlite_activations.SqliteActivationStore.flush = timed_flush  # type: ignore[method-assign]

    sys.argv = ["squall", *sys.argv[sys.argv.index("--serve") + 1 :]]
    runpy.run_module("squall.cli.main", run_name="__main__", alter_sys=True)


def _measure(source: Path, args: argparse.Namespace, node: str) -> dict[str, Any]:
    import tempfile

    import invoke_latency as il

    with tempfile.TemporaryDirectory(prefix="squall-stalls-") as tmp:
        events = Path(tmp) / "events.jsonl"
        # The server runs under this script's --serve probe (same CLI, same arguments).
        probe = [sys.executable, str(Path(__file__).resolve()), "--serve"]
        with il.own_server(source, launcher=probe, env={EVENTS_ENV: str(events)}) as (
            apihost,
            auth,
        ):
            names = il.create_actions(apihost, auth, f"{os.getpid()}")
            request = il.targets(apihost, auth, names)[args.kind]
            il.load(node, {**request, "connections": 1, "requests": 200})
            il.load(node, {**request, "connections": 50, "durationMs": int(args.warm_c50 * 1e3)})
            il.load(node, {**request, "connections": 1, "requests": 200})
            load0 = os.getloadavg()[0]
            t0 = time.monotonic()
            measured = {"connections": args.connections, "requests": args.requests}
            latency = il.load(node, {**request, **measured})
            t1 = time.monotonic()
            load1 = os.getloadavg()[0]
        window = [json.loads(line) for line in events.read_text().splitlines()]
    window = [e for e in window if t0 <= e["t"] <= t1]
    return summarize(window, latency, latency["requests"], (load0, load1))


def summarize(
    events: list[dict[str, Any]], latency: dict[str, Any], requests: int, load: tuple[float, float]
) -> dict[str, Any]:
    def of(kind: str) -> list[dict[str, Any]]:
        return [e for e in events if e["kind"] == kind]

    commits, gcs = of("commit"), of("gc")
    blocked = [c for c in commits if c["blocked_ms"] > BLOCKED_MS]
    numbers = [i for i, c in enumerate(commits) if c["blocked_ms"] > BLOCKED_MS]
    gaps = [b - a for a, b in itertools.pairwise(numbers)]
    per_gen = {
        g: (
            len(xs),
            round(sum(e["cpu_ms"] for e in xs), 1),
            round(max((e["cpu_ms"] for e in xs), default=0), 2),
        )
        for g in (0, 1, 2)
        if (xs := [e for e in gcs if e["gen"] == g])
    }
    return {
        "requests": requests,
        "latency_ms": latency["latencyMs"],
        "load_average": load,
        "commits": len(commits),
        # The loop's time in commits, preemption left out (CPU + blocked), per request.
        "commit_ms_per_request": round(
            sum(c["cpu_ms"] + max(0.0, c["blocked_ms"]) for c in commits) / requests, 3
        ),
        "commits_blocked": len(blocked),
        "commits_blocked_per_100_requests": round(100 * len(blocked) / requests, 2),
        "blocked_ms_median": sorted(c["blocked_ms"] for c in blocked)[len(blocked) // 2]
        if blocked
        else 0,
        "blocked_ms_max": round(max((c["blocked_ms"] for c in blocked), default=0), 1),
        "commits_between_blocked_median": sorted(gaps)[len(gaps) // 2] if gaps else None,
        "gc_per_generation": per_gen,  # generation: (collections, CPU ms, max ms)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=1, help="of the measured window")
    parser.add_argument("--kind", choices=("nodejs", "python"), default="nodejs")
    parser.add_argument("--warm-c50", type=float, default=3.0, help="seconds at 50 connections")
    parser.add_argument("--other", type=Path, help="a second source tree to measure in turns")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import shutil

    import invoke_latency as il

    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for bench/load.js")
    trees = {"this": il.REPO} | ({"other": args.other.resolve()} if args.other else {})
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    started = time.time()
    for round_ in range(args.rounds):
        order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
        for name in order:
            results[name].append(_measure(trees[name], args, node))
    head = f"{'tree':<7}{'round':>6}{'p50':>7}{'p99':>7}{'commit ms/req':>14}"
    head += f"{'blocked':>9}{'per 100':>9}"
    head += f"{'med ms':>8}{'max ms':>8}{'every':>7}"
    head += f"{'gc0 n/ms':>10}{'gc1 n/ms':>10}{'gc2 n/ms':>10}{'load':>11}"
    print(
        f"{args.kind}, {args.requests} invokes at c={args.connections};"
        f" commits blocked > {BLOCKED_MS} ms; commit ms/req: loop time in commits per request"
    )
    print(head)
    for name, rows in results.items():
        for i, r in enumerate(rows):
            g0, g1, g2 = (r["gc_per_generation"].get(g, (0, 0, 0)) for g in (0, 1, 2))
            print(
                f"{name:<7}{i:>6}{r['latency_ms']['p50']:>7.2f}{r['latency_ms']['p99']:>7.2f}"
                f"{r['commit_ms_per_request']:>14}"
                f"{r['commits_blocked']:>9}{r['commits_blocked_per_100_requests']:>9}"
                f"{r['blocked_ms_median']:>8.1f}{r['blocked_ms_max']:>8}"
                f"{r['commits_between_blocked_median'] or '-':>7}"
                f"{f'{g0[0]}/{g0[1]}':>10}{f'{g1[0]}/{g1[1]}':>10}{f'{g2[0]}/{g2[1]}':>10}{'{:.1f}→{:.1f}'.format(*r['load_average']):>11}"
            )
    report = {
        **il.report_head("loop_stalls", started, "started", node),
        "parameters": vars(args) | {"other": str(args.other) if args.other else None},
        "trees": {name: str(path) for name, path in trees.items()},
        "results": results,
    }
    output = args.output or il.REPO / "bench" / "results" / "loop_stalls.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    if "--serve" in sys.argv:
        _serve()
    else:
        main()
