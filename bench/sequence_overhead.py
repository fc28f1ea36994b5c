"""B4: what each step of a sequence costs, against a single action in the same run.

    .venv/bin/python bench/sequence_overhead.py [--requests 1000] [--lengths 1,2,5,10,50]
        [--apihost http://127.0.0.1:3233 --auth uuid:key]

Without ``--apihost`` it starts its own ``squall standalone`` on a free loopback port with
a temporary home (throttles raised out of the way) and stops it at the end; only loopback
addresses are ever targeted (helpers shared with ``invoke_latency.py``).

It creates a no-op Node.js action (``function main() { return {}; }``) and sequences of
1, 2, 5, 10 and 50 of it, checks each answers ``{}``, warms them, and measures blocking
invokes (``?blocking=true&result=true``) over one keep-alive connection, one request after
another: ``--requests`` for the single action, ``max(200, requests / n)`` for a sequence
of n. Figures per target: p50, p99, mean (ms). Derived, from the p50s:

- ``fixed`` = seq(1) - single: what wrapping one action in a sequence costs;
- ``per step`` = (seq(n) - single) / (n - 1): each further step, the action it runs
  included (the goal is <= 0.5 ms);
- ``marginal`` = (seq(n) - seq(1)) / (n - 1): the same without the fixed part;
- ``slope``: the least-squares slope of p50 over n across all sequences, the per-step
  figure least disturbed by the noise of any single p50.

Results are printed as a table and written as JSON to ``bench/results/sequence_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
from invoke_latency import RESULTS, load, report_head, run_measurement

OUTPUT = RESULTS.parent / "sequence_overhead.json"
NOOP = "function main() { return {}; }"
GOAL_MS_PER_STEP = 0.5


def create_targets(apihost: str, auth: str, lengths: list[int], suffix: str) -> dict[str, int]:
    """The no-op action and one sequence per length; {name: number of steps}."""
    uuid, _, key = auth.partition(":")
    noop = f"bench-noop-{suffix}"
    targets = {noop: 0}
    with httpx.Client(
        base_url=f"{apihost}/api/v1/namespaces/_", auth=(uuid, key), trust_env=False, timeout=60
    ) as c:
        bodies: dict[str, dict[str, Any]] = {
            noop: {"exec": {"kind": "nodejs:default", "code": NOOP}}
        }
        for n in lengths:
            components = [f"/_/{noop}"] * n
            bodies[f"bench-seq{n}-{suffix}"] = {
                "exec": {"kind": "sequence", "components": components}
            }
            targets[f"bench-seq{n}-{suffix}"] = n
        for name, body in bodies.items():
            c.put(f"/actions/{name}", params={"overwrite": "true"}, json=body).raise_for_status()
        for name in targets:
            r = c.post(f"/actions/{name}", params={"blocking": "true", "result": "true"}, json={})
            if r.status_code != 200 or r.json() != {}:
                raise SystemExit(f"{name} does not work: {r.status_code} {r.text}")
    return targets


def measure(args: argparse.Namespace, apihost: str, auth: str, node: str) -> dict[str, Any]:
    targets = create_targets(apihost, auth, args.lengths, str(os.getpid()))
    results: dict[str, Any] = {}
    for name, steps in targets.items():
        request = {
            "url": f"{apihost}/api/v1/namespaces/_/actions/{name}?blocking=true&result=true",
            "method": "POST",
            "auth": auth,
            "body": "{}",
            "connections": 1,
        }
        count = args.requests if steps == 0 else max(200, args.requests // steps)
        load(node, {**request, "requests": max(20, count // 5)})  # warm-up
        latency = load(node, {**request, "requests": count})
        results["single" if steps == 0 else f"seq{steps}"] = {"steps": steps, "latency": latency}
    single = results["single"]["latency"]["latencyMs"]["p50"]
    first = results.get("seq1", {}).get("latency", {}).get("latencyMs", {}).get("p50")
    for r in results.values():
        n, p50 = r["steps"], r["latency"]["latencyMs"]["p50"]
        if n == 1:
            r["fixed_ms"] = round(p50 - single, 3)
        if n > 1:
            r["per_step_ms"] = round((p50 - single) / (n - 1), 3)
            if first is not None:
                r["marginal_ms"] = round((p50 - first) / (n - 1), 3)
            r["within_goal"] = r["per_step_ms"] <= GOAL_MS_PER_STEP
    return results


def slope(results: dict[str, Any]) -> float | None:
    """Least-squares slope of the sequences' p50 over their number of steps (ms/step)."""
    points = [
        (r["steps"], r["latency"]["latencyMs"]["p50"]) for r in results.values() if r["steps"]
    ]
    if len(points) < 2:
        return None
    mean_n = sum(n for n, _ in points) / len(points)
    mean_t = sum(t for _, t in points) / len(points)
    spread = sum((n - mean_n) ** 2 for n, _ in points)
    return round(float(sum((n - mean_n) * (t - mean_t) for n, t in points) / spread), 3)


def table(results: dict[str, Any]) -> str:
    rows = [
        "blocking invoke latency, 1 connection (ms); derived from the p50s",
        f"{'target':<8}{'steps':>6}{'requests':>10}{'p50':>9}{'p99':>9}{'mean':>9}{'errors':>8}"
        f"{'fixed':>8}{'per step':>10}{'marginal':>10}",
    ]
    for target, r in results.items():
        lat = r["latency"]
        ms = lat["latencyMs"]

        def cell(key: str, width: int, r: dict[str, Any] = r) -> str:
            value = r.get(key)
            return f"{'' if value is None else f'{value:.3f}':>{width}}"

        rows.append(
            f"{target:<8}{r['steps']:>6}{lat['requests']:>10}{ms['p50']:>9.3f}{ms['p99']:>9.3f}"
            f"{ms['mean']:>9.3f}{lat['errors']:>8}"
            f"{cell('fixed_ms', 8)}{cell('per_step_ms', 10)}{cell('marginal_ms', 10)}"
        )
    rows.append(f"slope (least squares over the sequences): {slope(results)} ms per step")
    rows.append(f"goal: per step <= {GOAL_MS_PER_STEP} ms")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="for the single action")
    parser.add_argument("--lengths", default="1,2,5,10,50", help="sequence lengths")
    parser.add_argument("--apihost", help="a running server (default: start one)")
    parser.add_argument("--auth", help="uuid:key for --apihost")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    try:
        args.lengths = sorted({int(n) for n in args.lengths.split(",")})
    except ValueError:
        parser.error("--lengths is a comma-separated list of integers")
    if args.requests < 1 or not all(1 <= n <= 50 for n in args.lengths):
        parser.error("--requests >= 1, lengths within 1..50 (the default sequence limit)")
    if bool(args.apihost) != bool(args.auth):
        parser.error("--apihost and --auth go together")
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for bench/load.js")

    started = time.time()
    results, server = run_measurement(args, lambda host, auth: measure(args, host, auth, node))
    report = {
        **report_head("sequence_overhead", started, server, node),
        "parameters": {"requests": args.requests, "lengths": args.lengths},
        "goal_ms_per_step": GOAL_MS_PER_STEP,
        "slope_ms_per_step": slope(results),
        "results": results,
    }
    print(table(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
