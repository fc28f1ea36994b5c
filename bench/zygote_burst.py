"""A burst of forked Python containers through the process sandbox: where its time goes.

    .venv/bin/python bench/zygote_burst.py [--burst 100] [--bursts 2] [--rounds 3] [--gap 2]
        [--network egress|none] [--spares N] [--before TREE]

B8 (``invoker_bench.py``) measures a burst of 100 never-invoked Python actions through the
whole API. This script takes the server out and measures the sandbox's share of it: one
:class:`~squall.sandbox.process.ProcessContainerFactory` (isolation on, its sandbox network
as the server opens it unless ``--network none``), one tenant whose zygote is started and
whose spares are forked (untimed), then ``--rounds`` bursts ``--gap`` seconds apart (B8's
rhythm on one server): ``--burst`` containers created at once — each ``create`` (128 MB),
``/init`` of a no-op action, one ``/run`` and its logs, as the invoker does for a cold
start — and destroyed after the burst (untimed). Per burst:

- ``per_s``: sandboxes per second = burst / (last ``/run`` answered - first ``create``
  called);
- ``create`` / ``ready`` p50 and max: when ``create`` returned, when the first ``/run``
  was answered (ms after the burst started);
- CPU per sandbox (ms, ``/proc/PID/task/TID/schedstat``): this process (the invoker's
  share: its event loop thread and its worker threads apart), the zygote (its fork loop),
  the containers' runtimes (every thread of their pid 1, since their fork);
- ``all``: the CPU of the whole process tree (this process and everything it forked, the
  short-lived processes too) from a cpuacct cgroup (v1) the script puts itself into;
- the stages the invoker awaits per forked container, summed over the burst (ms), with
  how many were in flight at most: ``fork`` (from ``fork`` sent to the pid reported),
  ``move`` (the ``cgroup.procs`` writes), ``link`` (the network link), ``ready`` (``go``
  sent to the ready byte). These come from wrappers this script puts around the methods
  of the version it runs, where that version has them.

Each factory runs in a child process. ``--before TREE`` runs ``--bursts`` factories of
each version, taking turns: children that import ``squall`` from ``TREE`` (another
version, e.g. ``git archive main squall | tar -x -C TREE``) and from this tree. The
1-minute load average is recorded before and after every burst. Prints a table and
writes ``bench/results/zygote_burst.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from squall.sandbox.process import ProcessContainerFactory

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "zygote_burst.json"
CODE = "def main(args):\n    return {}\n"
PAYLOAD = {
    "value": {},
    "namespace": "guest",
    "action_name": "noop",
    "action_version": "0.0.1",
    "activation_id": "0" * 32,
    "transaction_id": "t" * 32,
    "deadline": "0",
}
TENANT = "guest"


def thread_cpu_ns(pid: int) -> dict[str, int]:
    """CPU time of each thread of ``pid`` by thread name (summed per name)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                name = Path(f"/proc/{pid}/task/{task}/comm").read_text().strip()
                ns = int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
                key = "loop" if int(task) == pid else name
                out[key] = out.get(key, 0) + ns
    return out


CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def own_cpuacct() -> Path | None:
    """A cpuacct cgroup (v1) of this process's own, inherited by everything it forks
    (the factory never moves a process in that hierarchy): the CPU of the whole tree —
    the short-lived processes too — in one counter. None where there is none."""
    if not (CPUACCT / "cpuacct.usage").exists():
        return None
    group = CPUACCT / f"squall-zburst-{os.getpid()}"
    group.mkdir(exist_ok=True)
    (group / "cgroup.procs").write_text(str(os.getpid()))
    return group


def cpuacct_ns(group: Path | None) -> int:
    return int((group / "cpuacct.usage").read_text()) if group is not None else 0


def cpu_ns(pids: set[int]) -> int:
    return sum(sum(thread_cpu_ns(pid).values()) for pid in pids)


