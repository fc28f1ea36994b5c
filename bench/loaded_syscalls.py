"""System calls and server CPU per warm invoke under concurrent load, for two source trees.

    .venv/bin/python bench/loaded_syscalls.py --other /tmp/base [--kind nodejs|python]
        [--connections 50] [--duration 3] [--rounds 3]

What ``invoke_syscalls.py`` counts at c=1, under ``--connections`` concurrent keep-alive
connections (``bench/load.js``, closed loop): a ``squall standalone`` from this tree and
one from ``--other``, both up, the same no-op action warmed on each; per round and tree,
taking turns, ``--duration`` seconds of load with the server's CPU time read around it,
then ``--duration`` seconds more with ``strace -c -f`` attached. Prints per invoke: all
system calls, ``epoll_pwait`` (loop iterations), ``fcntl`` (SQLite's locks: 6 per
commit, so it shows how many invokes share a commit), ``pwrite64`` (WAL frames), the
requests/s and server CPU ms per invoke (both depend on the load, which is recorded; the
counts much less). JSON to ``bench/results/loaded_syscalls.json``. Only loopback is
loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from invoke_latency import REPO, create_actions, load, own_server, targets, write_turns_report
from invoke_syscalls import ROW, cpu_s, server_pid

RESULTS = REPO / "bench" / "results" / "loaded_syscalls.json"
SHOWN = ("epoll_pwait", "fcntl", "pwrite64", "getpid")


def traced(node: str, pid: int, request: dict[str, Any]) -> tuple[dict[str, int], int]:
    """System calls of ``pid`` (all threads) during one load run, and its requests."""
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        tracer = subprocess.Popen(
            ["strace", "-c", "-f", "-p", str(pid), "-o", out.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # attached to every thread before the load starts
        result = load(node, request)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        counts: dict[str, int] = {}
        for line in Path(out.name).read_text().splitlines():
            match = ROW.match(line)
            if match is not None and match.group(2) != "total":
                counts[match.group(2)] = int(match.group(1))
    return counts, int(result["requests"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, required=True, help="the tree to compare with")
    parser.add_argument("--kind", choices=("nodejs", "python"), default="nodejs")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not (1 <= args.connections <= 200 and 0 < args.duration <= 30 and 1 <= args.rounds <= 10):
        parser.error("1 ≤ --connections ≤ 200, 0 < --duration ≤ 30, 1 ≤ --rounds ≤ 10")
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for bench/load.js")
    trees = {"this": REPO, "other": args.other.resolve()}
    started = time.time()
    load_avg = [os.getloadavg()[0]]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    with contextlib.ExitStack() as stack:
        servers: dict[str, tuple[dict[str, Any], int]] = {}
        for name, tree in trees.items():
            apihost, auth = stack.enter_context(own_server(tree))
            names = create_actions(apihost, auth, f"{os.getpid()}")
            request = {
                **targets(apihost, auth, names)[args.kind],
                "connections": args.connections,
                "durationMs": int(args.duration * 1000),
            }
            servers[name] = (request, server_pid(urlsplit(apihost).port or 80))
            load(node, request)  # warm: the containers this concurrency needs
        for i in range(args.rounds):
            for name in list(trees) if i % 2 == 0 else list(reversed(trees)):
                request, pid = servers[name]
                before = cpu_s(pid)
                result = load(node, request)
                cpu_ms = (cpu_s(pid) - before) * 1e3 / max(1, int(result["requests"]))
                if result["errors"]:
                    raise SystemExit(f"{name} answered errors: {result.get('statuses')}")
                counts, n = traced(node, pid, request)
                row = {
                    "rps": float(result["rps"]),
                    "cpu_ms_per_invoke": cpu_ms,
                    "all": sum(counts.values()) / max(1, n),
                }
                row.update({call: counts.get(call, 0) / max(1, n) for call in SHOWN})
                rows[name].append(row)
    load_avg.append(os.getloadavg()[0])
    summary: dict[str, Any] = {}
    for name in trees:
        summary[name] = {
            key: round(statistics.median(r[key] for r in rows[name]), 3) for key in rows[name][0]
        }
        summary[name]["rounds"] = rows[name]
    keys = ["rps", "cpu_ms_per_invoke", "all", *SHOWN]
    print(f"{args.kind}, c={args.connections}, {args.rounds} rounds, "
          f"load average {load_avg[0]:.1f} → {load_avg[1]:.1f}")  # fmt: skip
    print(f"{'tree':<7}" + "".join(f"{k[:12]:>13}" for k in keys))
    for name in trees:
        print(f"{name:<7}" + "".join(f"{summary[name][k]:>13}" for k in keys))
    write_turns_report("loaded_syscalls", started, args, load_avg, summary)


if __name__ == "__main__":
    main()
