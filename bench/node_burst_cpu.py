"""Where a Node.js sandbox's CPU goes in a burst, process by process.

    .venv/bin/python bench/node_burst_cpu.py [--burst 40] [--rounds 2] [--network egress|none]
        [--kind nodejs:20]

One :class:`~squall.sandbox.process.ProcessContainerFactory` (isolation on, its sandbox
network as the server opens it unless ``--network none``), ``--rounds`` bursts of
``--burst`` containers of ``--kind`` (a Node.js kind of the manifest) created at once
(128 MB), each ``/init`` of a no-op, one ``/run`` and its logs, as the invoker does for a
true cold start; destroyed after the burst. CPU per sandbox (ms,
``/proc/PID/task/TID/schedstat``, by the process's ``comm``):

- ``node`` and ``pid1`` (the sandbox's supervisor, squall/sandbox/pid1.py) and any other
  process alive in the container at the end, each split into its start (until ``create``
  returned: the runtime listening) and ``/init`` + ``/run`` (after);
- ``invoker``: this process's threads (the factory's event loop, its network thread);
- ``supervisor``: the factory's spawning helper process (squall/sandbox/supervisor.py);
- ``all``: the whole process tree from a cpuacct cgroup (v1) this script joins, the
  short-lived processes too (bubblewrap's set-up, ``unshare``, ``mount``...); ``rest`` =
  ``all`` minus the above: the processes that exited before the end.

Also, one after another (no burst), ``node -e 0`` and ``node -e "require('http')"``: CPU
of a bare ``node`` start (user + system of the child, ``RUSAGE_CHILDREN``; in a sandbox's
minimal environment). The 1-minute
load average before and after each burst. Prints a table and writes
``bench/results/node_burst_cpu.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from zygote_burst import CPUACCT, bench_factory, cpuacct_ns, own_cpuacct, thread_cpu_ns

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "node_burst_cpu.json"
CODE = "function main(params) { return {}; }\n"
PAYLOAD = {"value": {}, "namespace": "guest", "action_name": "noop", "activation_id": "0" * 32}


def by_comm(pids: set[int]) -> dict[str, int]:
    """CPU so far of ``pids`` (every thread), summed by process name; pid 1 of a sandbox
    is named by its command line (``python``: squall/sandbox/pid1.py)."""
    out: dict[str, int] = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        key = "pid1" if name.startswith("python") else name
        out[key] = out.get(key, 0) + sum(thread_cpu_ns(pid).values())
    return out


def children(pid: int) -> set[int]:
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def sandbox_pids(container: Any) -> set[int]:
    pids = set(container.cgroup.pids()) if container.cgroup is not None else set()
    return pids | {container.pid}


async def burst(
    factory: Any, kind: str, n: int, network: bool, tree: Path | None
) -> dict[str, Any]:
    me = os.getpid()
    supervisor = factory.supervisor
    sup_pids = supervisor.pids() if supervisor is not None else set()
    sup_pids |= {c for pid in sup_pids for c in children(pid)}  # pid 1 of its namespace
    cpu0_me, cpu0_sup = sum(thread_cpu_ns(me).values()), by_comm(sup_pids)
    cpu0_tree, load0 = cpuacct_ns(tree), os.getloadavg()[0]
    t0 = time.perf_counter()
    at_create: list[dict[str, int]] = []

    async def cold() -> Any:
        container = await factory.create(kind, 128, network=network)
        at_create.append(by_comm(sandbox_pids(container)))
        answer = await container.initialize({"name": "noop", "code": CODE}, timeout=60)
        assert answer.status == 200, answer.body
        answer = await container.run(PAYLOAD, timeout=60)
        assert answer.status == 200, answer.body
        await container.logs(1 << 20, wait=5)
        return container

    containers = await asyncio.gather(*(cold() for _ in range(n)))
    span = time.perf_counter() - t0
    at_end = [by_comm(sandbox_pids(c)) for c in containers]
    invoker = sum(thread_cpu_ns(me).values()) - cpu0_me
    sup1 = by_comm(sup_pids)
    sup = sum(sup1.values()) - sum(cpu0_sup.values())
    tree_ns = cpuacct_ns(tree) - cpu0_tree
    load1 = os.getloadavg()[0]
    await asyncio.gather(*(c.destroy() for c in containers))
    names = sorted({k for d in at_end for k in d})
    start = {k: sum(d.get(k, 0) for d in at_create) for k in names}
    end = {k: sum(d.get(k, 0) for d in at_end) for k in names}
    ms = 1e6 * n
    sandbox = {
        k: {"start": round(start[k] / ms, 2), "init_run": round((end[k] - start[k]) / ms, 2)}
        for k in names
    }
    known = invoker + sup + sum(end.values())
    return {
        "burst": n,
        "per_s": round(n / span, 1),
        "cpu_ms_per_sandbox": {
            "sandbox": sandbox,
            "invoker": round(invoker / ms, 2),
            "supervisor": round(sup / ms, 2),
            "rest": round((tree_ns - known) / ms, 2) if tree is not None else None,
            "all": round(tree_ns / ms, 2) if tree is not None else None,
        },
        "load_average_1min": [load0, load1],
    }


def bare_node(node: str, script: str, n: int, *options: str) -> float:
    """Median CPU (ms) of ``node [options] -e script``, one after another, in a sandbox's
    minimal environment: a shell's ``NODE_EXTRA_CA_CERTS`` (the system's CA bundle, read
    at every start) alone made it ≈ 100 ms of CPU instead of ≈ 33 (node_start_cpu.py)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir(), "LANG": "C.UTF-8"}
    out = []
    for _ in range(n):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([node, *options, "-e", script], check=True, env=env)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.append((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000)
    return round(statistics.median(out), 1)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    network = args.network == "egress"
    tree = own_cpuacct()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="squall-nburst-") as tmp:
        factory = bench_factory(tmp, network)
        try:
            first = await factory.create(args.kind, 128, network=network)  # untimed: warms caches
            await first.destroy()
            for _ in range(args.rounds):
                await asyncio.sleep(args.gap)
                rounds.append(await burst(factory, args.kind, args.burst, network, tree))
            interpreter = factory.runtimes.get(args.kind)
            node = interpreter.executable if interpreter is not None else "node"
        finally:
            await factory.close()
            if tree is not None:
                (CPUACCT / "cgroup.procs").write_text(str(os.getpid()))
                tree.rmdir()
    bare = {
        "node -e 0": bare_node(str(node), "0", 10),
        "node -e require('http')": bare_node(str(node), "require('http')", 10),
        "node --v8-pool-size=1 -e 0": bare_node(str(node), "0", 10, "--v8-pool-size=1"),
    }
    return {"rounds": rounds, "bare_node_cpu_ms": bare, "node": str(node)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gap", type=float, default=2.0)
    parser.add_argument("--network", choices=("egress", "none"), default="egress")
    parser.add_argument("--kind", default="nodejs:20", help="a Node.js kind of the manifest")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    for r in result["rounds"]:
        cpu = r["cpu_ms_per_sandbox"]
        parts = " ".join(
            f"{k} {v['start']:.1f}+{v['init_run']:.1f}" for k, v in cpu["sandbox"].items()
        )
        print(
            f"burst {r['burst']}: {r['per_s']}/s; CPU ms per sandbox: {parts} (start+init/run); "
            f"invoker {cpu['invoker']} supervisor {cpu['supervisor']} rest {cpu['rest']} "
            f"all {cpu['all']}; load {r['load_average_1min'][0]:.1f} -> "
            f"{r['load_average_1min'][1]:.1f}"
        )
    print(f"bare node ({result['node']}), CPU ms p50 of 10: {result['bare_node_cpu_ms']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