class Stages:
    """Durations of named awaits, summed, with the most in flight at once."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, name: str) -> float:
        with self._lock:
            self.flight[name] = self.flight.get(name, 0) + 1
            self.peak[name] = max(self.peak.get(name, 0), self.flight[name])
        return time.perf_counter()

    def leave(self, name: str, t0: float) -> None:
        with self._lock:
            self.flight[name] -= 1
            self.total[name] = self.total.get(name, 0.0) + time.perf_counter() - t0
            self.count[name] = self.count.get(name, 0) + 1

    def wrap_async(self, owner: Any, attr: str, name: str) -> None:
        original = getattr(owner, attr, None)
        if original is None:
            return

        async def wrapper(*a: Any, **k: Any) -> Any:
            t0 = self.enter(name)
            try:
                return await original(*a, **k)
            finally:
                self.leave(name, t0)

        setattr(owner, attr, wrapper)

    def wrap_sync(self, owner: Any, attr: str, name: str) -> None:
        original = getattr(owner, attr, None)
        if original is None:
            return

        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = self.enter(name)
            try:
                return original(*a, **k)
            finally:
                self.leave(name, t0)

        setattr(owner, attr, wrapper)

    def report(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "sum_ms": round(self.total[name] * 1000, 1),
                "n": self.count[name],
                "mean_ms": round(self.total[name] * 1000 / self.count[name], 2),
                "peak_in_flight": self.peak[name],
            }
            for name in sorted(self.total)
        }


def instrument(stages: Stages) -> None:
    """Wrap the stages of the version imported (absent ones are skipped)."""
    from squall.sandbox import cgroups, spare, zygote
    from squall.sandbox.network import SandboxNetwork

    stages.wrap_async(spare, "receive_pid", "fork")
    zygote.receive_pid = spare.receive_pid  # type: ignore[attr-defined]
    stages.wrap_sync(cgroups.Cgroup, "attach", "move")
    stages.wrap_async(SandboxNetwork, "attach", "link")
    stages.wrap_async(spare.Spare, "ready", "ready")
    stages.wrap_async(zygote.Zygote, "take", "take")


def bench_factory(tmp: str, network: bool, **options: Any) -> ProcessContainerFactory:
    """The burst scripts' container factory: its containers under ``tmp``, the API at
    127.0.0.1:3233 (never called), an egress-only network for each sandbox when
    ``network``. Imported here, not at the top: the script runs against the tree its
    ``PYTHONPATH`` names."""
    from squall.sandbox.egress import EgressPolicy
    from squall.sandbox.network import SandboxNetwork
    from squall.sandbox.process import ProcessContainerFactory

    api = ("127.0.0.1", 3233)
    return ProcessContainerFactory(
        Path(tmp) / "containers",
        f"http://{api[0]}:{api[1]}",
        network=SandboxNetwork(EgressPolicy(), api) if network else None,
        network_default=network,
        **options,
    )


async def measured_burst(
    factory: Any, burst: int, network: bool, stages: Stages, tree_group: Path | None
) -> dict[str, Any]:
    """One burst on ``factory`` (its zygote running): the figures of the module docstring."""
    zygote = factory.zygote_of(TENANT, factory.zygote_kind)
    assert zygote is not None, "no zygote"
    stages.__init__()  # type: ignore[misc]
    spares = zygote.spares
    zpids = zygote.pids()
    me = os.getpid()
    cpu0_me = thread_cpu_ns(me)
    cpu0_zygote = cpu_ns(zpids)
    cpu0_tree = cpuacct_ns(tree_group)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    created: list[float] = []
    ready: list[float] = []

    async def cold() -> Any:
        container = await factory.create(factory.zygote_kind, 128, tenant=TENANT, network=network)
        created.append(time.perf_counter() - t0)
        answer = await container.initialize({"name": "noop", "code": CODE}, timeout=30)
        assert answer.status == 200, answer.body
        answer = await container.run(PAYLOAD, timeout=30)
        assert answer.status == 200, answer.body
        await container.logs(1 << 20, wait=5)
        ready.append(time.perf_counter() - t0)
        return container

    profile = None
    if os.environ.get("ZBURST_PROFILE"):
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    containers = await asyncio.gather(*(cold() for _ in range(burst)))
    if profile is not None:
        profile.disable()
        profile.dump_stats(os.environ["ZBURST_PROFILE"])
    span = time.perf_counter() - t0
    # For a profile of the burst alone (perf record -k CLOCK_MONOTONIC ...).
    now = time.clock_gettime(time.CLOCK_MONOTONIC)
    print(f"burst window (CLOCK_MONOTONIC): {now - span:.6f} {now:.6f}", file=sys.stderr)
    cpu1_me = thread_cpu_ns(me)
    cpu_zygote = cpu_ns(zpids) - cpu0_zygote
    cpu_tree = cpuacct_ns(tree_group) - cpu0_tree
    runtimes = sum(cpu_ns(c.cgroup.pids()) for c in containers if c.cgroup is not None)
    load1 = os.getloadavg()[0]
    await asyncio.gather(*(c.destroy() for c in containers))
    mine = {k: (v - cpu0_me.get(k, 0)) / 1e6 / burst for k, v in cpu1_me.items()}
    return {
        "spares_before": spares,
        "per_s": round(burst / span, 1),
        "span_s": round(span, 3),
        "create_ms": {
            "p50": round(statistics.median(created) * 1000, 1),
            "max": round(max(created) * 1000, 1),
        },
        "ready_ms": {
            "p50": round(statistics.median(ready) * 1000, 1),
            "max": round(max(ready) * 1000, 1),
        },
        "cpu_ms_per_sandbox": {
            "invoker": round(sum(mine.values()), 2),
            "invoker_threads": {k: round(v, 2) for k, v in sorted(mine.items()) if v > 0.005},
            "zygote": round(cpu_zygote / 1e6 / burst, 2),
            "runtimes": round(runtimes / 1e6 / burst, 2),
            "all": round(cpu_tree / 1e6 / burst, 2),
        },
        "stages": stages.report(),
        "load_average_1min": [load0, load1],
    }


async def bursts(
    burst: int, rounds: int, gap: float, network: bool, tree: str, spares: int | None
) -> list[dict[str, Any]]:
    """``rounds`` bursts on one factory, ``gap`` seconds apart (B8's rhythm)."""
    stages = Stages()
    instrument(stages)
    tree_group = own_cpuacct()
    out: list[dict[str, Any]] = []
    options: dict[str, Any] = {} if spares is None else {"zygote_spares": spares}
    with tempfile.TemporaryDirectory(prefix="squall-zburst-") as tmp:
        factory = bench_factory(tmp, network, **options)
        try:
            # The zygote's start and its spares, untimed (the namespace's first cold start).
            t0 = time.perf_counter()
            first = await factory.create(factory.zygote_kind, 128, tenant=TENANT, network=network)
            zygote_start_ms = round((time.perf_counter() - t0) * 1000, 1)
            await first.destroy()
            await asyncio.sleep(gap)
            for i in range(rounds):
                r = await measured_burst(factory, burst, network, stages, tree_group)
                head = {"tree": tree, "burst": burst, "round": i, "network": network}
                out.append(head | {"zygote_start_ms": zygote_start_ms} | r)
                await asyncio.sleep(gap)
        finally:
            await factory.close()
            if tree_group is not None:
                (CPUACCT / "cgroup.procs").write_text(str(os.getpid()))
                with contextlib.suppress(OSError):
                    tree_group.rmdir()
    return out


def child(tree: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--one", "--burst", str(args.burst), "--network", args.network]
    cmd += ["--rounds", str(args.rounds), "--gap", str(args.gap)]
    if args.spares is not None:
        cmd += ["--spares", str(args.spares)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"burst on {tree} failed:\n{done.stderr[-4000:]}")
    result: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def print_row(label: str, r: dict[str, Any]) -> None:
    cpu = r["cpu_ms_per_sandbox"]
    stages = " ".join(
        f"{k} {v['mean_ms']:.1f}ms x{v['n']} (<={v['peak_in_flight']})"
        for k, v in r["stages"].items()
    )
    print(
        f"{label:<8} {r['per_s']:>6.1f}/s  ready p50/max {r['ready_ms']['p50']:>6.0f}/"
        f"{r['ready_ms']['max']:<6.0f} CPU inv {cpu['invoker']:.2f} zyg {cpu['zygote']:.2f} "
        f"rt {cpu['runtimes']:.2f} all {cpu['all']:.2f} ms spares {r['spares_before']} "
        f"load {r['load_average_1min'][0]:.1f} (zygote's start {r['zygote_start_ms']:.0f} ms)  "
        f"{stages}"
    )
    print(f"         invoker threads: {cpu['invoker_threads']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--bursts", type=int, default=2, help="factories per tree, in turns")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per factory")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between bursts")
    parser.add_argument("--network", choices=("egress", "none"), default="egress")
    parser.add_argument("--spares", type=int, help="the factory's zygote_spares (default: its own)")
    parser.add_argument("--before", type=Path, help="also this tree's squall, taking turns")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        tree = os.environ.get("PYTHONPATH", str(REPO)).split(os.pathsep)[0]
        sys.path.insert(0, tree)
        result = asyncio.run(
            bursts(args.burst, args.rounds, args.gap, args.network == "egress", tree, args.spares)
        )
        print(json.dumps(result))
        return
    trees = {"after": REPO} | ({"before": args.before} if args.before else {})
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for i in range(args.bursts):
        order = list(trees.items()) if i % 2 == 0 else list(reversed(trees.items()))
        for name, tree in order:
            for r in child(tree, args):
                runs[name].append(r)
                print_row(f"{name} {r['round']}", r)
    summary = {
        name: {
            "per_s_median": statistics.median(r["per_s"] for r in rs),
            "cpu_invoker_median": statistics.median(r["cpu_ms_per_sandbox"]["invoker"] for r in rs),
            "cpu_runtimes_median": statistics.median(
                r["cpu_ms_per_sandbox"]["runtimes"] for r in rs
            ),
            "cpu_zygote_median": statistics.median(r["cpu_ms_per_sandbox"]["zygote"] for r in rs),
            "cpu_all_median": statistics.median(r["cpu_ms_per_sandbox"]["all"] for r in rs),
        }
        for name, rs in runs.items()
    }
    print(json.dumps(summary, indent=1))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {"parameters": {k: str(v) for k, v in vars(args).items()}, "summary": summary}
    args.output.write_text(json.dumps(report | {"runs": runs}, indent=2) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
