"""A started zygote spare's take, ``/init`` and first ``/run``: wall time on the invoker's
side and CPU time of the runtime (load-proof where the wall times are not).

    .venv/bin/python bench/zygote_take.py [--samples 10] [--rounds 3] [--memory 256]
        [--before /tmp/base-cold]

A ``ProcessContainerFactory`` (isolated, with its Python zygote) in a child process per
tree and round (``--before TREE``: the trees take turns, round by round); each sample
waits for the spares (``Zygote.filled``) and 0.3 s of quiet, then creates a
``--memory`` MB ``python:3.11`` container (a started spare taken), runs ``/init`` of a
no-op and one ``/run``, and destroys it. Per sample: ``create`` and ``/init`` wall ms,
and the runtime's CPU ms (``/proc/PID/task/*/schedstat``, every thread of the spare's
pid 1) from just before its take through ``/init`` (its ``take`` and ``/init``), and
through the first ``/run``. Prints the medians per tree and round and the 1-minute load
average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NOOP = "def main(args):\n    return {}\n"


def cpu_ns(pid: int) -> int:
    """ns on a CPU of every live thread of ``pid``."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks)


async def samples(count: int, memory: int) -> dict[str, float]:
    from squall.sandbox.process import ProcessContainerFactory

    factory = ProcessContainerFactory(Path(tempfile.mkdtemp()) / "c", "https://api")
    out: dict[str, list[float]] = {"create": [], "init": [], "take+init cpu": [], "run cpu": []}
    try:
        await factory.create("python:3.11", memory, {}, tenant="guest")  # starts the zygote
        zygote = factory.zygote
        assert zygote is not None
        for _ in range(count):
            await zygote.filled()
            await asyncio.sleep(0.3)
            pid = zygote._spares[0].pid  # the oldest: taken next unless one fits better
            before = cpu_ns(pid)
            t0 = time.perf_counter()
            container = await factory.create("python:3.11", memory, {}, tenant="guest")
            t1 = time.perf_counter()
            init = await container.initialize({"code": NOOP}, timeout=10)
            t2 = time.perf_counter()
            initialized = cpu_ns(container.pid)
            run = await container.run({"value": {}}, timeout=10)
            ran = cpu_ns(container.pid)
            assert init.status == 200 and run.status == 200, (init, run)
            if container.pid == pid:  # the spare sampled was the one taken
                out["take+init cpu"].append((initialized - before) / 1e6)
            out["run cpu"].append((ran - initialized) / 1e6)
            out["create"].append((t1 - t0) * 1e3)
            out["init"].append((t2 - t1) * 1e3)
            await container.destroy()
    finally:
        await factory.close()
    return {k: round(statistics.median(v), 3) if v else float("nan") for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10, help="per tree and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", type=int, default=256)
    parser.add_argument("--before", type=Path, help="also this tree, in turn")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(samples(args.samples, args.memory))))
        return
    trees = {"after": REPO, **({"before": args.before.resolve()} if args.before else {})}
    print(f"1-minute load before: {Path('/proc/loadavg').read_text().split()[0]}")
    for round_ in range(args.rounds):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree)}
            argv = [sys.executable, __file__, "--child", "--samples", str(args.samples)]
            argv += ["--memory", str(args.memory)]
            done = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True)
            result = done.stdout.strip().splitlines()[-1] if done.returncode == 0 else done.stderr
            print(f"round {round_ + 1} {name}: {result}")
    print(f"1-minute load after: {Path('/proc/loadavg').read_text().split()[0]}")


if __name__ == "__main__":
    main()
