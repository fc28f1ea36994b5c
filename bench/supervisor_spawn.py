"""The supervisor's spawn alone: the invoker's request to pid 1 until its reply (issue 12).

Usage::

    PYTHONPATH=. .venv/bin/python bench/supervisor_spawn.py [--spawns 200] [--rounds 6]
        [--before DIR]

Each round starts one supervisor (:class:`squall.sandbox.supervisor.Supervisor`) in a
cpuacct cgroup of its own and asks it ``--spawns`` times, one at a time, for ``/bin/true``
as an unprivileged uid, joining a container cgroup of its own before the exec — the
steps of a true cold start's spawn, with bubblewrap replaced by ``/bin/true``. Per spawn:
the wall time of :meth:`Supervisor.spawn` (send → ``pid`` reply) and the CPU of the
supervisor's cgroups (pid 1, the forked child until and after its exec of ``/bin/true``:
the exec is the same in both trees). With ``--before DIR`` the rounds alternate between
this tree and ``DIR`` (each first every other round), each in a process of its own with
its tree on ``PYTHONPATH``. Prints a table and JSON (with the 1-minute load before and
after); writes ``bench/results/supervisor_spawn.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CPUACCT = Path("/sys/fs/cgroup/cpuacct")
UID = 0x7000_0000 + 4242


def _usage(group: Path) -> int:
    return int((group / "cpuacct.usage").read_text())


async def _measure(spawns: int) -> dict[str, float]:
    from squall.sandbox.supervisor import Supervisor

    base = CPUACCT / f"squall-bench-spawn-{os.getpid()}"
    sup, box = base / "sup", base / "box"
    for group in (base, sup, box):
        group.mkdir()
    supervisor = Supervisor("bench", [sup / "cgroup.procs"], [])
    walls: list[float] = []
    try:
        supervisor.start()
        null = os.open(os.devnull, os.O_WRONLY)
        for _ in range(20):  # warm-up: the first spawns touch pid 1's pages
            spawned = await supervisor.spawn(
                ["/bin/true"], {}, stdout=null, stderr=null, fds=[], uid=UID,
                nofile=1024, cgroup=[box / "cgroup.procs"],
            )  # fmt: skip
            os.close(spawned.pidfd)
        await asyncio.sleep(0.2)
        cpu0 = _usage(sup) + _usage(box)
        for _ in range(spawns):
            began = time.perf_counter()
            spawned = await supervisor.spawn(
                ["/bin/true"], {}, stdout=null, stderr=null, fds=[], uid=UID,
                nofile=1024, cgroup=[box / "cgroup.procs"],
            )  # fmt: skip
            walls.append((time.perf_counter() - began) * 1000)
            os.close(spawned.pidfd)
            await asyncio.sleep(0.005)  # /bin/true exits, pid 1 reaps it: off the clock
        await asyncio.sleep(0.2)
        cpu = (_usage(sup) + _usage(box) - cpu0) / spawns / 1e6
        os.close(null)
    finally:
        supervisor.close()
        for group in (box, sup, base):
            for _ in range(50):  # bounded: the last children may still be leaving
                try:
                    group.rmdir()
                    break
                except OSError:
                    await asyncio.sleep(0.02)
    walls.sort()
    return {
        "wall_p50_ms": statistics.median(walls),
        "wall_p90_ms": walls[int(len(walls) * 0.9)],
        "wall_min_ms": walls[0],
        "cpu_per_spawn_ms": cpu,
    }


def _round(tree: str, spawns: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(spawns)],
        env=env, capture_output=True, check=True, timeout=300,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spawns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--before", default=None)
    parser.add_argument("--worker", type=int, default=None)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(asyncio.run(_measure(args.worker))))
        return
    here = str(Path(__file__).resolve().parent.parent)
    trees = {"after": here} | ({"before": args.before} if args.before else {})
    load0 = os.getloadavg()[0]
    rows: list[dict[str, object]] = []
    for index in range(args.rounds):
        order = list(trees) if index % 2 == 0 else list(reversed(trees))
        for name in order:
            load = os.getloadavg()[0]
            row: dict[str, object] = {"round": index, "tree": name, "load": load}
            row |= _round(trees[name], args.spawns)
            rows.append(row)
            print(
                f"round {index} {name:6} load {load:5.2f}  wall p50 {row['wall_p50_ms']:.3f}"
                f" p90 {row['wall_p90_ms']:.3f} min {row['wall_min_ms']:.3f} ms"
                f"  CPU/spawn {row['cpu_per_spawn_ms']:.3f} ms",
                flush=True,
            )
    summary = {
        name: {
            key: statistics.median(float(r[key]) for r in rows if r["tree"] == name)  # type: ignore[arg-type]
            for key in ("wall_p50_ms", "wall_p90_ms", "cpu_per_spawn_ms")
        }
        for name in trees
    }
    print("\n| tree | wall p50 ms | wall p90 ms | CPU per spawn ms |\n|---|---|---|---|")
    for name, figures in summary.items():
        print(
            f"| {name} | {figures['wall_p50_ms']:.3f} | {figures['wall_p90_ms']:.3f}"
            f" | {figures['cpu_per_spawn_ms']:.3f} |"
        )
    result = {
        "load_before": load0,
        "load_after": os.getloadavg()[0],
        "rows": rows,
        "median": summary,
    }
    print(json.dumps(result["median"]))
    out = Path(here) / "bench" / "results" / "supervisor_spawn.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
