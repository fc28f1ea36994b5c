"""System calls per warm blocking invoke of a standalone server, two source trees.

    .venv/bin/python bench/store_syscalls.py --other /tmp/base [--kind nodejs|python]
        [--invokes 300] [--rounds 2]

Starts a ``squall standalone`` from this tree and one from ``--other`` (one at a time,
``--rounds`` times each, in turns), creates a no-op action, warms it (300 invokes), then
attaches ``strace -c -f`` to the server's process (all its threads; the runtime's
processes, started before, are not traced) for ``--invokes`` sequential blocking invokes
over one keep-alive connection. Counts of system calls do not depend on the machine's
load, unlike times: the table gives all calls per invoke and SQLite's own (``pwrite64``:
two per WAL frame, a frame per b-tree page a commit changed; ``fcntl``: its locks;
``pread64``). JSON to ``bench/results/store_syscalls.json``. Only loopback is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from invoke_interleaved import Target
from invoke_latency import REPO, create_actions, own_server, write_turns_report

RESULTS = REPO / "bench" / "results" / "store_syscalls.json"
SHOWN = ("pwrite64", "fcntl", "pread64", "write", "epoll_pwait", "getpid")


def parse_strace(text: str) -> dict[str, int]:
    """Calls per system call from ``strace -c`` output (columns: % time, seconds,
    usecs/call, calls, [errors,] syscall)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[0][0].isdigit() or fields[-1] == "total":
            continue
        counts[fields[-1]] = int(fields[3])
    return counts


def measure(tree: Path, kind: str, invokes: int) -> dict[str, Any]:
    pids: list[int] = []
    with own_server(tree, pids=pids) as (apihost, auth):
        action = create_actions(apihost, auth, f"{os.getpid()}")[kind]
        target = Target(apihost, auth, action)
        target.block(300)  # warm: the container is started and reused from here on
        with tempfile.TemporaryDirectory(prefix="squall-strace-") as tmp:
            out = Path(tmp) / "strace.txt"
            tracer = subprocess.Popen(
                ["strace", "-c", "-f", "-o", str(out), "-p", str(pids[0])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # strace attaches to every thread
            target.block(invokes)
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
            counts = parse_strace(out.read_text())
    total = sum(counts.values())
    per = {name: round(counts.get(name, 0) / invokes, 2) for name in SHOWN}
    return {"all": round(total / invokes, 2), **per, "counts": counts, "invokes": invokes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, required=True, help="the other source tree")
    parser.add_argument("--kind", choices=("nodejs", "python"), default="nodejs")
    parser.add_argument("--invokes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    trees = {"this": REPO, "other": args.other.resolve()}
    started = time.time()
    load = [os.getloadavg()[0]]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for i in range(args.rounds):
        for name in list(trees) if i % 2 == 0 else list(reversed(trees)):
            with contextlib.suppress(KeyboardInterrupt):
                runs[name].append(measure(trees[name], args.kind, args.invokes))
    load.append(os.getloadavg()[0])
    print(
        f"{args.kind}: system calls per warm blocking invoke of the server, {args.invokes}"
        f" invokes per run, load average {load[0]:.1f} → {load[1]:.1f}"
    )
    print(f"{'tree':<7}{'all':>8}" + "".join(f"{name:>13}" for name in SHOWN))
    for name, results in runs.items():
        for r in results:
            print(f"{name:<7}{r['all']:>8}" + "".join(f"{r[s]:>13}" for s in SHOWN))
    write_turns_report("store_syscalls", started, args, load, runs)


if __name__ == "__main__":
    main()
