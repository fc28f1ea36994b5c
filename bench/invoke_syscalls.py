"""System calls and server CPU per warm blocking invoke, for one or two source trees.

    .venv/bin/python bench/invoke_syscalls.py [--other /tmp/base] [--kind nodejs|python]
        [--requests 300] [--cpu-requests 2000] [--rounds 3]

Starts a ``squall standalone`` from this tree (and one from ``--other``, both up at
once), creates and warms the same no-op action on each, then per tree and round, taking
turns: ``--cpu-requests`` sequential blocking invokes over one keep-alive connection with
the server's CPU time (``utime + stime`` of all its threads, ``/proc/PID/stat``) read
before and after, then ``--requests`` invokes with ``strace -c -f`` attached to the
server (exact counts: the load does not change them; the CPU figure is taken without
strace, which slows every system call). Prints per request: all system calls,
``epoll_pwait`` (uvloop polls once per loop iteration, so it counts iterations),
``write``/``sendto``, ``read``/``recvfrom``, ``pwrite64``, ``fcntl``, ``getpid``; and the
median server CPU ms per invoke with the load average. JSON to
``bench/results/invoke_syscalls.json``. Only loopback is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from invoke_interleaved import Target
from invoke_latency import REPO, create_actions, own_server, write_turns_report

RESULTS = REPO / "bench" / "results" / "invoke_syscalls.json"
SHOWN = ("epoll_pwait", "write", "sendto", "read", "recvfrom", "pwrite64", "fcntl", "getpid")
TICKS = os.sysconf("SC_CLK_TCK")
ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def cpu_s(pid: int) -> float:
    """``utime + stime`` of the whole process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def server_pid(port: int) -> int:
    """The pid of the process listening on ``port`` (the standalone's only)."""
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"pid=(\d+)", out)
    if match is None:
        raise SystemExit(f"nothing listens on port {port}")
    return int(match.group(1))


def strace_counts(pid: int, target: Target, requests: int) -> dict[str, int]:
    """System calls of ``pid`` (all threads) during ``requests`` invokes."""
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        tracer = subprocess.Popen(
            ["strace", "-c", "-f", "-p", str(pid), "-o", out.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # attached to every thread before the first request
        target.block(requests)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        counts: dict[str, int] = {}
        for line in Path(out.name).read_text().splitlines():
            match = ROW.match(line)
            if match is not None and match.group(2) != "total":
                counts[match.group(2)] = int(match.group(1))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, help="a second source tree, measured in turns")
    parser.add_argument("--kind", choices=("nodejs", "python"), default="nodejs")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--cpu-requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    trees = {"this": REPO}
    if args.other is not None:
        trees["other"] = args.other.resolve()
    started = time.time()
    load = [os.getloadavg()[0]]
    per_request: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    cpu_ms: dict[str, list[float]] = {name: [] for name in trees}
    with contextlib.ExitStack() as stack:
        targets: dict[str, tuple[Target, int]] = {}
        for name, tree in trees.items():
            apihost, auth = stack.enter_context(own_server(tree))
            action = create_actions(apihost, auth, f"{os.getpid()}")[args.kind]
            target = Target(apihost, auth, action)
            target.block(300)  # warm
            targets[name] = (target, server_pid(target.port))
        for i in range(args.rounds):
            for name in list(trees) if i % 2 == 0 else list(reversed(trees)):
                target, pid = targets[name]
                before = cpu_s(pid)
                target.block(args.cpu_requests)
                cpu_ms[name].append((cpu_s(pid) - before) * 1e3 / (args.cpu_requests + 1))
                counts = strace_counts(pid, target, args.requests)
                n = args.requests + 1
                row = {"all": sum(counts.values()) / n}
                row.update({call: counts.get(call, 0) / n for call in SHOWN})
                per_request[name].append(row)
    load.append(os.getloadavg()[0])
    summary: dict[str, Any] = {}
    for name in trees:
        rows = per_request[name]
        summary[name] = {key: round(statistics.median(r[key] for r in rows), 2) for key in rows[0]}
        summary[name]["cpu_ms_per_invoke"] = round(statistics.median(cpu_ms[name]), 3)
        summary[name]["cpu_ms_rounds"] = [round(c, 3) for c in cpu_ms[name]]
    print(f"{args.kind}, {args.rounds} rounds, load average {load[0]:.1f} → {load[1]:.1f}")
    keys = ["all", *SHOWN, "cpu_ms_per_invoke"]
    print(f"{'tree':<7}" + "".join(f"{k[:12]:>13}" for k in keys))
    for name in trees:
        print(f"{name:<7}" + "".join(f"{summary[name][k]:>13}" for k in keys))
    write_turns_report("invoke_syscalls", started, args, load, summary)


if __name__ == "__main__":
    main()
