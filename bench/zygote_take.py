"""A started zygote spare's take, ``/init`` and first ``/run``: wall time on the invoker's
side and CPU time of the runtime (load-proof where the wall times are not).

    .venv/bin/python bench/zygote_take.py [--samples 10] [--rounds 3] [--memory 256]
        [--before /tmp/base-cold] [--busy 0.3]

A ``ProcessContainerFactory`` (isolated, with its Python zygote) in a child process per
tree and round (``--before TREE``: the trees take turns, round by round); each sample
waits for the spares (``Zygote.filled``) and 0.3 s of quiet, then creates a
``--memory`` MB ``python:3.11`` container (a started spare taken), runs ``/init`` of a
no-op and one ``/run``, and destroys it. Per sample: ``create`` and ``/init`` wall ms,
and the runtime's CPU ms (``/proc/PID/task/*/schedstat``, every thread of the spare's
pid 1) from just before its take through ``/init`` (its ``take`` and ``/init``), and
through the first ``/run``. Prints the medians per tree and round and the 1-minute load
average before and after.

Also, take through the first ``/run`` answered: ``init+run`` wall ms, ``take+init+run
cpu`` ms, the runtime's minor page faults (``rt faults``), and the voluntary
context switches (sleeps: each a wake-up to come) of the
runtime's threads (``rt sleeps``) and of this process, the invoker's side (``inv
sleeps``) — counts a loaded machine does not inflate as it does wall times — and the
time the runtime's threads spent runnable but waiting for a CPU (``rt waited``,
schedstat's run delay: a runtime woken onto the invoker's busy CPU waits there), the
runtime's CPU from before the take to the ``/init`` write (``rt cpu by /init``: its take
work done while the invoker went on; 0 when it waited for the invoker's CPU) with the
share of samples where it was more than 0.05 ms (``rt took ahead %``), and the share
where the runtime was then on the invoker's CPU, running or queued (``rt on inv cpu %``).
``--busy MS`` spins MS of the invoker's CPU between ``create`` and ``/init``, as the
server's started point and pool do on a cold start (≈ 0.3 ms, ``cold_timeline.py``). A container
that takes ``/init`` and ``/run`` written together (``InitAndRun``, branch ``pyzyg``) is
given them so; ``--sequential`` also runs this tree with the two exchanges of before
(``after-seq``), in turn with the others.
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


def run_delay_ns(pid: int) -> int:
    """ns every live thread of ``pid`` spent runnable but waiting for a CPU (schedstat's
    second field): a runtime woken onto a busy CPU waits there."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return sum(int((task / "schedstat").read_text().split()[1]) for task in tasks)


