"""What Node.js options do to one runtime proxy: its private memory, threads and CPU.

    .venv/bin/python bench/node_flags.py [--rounds 3] [--runs 2000] [--kind nodejs:20]
        [-- VARIANT ...]

A variant is a space-separated list of ``node`` options and ``NAME=VALUE`` environment
variables (``-`` for none), e.g. ``"--v8-pool-size=1"`` or ``"MALLOC_ARENA_MAX=1"``, after ``--``;
without variants: none, and the options Squall starts its runtimes with
(``squall.sandbox.processbase.NODE_OPTIONS``). Each sample starts the kind's
interpreter on ``squall/runtimes/nodejs/proxy.js`` (plain processes, no sandbox: the
options act inside ``node``), leaves it idle long enough to warm up as a stem cell does,
then times until it says it is ready (``__OW_READY_FD``), its ``/init`` of a no-op and
first ``/run`` (the cold start), and ``--runs`` sequential warm ``/run``s over one
connection; then reads ``/proc/PID/smaps_rollup`` (anonymous memory, USS) and the
process's threads. CPU time comes from every thread's ``/proc/PID/task/TID/schedstat``
(steadier than wall time on a shared host): the cold start's, and per warm run. Variants
take turns, the order reversed every round; medians are printed and written to
``bench/results/node_flags.json`` with the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from invoke_latency import write_report  # noqa: E402

from squall.runtimes import proxy_path  # noqa: E402
from squall.sandbox.interpreters import detect, load_manifest  # noqa: E402
from squall.sandbox.processbase import NODE_OPTIONS  # noqa: E402

RESULTS = REPO / "bench" / "results" / "node_flags.json"
NOOP = "function main() { return {}; }"
#: A stem cell warms up after 50 ms idle (proxy.js): every sample gets that first.
IDLE_S = 0.3


class UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over the proxy's Unix socket (kept alive)."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(self.socket_path)
        self.sock = sock


def post(connection: UnixConnection, route: str, body: dict[str, Any]) -> int:
    connection.request(
        "POST", route, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    answer = connection.getresponse()
    answer.read()
    return answer.status


def cpu_ms(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far, in ms."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError):
            continue  # a thread that just ended
    return total / 1e6


def memory_kb(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            found[name] = int(value.split()[0])
    return found


def sample(node: str, variant: str, runs: int, workdir: Path) -> dict[str, float]:
    options = [t for t in variant.split() if t != "-" and not ("=" in t and t[0] != "-")]
    extra = dict(t.split("=", 1) for t in variant.split() if "=" in t and t[0] != "-")
    path = str(workdir / f"proxy-{time.monotonic_ns()}.sock")
    ready_r, ready_w = os.pipe()
    env = {"PATH": "/usr/bin:/bin", "__OW_SOCKET": path, "__OW_READY_FD": str(ready_w), **extra}
    started = time.perf_counter()
    proxy = subprocess.Popen(
        [node, *options, str(proxy_path("nodejs"))],
        env=env,
        pass_fds=(ready_w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        os.close(ready_w)
        os.read(ready_r, 1)
        ready = time.perf_counter()
        time.sleep(IDLE_S)  # as a stem cell: the proxy warms up meanwhile
        connection = UnixConnection(path)
        idle_cpu = cpu_ms(proxy.pid)
        cold_at = time.perf_counter()
        assert (
            post(connection, "/init", {"value": {"name": "a", "main": "main", "code": NOOP}}) == 200
        )
        assert post(connection, "/run", {"value": {}}) == 200
        cold = time.perf_counter() - cold_at
        cold_cpu = cpu_ms(proxy.pid) - idle_cpu
        warm = []
        for _ in range(runs):
            at = time.perf_counter()
            post(connection, "/run", {"value": {}})
            warm.append(time.perf_counter() - at)
        warm_cpu = cpu_ms(proxy.pid) - idle_cpu - cold_cpu
        memory = memory_kb(proxy.pid)
        threads = len(os.listdir(f"/proc/{proxy.pid}/task"))
        connection.close()
    finally:
        os.close(ready_r)
        proxy.kill()
        proxy.wait()
    return {
        "ready_ms": (ready - started) * 1e3,
        "start_cpu_ms": idle_cpu,
        "cold_ms": cold * 1e3,
        "cold_cpu_ms": cold_cpu,
        "warm_p50_us": statistics.median(warm) * 1e6,
        # The slowest 1 % is where a young-generation GC lands (one every ~100 runs):
        # its mean shows what a scavenge costs a /run; the p99 sits at its edge.
        "warm_p99_us": sorted(warm)[int(len(warm) * 0.99)] * 1e6,
        "warm_slowest1pct_us": statistics.fmean(sorted(warm)[int(len(warm) * 0.99) :]) * 1e6,
        "warm_cpu_us": warm_cpu * 1e3 / max(1, runs),
        "anonymous_kb": memory["Anonymous"],
        "uss_kb": memory["Private_Clean"] + memory["Private_Dirty"],
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", help="node options and NAME=VALUE, or -")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2000, help="warm /runs per sample")
    parser.add_argument("--kind", default="nodejs:20")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    variants = args.variants or ["-", " ".join(NODE_OPTIONS)]
    found = detect(load_manifest()).get(args.kind)
    if found is None:
        raise SystemExit(f"no interpreter for {args.kind}")
    started = time.time()
    load_before = os.getloadavg()[0]
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="node-flags-") as tmp:
        for number in range(args.rounds):
            for variant in variants if number % 2 == 0 else variants[::-1]:
                samples[variant].append(sample(found.executable, variant, args.runs, Path(tmp)))
    load_after = os.getloadavg()[0]
    medians = {
        v: {k: round(statistics.median(s[k] for s in found_), 2) for k in found_[0]}
        for v, found_ in samples.items()
    }
    columns = list(next(iter(medians.values())))
    print(f"{'variant':<40}" + "".join(f"{c:>14}" for c in columns))
    for variant, figures in medians.items():
        print(f"{variant:<40}" + "".join(f"{figures[c]:>14g}" for c in columns))
    print(f"load average (1 min): {load_before:.2f} -> {load_after:.2f}")
    write_report(
        "node_flags",
        started,
        args,
        interpreter=found.executable,
        load_average_1min={"before": load_before, "after": load_after},
        medians=medians,
        samples=samples,
    )


if __name__ == "__main__":
    main()
