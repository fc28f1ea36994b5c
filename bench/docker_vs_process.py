"""Docker backend next to the process sandbox: cold start, warm invoke, containers per GiB.

    .venv/bin/python bench/docker_vs_process.py [--colds 10] [--runs 300] [--idle 10]
        [--kinds python:3.11,python:3.13,nodejs:20]

Both factories run in the same process and take turns, so load on the machine hits both
alike (the load average is recorded before and after). Per backend and kind
(``python:3.11``, ``python:3.13``, ``nodejs:20``, or those of ``--kinds``):

- ``cold``: ``create`` (until the runtime accepts connections) + ``/init`` of a no-op
  action + the first ``/run`` (with its logs), ``--colds`` times; destroy is not timed;
- ``warm``: ``run`` + ``logs`` on one initialized container, ``--runs`` times in a row
  (the invoker's per-activation work on a warm container);
- ``MiB/container``: ``--idle`` initialized, idle containers side by side; the
  proportional set size (PSS, so shared pages are split between their users) of every
  process that exists for a container: its cgroup's processes, plus for Docker its
  ``containerd-shim`` and for the process sandbox bubblewrap's monitor. ``per GiB`` is
  1024 divided by that: how many idle containers fit in a GiB of host memory.

The ratio column is Docker / process sandbox. Writes ``bench/results/docker_vs_process.json``.
Needs root, a dockerd (tests/dockersupport.py or ``python -m squall.sandbox.dockerd``) and
the runtime images (``python -m squall.sandbox.images``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from squall.sandbox.contracts import Container, ContainerFactory  # noqa: E402
from squall.sandbox.docker import DockerContainerFactory  # noqa: E402
from squall.sandbox.dockercontainer import DockerContainer  # noqa: E402
from squall.sandbox.process import ProcessContainer, ProcessContainerFactory  # noqa: E402

RESULTS = REPO / "bench" / "results" / "docker_vs_process.json"
KINDS = ("python:3.11", "python:3.13", "nodejs:20")
NOOP = {
    "python:3.11": "def main(p):\n    return {}\n",
    "python:3.13": "def main(p):\n    return {}\n",
    "nodejs:20": "function main(p) { return {}; }\n",
}
BACKENDS = ("process", "docker")


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def cgroup_procs(pid: int) -> set[int]:
    """The processes in the memory cgroup of ``pid`` (v1 memory controller, or v2)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return set()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            procs = Path("/sys/fs/cgroup/memory" + path) / "cgroup.procs"
            break
        if controllers == "":
            procs = Path("/sys/fs/cgroup" + path) / "cgroup.procs"
    else:
        return set()
    try:
        return {int(p) for p in procs.read_text().split()}
    except OSError:
        return set()


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def container_pids(container: Container) -> set[int]:
    if isinstance(container, DockerContainer):
        return cgroup_procs(container.pid) | {parent(container.pid)}  # + containerd-shim
    assert isinstance(container, ProcessContainer)
    inner = container.sandbox_pid or container.pid
    return cgroup_procs(inner) | {container.pid}  # + bubblewrap's monitor


async def initialized(factory: ContainerFactory, kind: str) -> Container:
    container = await factory.create(kind, 256, network=False)
    answer = await container.initialize({"code": NOOP[kind], "main": "main"}, 30)
    assert answer.status == 200, answer
    await container.logs(10_000, 2)
    return container


async def cold(factory: ContainerFactory, kind: str) -> float:
    start = time.perf_counter()
    container = await factory.create(kind, 256, network=False)
    answer = await container.initialize({"code": NOOP[kind], "main": "main"}, 30)
    run = await container.run({"value": {}}, 30)
    await container.logs(10_000, 2)
    elapsed = time.perf_counter() - start
    assert answer.status == 200 and run.status == 200, (answer, run)
    await container.destroy()
    return elapsed * 1000


async def warm(factory: ContainerFactory, kind: str, runs: int) -> list[float]:
    container = await initialized(factory, kind)
    samples = []
    try:
        for _ in range(20):  # warm up
            await container.run({"value": {}}, 30)
            await container.logs(10_000, 2)
        for _ in range(runs):
            start = time.perf_counter()
            await container.run({"value": {}}, 30)
            await container.logs(10_000, 2)
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        await container.destroy()
    return samples


async def idle_memory(factory: ContainerFactory, kind: str, count: int) -> float:
    containers = [await initialized(factory, kind) for _ in range(count)]
    try:
        await asyncio.sleep(1.0)  # let start-up garbage settle
        pids: set[int] = set()
        for container in containers:
            pids |= container_pids(container)
        return sum(pss_kib(p) for p in pids) / 1024 / count
    finally:
        await asyncio.gather(*(c.destroy() for c in containers))


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--colds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--idle", type=int, default=10)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(NOOP))
    if unknown:
        parser.error(f"no no-op action for {', '.join(unknown)}")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as work:
        factories: dict[str, ContainerFactory] = {
            "process": ProcessContainerFactory(Path(work) / "p", "https://api", zygote_spares=0),
            "docker": DockerContainerFactory(Path(work) / "d", "https://api", builtin=True),
        }
        docker = factories["docker"]
        assert isinstance(docker, DockerContainerFactory)
        await docker.start()
        results: dict[str, dict[str, Any]] = {}
        try:
            for kind in kinds:
                colds: dict[str, list[float]] = {b: [] for b in BACKENDS}
                for _ in range(args.colds):  # taking turns
                    for backend in BACKENDS:
                        colds[backend].append(await cold(factories[backend], kind))
                for backend in BACKENDS:
                    factory = factories[backend]
                    samples = await warm(factory, kind, args.runs)
                    mib = await idle_memory(factory, kind, args.idle)
                    results[f"{backend} {kind}"] = {
                        "cold_p50_ms": statistics.median(colds[backend]),
                        "cold_p90_ms": quantile(colds[backend], 0.9),
                        "warm_p50_ms": statistics.median(samples),
                        "warm_p99_ms": quantile(samples, 0.99),
                        "mib_per_container": mib,
                        "containers_per_gib": 1024 / mib if mib else 0.0,
                    }
        finally:
            for factory in factories.values():
                await factory.close()
    load_after = os.getloadavg()
    columns = (
        "cold_p50_ms",
        "cold_p90_ms",
        "warm_p50_ms",
        "warm_p99_ms",
        "mib_per_container",
        "containers_per_gib",
    )
    print(f"{'':24}" + "".join(f"{c:>20}" for c in columns))
    for kind in kinds:
        for backend in BACKENDS:
            row = results[f"{backend} {kind}"]
            print(f"{backend + ' ' + kind:24}" + "".join(f"{row[c]:>20.2f}" for c in columns))
        ratio = {
            c: results[f"docker {kind}"][c] / results[f"process {kind}"][c]
            for c in columns
            if results[f"process {kind}"][c]
        }
        print(
            f"{'docker/process ' + kind:24}"
            + "".join(f"{ratio.get(c, 0):>19.2f}x" for c in columns)
        )
    print(f"load average before {load_before}, after {load_after} ({os.cpu_count()} CPUs)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "args": vars(args),
                "results": results,
                "load_before": load_before,
                "load_after": load_after,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
