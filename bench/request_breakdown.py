"""Where the slow 1 % of warm invokes at c=1 spend their time, measured in the server.

    .venv/bin/python bench/request_breakdown.py --other /tmp/base [--kind nodejs|python]
        [--blocks 20] [--per-block 500]

Both source trees' standalones run at once under this file's ``--serve`` wrapper and take
turns in blocks of ``--per-block`` sequential blocking no-op invokes over one keep-alive
connection (``invoke_interleaved.py``'s client: the load's swings hit both alike). The
wrapper records, inside the server:

- per hot-route request (``HotCycle.run_asgi``): its wall time, the event-loop thread's
  CPU time and run-queue wait (``/proc/thread-self/schedstat``) over it, and the time in
  the runtime exchange (``UnixHttpClient.post``, the ``/run`` over the container's socket);
- per WAL checkpoint of the SQLite store (``Checkpointer.checkpoint``, on its own thread):
  when, its wall time and the thread's CPU time.

Each client-side latency is matched to the server's record of the same request, which
splits it into: the loop's CPU, its run-queue wait, the runtime exchange, and ``outside``
(client - server wall: the client, loopback and the wake-ups of both ends). Printed per
tree for the fastest half, the middle decile and the slowest 1 %, with the checkpoints'
count, CPU per second, median wall time, the share of time one runs, and the share of the
slowest 1 % (and of all requests) whose server time overlaps one. JSON to
``bench/results/request_breakdown.json``. Only loopback is loaded.
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import contextlib
import json
import os
import runpy
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

EVENTS_ENV = "SQUALL_BENCH_BREAKDOWN_EVENTS"


def _serve() -> None:
    """Run ``squall.cli.main`` (the arguments after ``--serve``) with the probes above,
    appending one JSON array per event to the file named by ``EVENTS_ENV``."""
    rows: list[str] = []  # written out every 1000 events and at exit, off the answers' path
    lock = threading.Lock()  # the loop's thread and the checkpointer's both emit

    def emit(row: list[Any]) -> None:
        with lock:
            rows.append(json.dumps(row))
            if len(rows) >= 1000:
                flush()

    def flush() -> None:
        with open(os.environ[EVENTS_ENV], "a") as out:
            out.write("".join(line + "\n" for line in rows))
        rows.clear()

    atexit.register(flush)

    def run_queue_ns() -> int:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])

    sys.path.insert(0, os.getcwd())  # the tree own_server runs in, not this script's
    from squall.controller import hotcycle
    from squall.sandbox import http
    from squall.store import sqlite_checkpoint

    in_runtime = [0.0]  # the runtime exchange's wall ms of the request being served (c=1)
    run_asgi = hotcycle.HotCycle.run_asgi

    async def timed_run_asgi(self: hotcycle.HotCycle, app: Any) -> None:
        wall, cpu, queued = time.perf_counter(), time.thread_time(), run_queue_ns()
        in_runtime[0] = 0.0
        try:
            await run_asgi(self, app)
        finally:
            row = [
                wall,
                (time.perf_counter() - wall) * 1e3,
                (time.thread_time() - cpu) * 1e3,
                (run_queue_ns() - queued) / 1e6,
                in_runtime[0],
            ]
            emit(["req", *(round(x, 6) for x in row)])

    post = http.UnixHttpClient.post

    async def timed_post(
        self: http.UnixHttpClient, target: str, body: bytes, timeout: float | None = None
    ) -> Any:
        start = time.perf_counter()
        try:
            return await post(self, target, body, timeout)
        finally:
            in_runtime[0] += (time.perf_counter() - start) * 1e3

    checkpoint = sqlite_checkpoint.Checkpointer.checkpoint

    def timed_checkpoint(self: sqlite_checkpoint.Checkpointer) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        checkpoint(self)
        row = [wall, (time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3]
        emit(["ckpt", *(round(x, 6) for x in row)])

    hotcycle.HotCycle.run_asgi = timed_run_asgi  # type: ignore[method-assign]
    http.UnixHttpClient.post = timed_post  # type: ignore[method-assign]
    sqlite_checkpoint.Checkpointer.checkpoint = timed_checkpoint  # type: ignore[method-assign]
    sys.argv = ["squall", *sys.argv[sys.argv.index("--serve") + 1 :]]
    runpy.run_module("squall.cli.main", run_name="__main__", alter_sys=True)


def _read_events(path: Path) -> tuple[list[list[float]], list[list[float]]]:
    requests: list[list[float]] = []
    checkpoints: list[list[float]] = []
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        for line in f:
            with contextlib.suppress(ValueError):  # a line cut by the server's exit
                kind, *row = json.loads(line)
                (requests if kind == "req" else checkpoints).append(row)
    requests.sort()
    return requests, checkpoints


def breakdown(
    client: list[tuple[float, float]], requests: list[list[float]], checkpoints: list[list[float]]
) -> dict[str, Any]:
    """Match each (start, latency ms) of the client to the server's record of it; the
    components of the fastest half, the middle decile and the slowest 1 %."""
    starts = [r[0] for r in requests]
    rows = []  # latency, server wall, loop CPU, run queue, runtime, server start
    for start, latency in client:
        i = bisect.bisect_left(starts, start)
        if i < len(requests) and requests[i][0] - start < latency / 1e3:
            rows.append((latency, *requests[i][1:5], requests[i][0]))
    rows.sort()
    n = len(rows)
    spans = [(c[0], c[0] + c[1] / 1e3) for c in checkpoints]
    span_starts = [s for s, _ in spans]

    def overlaps(row: tuple[float, ...]) -> bool:
        begin, end = row[5], row[5] + row[1] / 1e3
        i = bisect.bisect_left(span_starts, end)
        return any(spans[j][1] > begin for j in range(max(0, i - 3), i))

    def part(sel: list[tuple[float, ...]]) -> dict[str, float]:
        def med(f: Any) -> float:
            return round(float(statistics.median(f(x) for x in sel)), 3)

        return {
            "n": len(sel),
            "latency": med(lambda x: x[0]),
            "loop_cpu": med(lambda x: x[2]),
            "loop_run_queue": med(lambda x: x[3]),
            "runtime": med(lambda x: x[4]),
            "outside": med(lambda x: x[0] - x[1]),
            "overlapping_checkpoint": round(sum(map(overlaps, sel)) / len(sel), 4),
        }

    first, last = (min(r[5] for r in rows), max(r[5] for r in rows)) if rows else (0.0, 0.0)
    seconds = last - first
    window = [c for c in checkpoints if first <= c[0] <= last]
    return {
        "matched": n,
        "p50": round(rows[n // 2][0], 3),
        "p99": round(rows[int(n * 0.99)][0], 3),
        "p99.9": round(rows[int(n * 0.999)][0], 3),
        "max": round(rows[-1][0], 3),
        "all": part(rows),
        "fastest half": part(rows[: n // 2]),
        "p45-p55": part(rows[int(n * 0.45) : int(n * 0.55)]),
        "slowest 1%": part(rows[int(n * 0.99) :]),
        "checkpoints": len(window),
        "checkpoint_cpu_ms_per_s": round(sum(c[2] for c in window) / max(seconds, 1e-9), 2),
        "checkpoint_wall_ms_median": round(statistics.median(c[1] for c in window), 1)
        if window
        else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, required=True, help="the other source tree")
    parser.add_argument("--kind", choices=("nodejs", "python"), default="nodejs")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--per-block", type=int, default=500)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import invoke_latency as il
    from invoke_interleaved import Target

    args.output = args.output or il.REPO / "bench" / "results" / "request_breakdown.json"
    trees = {"this": il.REPO, "other": args.other.resolve()}
    started = time.time()
    probe = [sys.executable, str(Path(__file__).resolve()), "--serve"]
    client: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="squall-breakdown-") as tmp:
        events = {name: Path(tmp) / f"{name}.jsonl" for name in trees}
        with contextlib.ExitStack() as stack:
            targets = {}
            for name, tree in trees.items():
                env = {EVENTS_ENV: str(events[name])}
                apihost, auth = stack.enter_context(il.own_server(tree, launcher=probe, env=env))
                action = il.create_actions(apihost, auth, f"{os.getpid()}")[args.kind]
                targets[name] = Target(apihost, auth, action)
                targets[name].block(1000)  # warm
            load = [os.getloadavg()[0]]
            for i in range(args.blocks):
                for name in list(trees) if i % 2 == 0 else list(reversed(trees)):
                    target = targets[name]
                    target.conn.close()
                    target.invoke()  # a fresh connection, not counted
                    for _ in range(args.per_block):
                        start = time.perf_counter()  # CLOCK_MONOTONIC, as the server's
                        target.invoke()
                        client[name].append((start, (time.perf_counter() - start) * 1e3))
            load.append(os.getloadavg()[0])
        results = {name: breakdown(client[name], *_read_events(events[name])) for name in trees}
    print(
        f"{args.kind}, {args.blocks} blocks of {args.per_block} invokes at c=1 per tree, in"
        f" turns; load average {load[0]:.1f} → {load[1]:.1f}; medians in ms"
    )
    head = f"{'tree':<6}{'part':<13}{'n':>6}{'latency':>9}{'loop CPU':>9}{'run q':>7}"
    print(head + f"{'runtime':>9}{'outside':>9}{'in ckpt':>9}")
    for name, r in results.items():
        for part in ("fastest half", "p45-p55", "slowest 1%", "all"):
            p = r[part]
            print(
                f"{name:<6}{part:<13}{p['n']:>6}{p['latency']:>9}{p['loop_cpu']:>9}"
                f"{p['loop_run_queue']:>7}{p['runtime']:>9}{p['outside']:>9}"
                f"{p['overlapping_checkpoint']:>9}"
            )
        print(
            f"{name:<6}p50 {r['p50']} p99 {r['p99']} p99.9 {r['p99.9']} max {r['max']};"
            f" checkpoints {r['checkpoints']},"
            f" {r['checkpoint_cpu_ms_per_s']} ms CPU/s, median wall"
            f" {r['checkpoint_wall_ms_median']} ms"
        )
    il.write_turns_report("request_breakdown", started, args, load, results)


if __name__ == "__main__":
    if "--serve" in sys.argv:
        _serve()
    else:
        main()