def last_cpu(pid: int | str) -> int:
    """The CPU ``pid``'s main thread runs on, or was last queued on (field 39 of its stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[36])


def spin(ms: float) -> None:
    """Busy ``ms`` of this thread's CPU (the invoker's own work after a take)."""
    end = time.thread_time() + ms / 1e3
    while time.thread_time() < end:
        pass


def faults(pid: int) -> int:
    """Minor page faults of ``pid`` (every thread: field 10 of its stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def sleeps(pid: int | str) -> int:
    """Voluntary context switches of every live thread of ``pid``."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


async def samples(count: int, memory: int, sequential: bool, busy: float) -> dict[str, float]:
    from squall.sandbox.process import ProcessContainerFactory

    factory = ProcessContainerFactory(Path(tempfile.mkdtemp()) / "c", "https://api")
    out: dict[str, list[float]] = {"create": [], "init": [], "take+init cpu": [], "run cpu": []}
    out.update({"init+run": [], "take+init+run cpu": [], "rt sleeps": [], "inv sleeps": []})
    out["rt faults"] = []
    out["rt waited"] = []
    out["rt cpu by /init"] = []
    out["rt on inv cpu"] = []
    try:
        await factory.create("python:3.11", memory, {}, tenant="guest")  # starts the zygote
        zygote = factory.zygote
        assert zygote is not None
        for _ in range(count):
            await zygote.filled()
            await asyncio.sleep(0.3)
            pid = zygote._spares[0].pid  # the oldest: taken next unless one fits better
            before, slept, inv_slept = cpu_ns(pid), sleeps(pid), sleeps("self")
            faulted, waited = faults(pid), run_delay_ns(pid)
            t0 = time.perf_counter()
            container = await factory.create("python:3.11", memory, {}, tenant="guest")
            t1 = time.perf_counter()
            spin(busy)  # the server's own work between the take and the /init write
            taking = cpu_ns(pid)  # the runtime's take work done meanwhile (0: none yet)
            placed = last_cpu(pid) == last_cpu("self")  # woken onto the invoker's CPU
            initialized = None
            if getattr(container, "pipelines", False) and not sequential:
                init, answer = await container.initialize_and_run(
                    {"code": NOOP}, {"value": {}}, 10, lambda i: i.status == 200
                )
                assert answer is not None
                run = answer
                t2 = t3 = time.perf_counter()
            else:
                init = await container.initialize({"code": NOOP}, timeout=10)
                t2 = time.perf_counter()
                initialized = cpu_ns(container.pid)
                run = await container.run({"value": {}}, timeout=10)
                t3 = time.perf_counter()
            ran = cpu_ns(container.pid)
            inv_slept = sleeps("self") - inv_slept
            assert init.status == 200 and run.status == 200, (init, run)
            if container.pid == pid:  # the spare sampled was the one taken
                if initialized is not None:
                    out["take+init cpu"].append((initialized - before) / 1e6)
                out["take+init+run cpu"].append((ran - before) / 1e6)
                out["rt sleeps"].append(sleeps(pid) - slept)
                out["rt faults"].append(faults(pid) - faulted)
                out["rt waited"].append((run_delay_ns(pid) - waited) / 1e6)
                out["rt cpu by /init"].append((taking - before) / 1e6)
                out["rt on inv cpu"].append(1.0 if placed else 0.0)
            if initialized is not None:
                out["run cpu"].append((ran - initialized) / 1e6)
                out["init"].append((t2 - t1) * 1e3)
            out["create"].append((t1 - t0) * 1e3)
            out["init+run"].append((t3 - t1) * 1e3)
            out["inv sleeps"].append(inv_slept)
            await container.destroy()
    finally:
        await factory.close()
    found = {k: round(statistics.median(v), 3) if v else float("nan") for k, v in out.items()}
    on_inv = out.pop("rt on inv cpu")
    found.pop("rt on inv cpu")
    found["rt on inv cpu %"] = round(100 * sum(on_inv) / len(on_inv)) if on_inv else 0
    ahead = out["rt cpu by /init"]  # the share of takes whose work overlapped the invoker's
    took = sum(c > 0.05 for c in ahead)
    found["rt took ahead %"] = round(100 * took / len(ahead)) if ahead else 0
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10, help="per tree and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", type=int, default=256)
    parser.add_argument("--before", type=Path, help="also this tree, in turn")
    parser.add_argument(
        "--sequential", action="store_true", help="this tree without pipelining too"
    )
    parser.add_argument(
        "--busy",
        type=float,
        default=0.0,
        help="ms of CPU the invoker spends between create and /init (the server's: ~0.3)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        found = asyncio.run(samples(args.samples, args.memory, args.sequential, args.busy))
        print(json.dumps(found))
        return
    trees = {"after": REPO, **({"before": args.before.resolve()} if args.before else {})}
    if args.sequential:
        trees["after-seq"] = REPO
    print(f"1-minute load before: {Path('/proc/loadavg').read_text().split()[0]}")
    for round_ in range(args.rounds):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree)}
            argv = [sys.executable, __file__, "--child", "--samples", str(args.samples)]
            argv += ["--memory", str(args.memory), "--busy", str(args.busy)] + (
                ["--sequential"] if name == "after-seq" else []
            )
            done = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True)
            result = done.stdout.strip().splitlines()[-1] if done.returncode == 0 else done.stderr
            print(f"round {round_ + 1} {name}: {result}")
    print(f"1-minute load after: {Path('/proc/loadavg').read_text().split()[0]}")


if __name__ == "__main__":
    main()
