"""Two source trees' standalones at once, c=1 latency in finely interleaved blocks.

    .venv/bin/python bench/invoke_interleaved.py --other /work/main [--kind nodejs]
        [--blocks 30] [--per-block 300]

Starts a ``squall standalone`` from this tree and one from ``--other`` (same venv,
throttles raised, as ``invoke_latency.py`` does), creates the same no-op action on each
and warms it (300 invokes). Then ``--blocks`` blocks of ``--per-block`` sequential
blocking invokes, one keep-alive connection, alternate between the two servers (the one
going first alternates too), so a change of the machine's load hits both alike within
seconds — on a shared machine whose load swings from 10 to 40 within minutes, runs of
whole benchmarks one after the other compare the load more than the versions. The client
is this process (``http.client``; its cost is the same for both), and a block's first
request (a fresh connection) is not counted.

Prints p50/p90/p99/max of each tree over all its blocks, in how many blocks this tree's
median was lower, and the median of the per-block ratios (this / other); writes
``bench/results/invoke_interleaved.json``. Only loopback is loaded.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import os
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from invoke_latency import REPO, create_actions, own_server, write_turns_report

RESULTS = REPO / "bench" / "results" / "invoke_interleaved.json"


class Target:
    """One server's no-op action over one keep-alive connection."""

    def __init__(self, apihost: str, auth: str, action: str) -> None:
        parts = urlsplit(apihost)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port)
        token = base64.b64encode(auth.encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        self.path = f"/api/v1/namespaces/_/actions/{action}?blocking=true&result=true"

    def invoke(self) -> None:
        self.conn.request("POST", self.path, body=b"{}", headers=self.headers)
        answer = self.conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise SystemExit(f"{self.host}:{self.port} answered {answer.status}")

    def block(self, n: int) -> list[float]:
        """``n`` invokes on a fresh connection (the server closes idle ones after 5 s);
        their latencies in ms, the connecting request left out."""
        self.conn.close()
        self.invoke()
        latencies = []
        for _ in range(n):
            start = time.perf_counter()
            self.invoke()
            latencies.append((time.perf_counter() - start) * 1e3)
        return latencies


def quantile(sorted_ms: list[float], q: float) -> float:
    return round(sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, required=True, help="the other source tree")
    parser.add_argument("--kind", choices=("nodejs", "python"), default="nodejs")
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--per-block", type=int, default=300)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    trees = {"this": REPO, "other": args.other.resolve()}
    started = time.time()
    with contextlib.ExitStack() as stack:
        targets = {}
        for name, tree in trees.items():
            apihost, auth = stack.enter_context(own_server(tree))
            action = create_actions(apihost, auth, f"{os.getpid()}")[args.kind]
            targets[name] = Target(apihost, auth, action)
            targets[name].block(300)  # warm
        load = [os.getloadavg()[0]]
        samples: dict[str, list[float]] = {name: [] for name in trees}
        medians: dict[str, list[float]] = {name: [] for name in trees}
        for i in range(args.blocks):
            for name in list(trees) if i % 2 == 0 else list(reversed(trees)):
                block = targets[name].block(args.per_block)
                samples[name] += block
                medians[name].append(statistics.median(block))
        load.append(os.getloadavg()[0])
    summary: dict[str, Any] = {}
    for name, ms in samples.items():
        ms.sort()
        summary[name] = {f"p{int(q * 100)}": quantile(ms, q) for q in (0.5, 0.9, 0.99)}
        summary[name]["max"] = round(ms[-1], 1)
    pairs = list(zip(medians["this"], medians["other"], strict=True))
    summary["blocks_this_faster"] = sum(1 for a, b in pairs if a < b)
    summary["median_block_ratio"] = round(statistics.median(a / b for a, b in pairs), 3)
    print(
        f"{args.kind}, {args.blocks} blocks of {args.per_block} invokes at c=1 per tree,"
        f" load average {load[0]:.1f} → {load[1]:.1f}"
    )
    print(f"{'tree':<7}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}")
    for name in trees:
        s = summary[name]
        print(f"{name:<7}{s['p50']:>8}{s['p90']:>8}{s['p99']:>8}{s['max']:>8}")
    print(
        f"this tree's block median lower in {summary['blocks_this_faster']}/{args.blocks}"
        f" blocks; median ratio this/other {summary['median_block_ratio']}"
    )
    write_turns_report("invoke_interleaved", started, args, load, summary)


if __name__ == "__main__":
    main()
