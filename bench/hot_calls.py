"""Python function calls per warm invoke in the server, at c=N, by function (issue 12).

    PYTHONPATH=<tree> .venv/bin/python bench/hot_calls.py [--kind nodejs|python]
        [--requests 3000] [--connections 50] [--top 40] [--profile]

The whole standalone platform in this process (``Standalone``, as ``squall standalone``
builds it, on uvloop) served on loopback by the protocol ``squall standalone`` serves
with (``cli/serving.py`` ``protocol_for``: the hot route), loaded by ``bench/load.js``
(a Node.js client in its own process, so none of its work is counted) with ``--requests``
blocking ``result=true`` invokes of a warmed no-op action over ``--connections``
keep-alive connections. During the measured run the server counts every Python function
call (``sys.setprofile``: a ``call`` event per Python frame and a ``c_call`` per builtin
called from Python), so the figure is a count, immune to what other processes do to the
machine; ``--profile`` runs ``cProfile`` instead and prints the functions with the most
own time and the most calls (their times are inflated by the profiler, their counts are
not). Run it once per tree (``PYTHONPATH``) to compare two trees. Prints calls per invoke
(Python frames, builtins), the functions called most per invoke, the process CPU per
invoke with the profiler on (``--plain``: without any, the server's CPU per invoke alone,
as the client is another process), requests/s, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import cProfile
import gc
import json
import os
import pstats
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import uvloop
from protocol_support import NOOPS, platform, put_once, serve

from squall.cli.serving import protocol_for

LOAD_JS = Path(__file__).resolve().parent / "load.js"


async def load(port: int, path: str, auth: str, requests: int, connections: int) -> Any:
    options = {
        "url": f"http://127.0.0.1:{port}{path}?blocking=true&result=true",
        "method": "POST",
        "auth": auth,
        "body": "{}",
        "connections": connections,
        "requests": requests,
    }
    child = await asyncio.create_subprocess_exec(
        "node", str(LOAD_JS), json.dumps(options), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(child.communicate(), timeout=300)
    result = json.loads(out)
    if result["errors"]:
        raise SystemExit(f"load.js: {result['errors']} errors: {result['statuses']}")
    return result


class Counter:
    """Counts call events per code object (Python) and per builtin name (C)."""

    def __init__(self) -> None:
        self.python: collections.Counter[Any] = collections.Counter()
        self.builtin: collections.Counter[str] = collections.Counter()

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            self.python[frame.f_code] += 1
        elif event == "c_call":
            self.builtin[getattr(arg, "__qualname__", repr(arg))] += 1


def name_of(code: Any) -> str:
    file = code.co_filename
    for marker in ("/squall/", "/site-packages/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{code.co_firstlineno}:{code.co_qualname}"


class GcTimer:
    """A ``gc.callbacks`` entry: collections by generation, their time, what they freed."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = 0.0
        self.collected = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._started
        self.count[info["generation"]] += 1
        self.collected += info["collected"]


async def run(args: argparse.Namespace) -> None:
    async with platform("squall-hotcalls-") as system:
        server, port = await serve(system.app, protocol_for(system.app))
        try:
            auth = base64.b64encode(system.guest_auth.encode())
            kind, code = NOOPS[args.kind]
            path = f"/api/v1/namespaces/_/actions/bench-calls-{args.kind}"
            body = orjson.dumps({"exec": {"kind": kind, "code": code}})
            put = (
                b"PUT %s HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            ) % (path.encode(), auth, len(body), body)
            await put_once(port, put, path)
            for _ in range(2):  # warm: the containers c=N needs, the caches
                await load(port, path, system.guest_auth, 2000, args.connections)
            if args.freeze:
                # As ``squall standalone`` does before it serves (cli/serving.py).
                gc.collect()
                gc.freeze()
            collections_timed = GcTimer()
            gc.callbacks.append(collections_timed)
            counter = Counter()
            # CPU time, not wall time: a write that wakes the runtime is often preempted there.
            profiler = cProfile.Profile(time.thread_time)
            load_before = os.getloadavg()[0]
            cpu = time.process_time()
            times = os.times()
            if args.profile:
                profiler.enable()
            elif not args.plain:
                sys.setprofile(counter)
            try:
                result = await load(port, path, system.guest_auth, args.requests, args.connections)
            finally:
                sys.setprofile(None)  # the loop's thread only: the run is on it
                profiler.disable()
                gc.callbacks.remove(collections_timed)
            cpu_ms = 1000 * (time.process_time() - cpu) / args.requests
            after = os.times()
            n = args.requests
            # User (Python, SQLite, httptools, uvloop) and kernel (the system calls) apart.
            user_ms = 1000 * (after.user - times.user) / n
            sys_ms = 1000 * (after.system - times.system) / n
            print(f"tree: {Path(sys.modules['squall'].__file__ or '').parent.parent}")
            print(f"{args.kind} c={args.connections}, {n} requests, {result['rps']} req/s "
                  f"CPU {cpu_ms:.3f} ms/invoke ({'plain' if args.plain else 'profiled'}; "
                  f"user {user_ms:.3f}, system {sys_ms:.3f}), "
                  f"load {load_before:.2f} -> {os.getloadavg()[0]:.2f}")  # fmt: skip
            gcs = collections_timed
            print(f"gc: collections by generation {gcs.count}, {gcs.seconds * 1000 / n:.4f} ms "
                  f"per invoke, {gcs.collected / n:.1f} objects collected per invoke"
                  f"{' (objects frozen before the run)' if args.freeze else ''}")  # fmt: skip
            if args.plain:
                return
            if args.profile:
                stats = pstats.Stats(profiler)
                if args.dump:
                    stats.dump_stats(args.dump)
                stats.sort_stats("tottime").print_stats(args.top)
                stats.sort_stats("ncalls").print_stats(args.top)
                return
            py, c = sum(counter.python.values()), sum(counter.builtin.values())
            print(f"calls per invoke: python {py / n:.1f}, builtins {c / n:.1f}, "
                  f"all {(py + c) / n:.1f}")  # fmt: skip
            by_file: collections.Counter[str] = collections.Counter()
            for code_object, count in counter.python.items():
                by_file[name_of(code_object).rsplit(":", 2)[0]] += count
            print("\nPython calls per invoke by file:")
            for file, count in by_file.most_common(args.top):
                print(f"{count / n:8.2f}  {file}")
            print("\nPython calls per invoke by function:")
            for code_object, count in counter.python.most_common(args.top):
                print(f"{count / n:8.2f}  {name_of(code_object)}")
            print("\nbuiltin calls per invoke:")
            for name, count in counter.builtin.most_common(args.top):
                print(f"{count / n:8.2f}  {name}")
        finally:
            server.should_exit = True
            await asyncio.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=sorted(NOOPS), default="nodejs")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--plain", action="store_true", help="no profiler: the CPU alone")
    parser.add_argument(
        "--freeze", action="store_true", help="gc.freeze() before the run, as the server does"
    )
    parser.add_argument("--dump", help="with --profile: write the pstats file there")
    args = parser.parse_args()
    if not (1 <= args.requests <= 100_000 and 1 <= args.connections <= 200):
        parser.error("1 ≤ --requests ≤ 100000, 1 ≤ --connections ≤ 200")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(args))


if __name__ == "__main__":
    main()
