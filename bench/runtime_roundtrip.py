"""Warm /run round trip and cold start through the process sandbox, against baselines.

    .venv/bin/python bench/runtime_roundtrip.py [--runs 2000] [--colds 30] [--isolation]
    .venv/bin/python bench/runtime_roundtrip.py --zygote [--colds 40]
    .venv/bin/python bench/runtime_roundtrip.py --node [--colds 30] [--before TREE]

Creates one container per runtime (``nodejs:20``, ``python:3.11``) through
:class:`~squall.sandbox.process.ProcessContainerFactory`, initializes a no-op action, warms
it, and measures ``--runs`` sequential warm activations:

- ``run``: ``container.run(...)`` alone (one HTTP exchange on the kept-alive socket);
- ``run+logs``: ``run`` then ``logs(...)``, i.e. also waiting for both sentinel lines, as
  the invoker does for every activation.

The baseline is the same HTTP client against a null server in a child process that
answers every request with ``{}`` and does nothing else: what remains above it is the
cost of the runtime proxies. Cold starts are measured ``--colds`` times per kind: create
(until the runtime listens), /init of the no-op action, and destroy.

Containers are isolated (namespaces and cgroups) as the invoker runs them. With
``--isolation`` every figure is measured twice — isolated, and as plain processes without
isolation, taking turns so that load changes hit both alike — and the table shows what
isolation costs (``iso/plain``). Writes ``bench/results/runtime_roundtrip.json``.

``--zygote`` measures only ``python:3.11`` cold starts (isolated), by tier, taking turns:

- ``bwrap``: a true cold start, the runtime started through bubblewrap (zygote off);
- ``zygote``: forked by the zygote from a spare (the spares are refilled, untimed, after
  each sample of a tier with a zygote: an invoker between bursts; and no tier's sample
  competes with another tier's refill);
- ``zygote-no-spare``: forked by a zygote without spares (fork, namespaces and the cgroup
  move on the request path: a burst that used up the spares);
- ``stem-cell``: a container started beforehand (untimed) and taken: only /init.

Per tier: ``create``, ``init``, ``first-run`` (the first /run), ``cold`` (the three), and
``cold-warm``: ``cold`` minus a warm /run's p50 — the cold start's own cost. Writes
``bench/results/runtime_roundtrip_zygote.json``.

``--node`` measures ``nodejs:20`` cold starts (isolated, no network), the same figures,
by tier, taking turns:

- ``true cold``: create, then /init at once (the proxy gets no time to warm up);
- ``true cold, warm-up first``: the same with ``__OW_WARM_UP_AFTER_MS=0`` (the proxy warms
  up before it says it is ready: what warming every container would cost a cold start);
- ``stem cell``: a container created beforehand and left idle ``--idle`` seconds
  (untimed: a stem cell waiting for its action), then /init and the first /run.

Besides the wall times, ``runtime-cpu``: the CPU time the container's processes spent on
the /init and the first /run (``/proc/PID/task/TID/schedstat``), steadier under load.

With ``--before TREE`` (a checkout of another version, e.g. ``git worktree add --detach
/tmp/base main``), ``true cold`` and ``stem cell`` are also measured with that tree's
Node.js proxy (``before ...``), every sample taking turns with this tree's. Writes
``bench/results/runtime_roundtrip_node.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import squall.sandbox.processbase as processbase  # noqa: E402
from squall.runtimes import proxy_path  # noqa: E402
from squall.sandbox.http import UnixHttpClient  # noqa: E402
from squall.sandbox.process import ProcessContainer, ProcessContainerFactory  # noqa: E402

RESULTS = REPO / "bench" / "results" / "runtime_roundtrip.json"
ZYGOTE_RESULTS = REPO / "bench" / "results" / "runtime_roundtrip_zygote.json"
NODE_RESULTS = REPO / "bench" / "results" / "runtime_roundtrip_node.json"
NODE_KIND = "nodejs:20"
TIERS = ("bwrap", "zygote", "zygote-no-spare", "stem-cell")
TIER_FIGURES = ("create", "init", "first-run", "cold", "cold-warm")
FIGURES = ("run", "run+logs", "create", "init", "create+init", "destroy")
#: The Python kind measured (``--python``; a zygote forks it when it is the default Python
#: kind, e.g. through an operator's manifest in SQUALL_RUNTIMES_MANIFEST).
PYTHON_KIND = "python:3.11"
PYTHON_NOOP = "def main(args):\n    return {}\n"
ACTIONS = {
    "nodejs:20": "function main(params) { return {}; }",
    PYTHON_KIND: PYTHON_NOOP,
}
PAYLOAD = {
    "value": {"name": "bench"},
    "namespace": "guest",
    "action_name": "noop",
    "action_version": "0.0.1",
    "activation_id": "0" * 32,
    "transaction_id": "t" * 32,
    "deadline": "0",
}
# A server that answers each request with {} and nothing else (blocking, one connection).
NULL_SERVER = r"""
import os, socket, sys
path = sys.argv[1]
listener = socket.socket(socket.AF_UNIX); listener.bind(path); listener.listen()
print("ready", flush=True)
conn, _ = listener.accept()
buffer = b""
answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
while True:
    data = conn.recv(65536)
    if not data:
        break
    buffer += data
    while b"\r\n\r\n" in buffer:
        head, _, rest = buffer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        if len(rest) < length:
            break
        buffer = rest[length:]
        conn.sendall(answer)
"""


def summary(samples_ns: list[int]) -> dict[str, float]:
    micros = sorted(s / 1000 for s in samples_ns)

    def pct(p: float) -> float:
        return micros[min(len(micros) - 1, int(p * len(micros)))]

    return {
        "p50_us": round(pct(0.50), 1),
        "p90_us": round(pct(0.90), 1),
        "p99_us": round(pct(0.99), 1),
        "mean_us": round(statistics.fmean(micros), 1),
    }


async def measure_baseline(runs: int, workdir: Path) -> dict[str, float]:
    path = workdir / "null.sock"
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", NULL_SERVER, str(path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert server.stdout is not None and (await server.stdout.readline()).strip() == b"ready"
        client = UnixHttpClient(path, max_response_bytes=1 << 20)
        body = json.dumps(PAYLOAD).encode()
        for _ in range(200):
            await client.post("/run", body)
        samples = []
        for _ in range(runs):
            started = time.perf_counter_ns()
            await client.post("/run", body)
            samples.append(time.perf_counter_ns() - started)
        await client.aclose()
        return summary(samples)
    finally:
        server.kill()
        await server.wait()


Samples = dict[str, list[int]]  # figure -> nanoseconds


async def cold_start(factory: ProcessContainerFactory, kind: str, into: Samples) -> None:
    """One cold start: create, /init (the invoker's cold start), then destroy."""
    t0 = time.perf_counter_ns()
    container = await factory.create(kind, 256, tenant="bench")
    t1 = time.perf_counter_ns()
    answer = await container.initialize({"name": "noop", "code": ACTIONS[kind]}, timeout=10)
    t2 = time.perf_counter_ns()
    assert answer.status == 200, answer.body
    await container.destroy()
    t3 = time.perf_counter_ns()
    into["create"].append(t1 - t0)
    into["init"].append(t2 - t1)
    into["create+init"].append(t2 - t0)
    into["destroy"].append(t3 - t2)


async def warm_container(factory: ProcessContainerFactory, kind: str) -> ProcessContainer:
    container = await factory.create(kind, 256, tenant="bench")
    answer = await container.initialize({"name": "noop", "code": ACTIONS[kind]}, timeout=10)
    assert answer.status == 200, answer.body
    await container.logs(1 << 20, wait=5)
    for _ in range(200):  # warm the JIT, caches and connection
        await container.run(PAYLOAD, timeout=10)
        await container.logs(1 << 20, wait=5)
    return container


async def warm_runs(container: ProcessContainer, runs: int, into: Samples) -> None:
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        answer = await container.run(PAYLOAD, timeout=10)
        t1 = time.perf_counter_ns()
        await container.logs(1 << 20, wait=5)
        t2 = time.perf_counter_ns()
        assert answer.status == 200
        into["run"].append(t1 - t0)
        into["run+logs"].append(t2 - t0)


async def measure(
    workdir: Path, modes: list[str], runs: int, colds: int
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Every figure per mode and kind. Modes take turns (blocks of 100 warm runs, single
    cold starts), so that a change in the machine's load hits them alike."""
    factories = {
        mode: ProcessContainerFactory(
            workdir / mode,
            "http://127.0.0.1:3233",
            isolation="auto" if mode == "isolated" else None,
        )
        for mode in modes
    }
    samples: dict[str, dict[str, Samples]] = {
        mode: {kind: {what: [] for what in FIGURES} for kind in ACTIONS} for mode in modes
    }
    try:
        for kind in ACTIONS:
            warm = {mode: await warm_container(factories[mode], kind) for mode in modes}
            for block in range(0, runs, 100):
                for mode in modes:
                    await warm_runs(warm[mode], min(100, runs - block), samples[mode][kind])
            for container in warm.values():
                await container.destroy()
            for _ in range(colds):
                for mode in modes:
                    await cold_start(factories[mode], kind, samples[mode][kind])
    finally:
        for factory in factories.values():
            await factory.close()
    return {
        mode: {
            kind: {what: summary(ns) for what, ns in figures.items()}
            for kind, figures in kinds.items()
        }
        for mode, kinds in samples.items()
    }


async def tier_cold_start(
    factory: ProcessContainerFactory, tier: str, warm_p50_ns: float, into: Samples
) -> None:
    """One Python cold start of ``tier`` (see the module docstring)."""
    kind = PYTHON_KIND
    zygote = factory.zygote
    if tier == "zygote" and zygote is not None:
        await zygote.filled()
    ready = await factory.create(kind, 256, tenant="bench") if tier == "stem-cell" else None
    t0 = time.perf_counter_ns()
    container = ready if ready is not None else await factory.create(kind, 256, tenant="bench")
    t1 = time.perf_counter_ns()
    answer = await container.initialize({"name": "noop", "code": ACTIONS[kind]}, timeout=10)
    t2 = time.perf_counter_ns()
    run = await container.run(PAYLOAD, timeout=10)
    t3 = time.perf_counter_ns()
    assert answer.status == 200 and run.status == 200, (answer, run)
    await container.logs(1 << 20, wait=5)
    await container.destroy()
    if zygote is not None:  # its spares back, untimed: not forked during another tier's turn
        await zygote.filled()
    into["create"].append(t1 - t0)
    into["init"].append(t2 - t1)
    into["first-run"].append(t3 - t2)
    into["cold"].append(t3 - t0)
    into["cold-warm"].append(int(t3 - t0 - warm_p50_ns))


async def measure_tiers(workdir: Path, colds: int) -> dict[str, dict[str, dict[str, float]]]:
    """python:3.11 cold starts per tier, taking turns; see the module docstring."""
    settings: dict[str, dict[str, Any]] = {
        "bwrap": {"zygote": False},
        "zygote": {},
        "zygote-no-spare": {"zygote_spares": 0},
        "stem-cell": {"zygote": False},
    }
    factories = {
        tier: ProcessContainerFactory(workdir / tier, "http://127.0.0.1:3233", **options)
        for tier, options in settings.items()
    }
    samples: dict[str, Samples] = {tier: {what: [] for what in TIER_FIGURES} for tier in TIERS}
    try:
        warm = await warm_container(factories["bwrap"], PYTHON_KIND)
        runs: Samples = {"run": [], "run+logs": []}
        await warm_runs(warm, 1000, runs)
        await warm.destroy()
        warm_p50_ns = summary(runs["run"])["p50_us"] * 1000
        for tier in TIERS:  # the first start of each factory (the zygote's own) is untimed
            await tier_cold_start(factories[tier], tier, warm_p50_ns, {f: [] for f in TIER_FIGURES})
        for _ in range(colds):
            for tier in TIERS:
                await tier_cold_start(factories[tier], tier, warm_p50_ns, samples[tier])
    finally:
        for factory in factories.values():
            await factory.close()
    result = {
        tier: {what: summary(ns) for what, ns in figures.items()}
        for tier, figures in samples.items()
    }
    result["warm"] = {"run": summary(runs["run"])}
    return result


NodeTier = tuple[str, Path | None, dict[str, str], float]  # name, proxy tree, env, idle s


@contextlib.contextmanager
def proxy_of(tree: Path | None) -> Iterator[None]:
    """Factories made and containers created inside use ``tree``'s proxy (None: this
    tree's): a factory stages the proxy's directory when it starts, and reads the proxy's
    path at each ``create``; samples run one at a time."""
    if tree is None:
        yield
        return
    with mock.patch.object(
        processbase, "proxy_path", lambda kind: tree / proxy_path(kind).relative_to(REPO)
    ):
        yield


def cpu_ns(container: ProcessContainer) -> int:
    """CPU time so far of every thread of every process in the container's cgroup
    (``/proc/PID/task/TID/schedstat``, nanoseconds): what its runtime did, whatever the
    load on the machine did to its wall time."""
    assert container.cgroup is not None
    total = 0
    for pid in container.cgroup.pids():
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                    total += int(stat.read().split()[0])
    return total


async def node_cold_start(
    factory: ProcessContainerFactory, tier: NodeTier, warm_p50_ns: float, into: Samples
) -> None:
    """One nodejs:20 cold start of ``tier`` (see the module docstring)."""
    _, tree, env, idle = tier
    with proxy_of(tree):
        ready = await factory.create(NODE_KIND, 256, env, network=False) if idle else None
    if ready is not None:
        await asyncio.sleep(idle)
    with proxy_of(tree):
        t0 = time.perf_counter_ns()
        container = ready or await factory.create(NODE_KIND, 256, env, network=False)
    t1 = time.perf_counter_ns()
    cpu_before = cpu_ns(container)
    answer = await container.initialize({"name": "noop", "code": ACTIONS[NODE_KIND]}, timeout=10)
    t2 = time.perf_counter_ns()
    run = await container.run(PAYLOAD, timeout=10)
    t3 = time.perf_counter_ns()
    into["runtime-cpu"].append(cpu_ns(container) - cpu_before)
    assert answer.status == 200 and run.status == 200, (answer, run)
    await container.logs(1 << 20, wait=5)
    await container.destroy()
    into["create"].append(t1 - t0)
    into["init"].append(t2 - t1)
    into["first-run"].append(t3 - t2)
    into["cold"].append(t3 - t0)
    into["cold-warm"].append(int(t3 - t0 - warm_p50_ns))


async def measure_node(
    workdir: Path, colds: int, idle: float, before: Path | None
) -> dict[str, dict[str, dict[str, float]]]:
    """nodejs:20 cold starts per tier, taking turns; see the module docstring."""
    tiers: list[NodeTier] = [
        ("true cold", None, {}, 0.0),
        ("true cold, warm-up first", None, {"__OW_WARM_UP_AFTER_MS": "0"}, 0.0),
        ("stem cell", None, {}, idle),
    ]
    if before is not None:
        tiers += [("before true cold", before, {}, 0.0), ("before stem cell", before, {}, idle)]
    factories: dict[Path | None, ProcessContainerFactory] = {}
    for tree in {t[1] for t in tiers}:
        with proxy_of(tree):
            name = "node-before" if tree else "node"
            factories[tree] = ProcessContainerFactory(workdir / name, "http://127.0.0.1:3233")
    factory = factories[None]
    figures = (*TIER_FIGURES, "runtime-cpu")
    samples: dict[str, Samples] = {t[0]: {what: [] for what in figures} for t in tiers}
    try:
        warm = await warm_container(factory, NODE_KIND)
        runs: Samples = {"run": [], "run+logs": []}
        await warm_runs(warm, 1000, runs)
        await warm.destroy()
        warm_p50_ns = summary(runs["run"])["p50_us"] * 1000
        for tier in tiers:  # one untimed round: files in the page cache, the factory warm
            untimed: Samples = {f: [] for f in figures}
            await node_cold_start(factories[tier[1]], tier, warm_p50_ns, untimed)
        for i in range(colds):
            for tier in tiers if i % 2 else tiers[::-1]:
                await node_cold_start(factories[tier[1]], tier, warm_p50_ns, samples[tier[0]])
    finally:
        for each in factories.values():
            await each.close()
    result = {
        tier: {what: summary(ns) for what, ns in figures.items()}
        for tier, figures in samples.items()
    }
    result["warm"] = {"run": summary(runs["run"])}
    return result


def print_tiers(tiers: dict[str, dict[str, dict[str, float]]], kind: str = "python:3.11") -> None:
    print(f"{f'{kind} tier':<44}{'p50':>10}{'p90':>10}{'p99':>10}{'mean':>10}")
    for tier in (t for t in tiers if t != "warm"):
        for what, row in tiers[tier].items():
            print(
                f"{f'{tier} {what}':<44}{row['p50_us']:>10}{row['p90_us']:>10}"
                f"{row['p99_us']:>10}{row['mean_us']:>10}"
            )
    print(f"{'warm run':<44}{tiers['warm']['run']['p50_us']:>10}")
    print("(microseconds; cold = create + /init + first /run of a 256 MB container)")


def print_table(
    baseline: dict[str, float], modes: dict[str, dict[str, dict[str, dict[str, float]]]]
) -> None:
    base = baseline["p50_us"]
    head = f"{'target':<34}{'p50':>10}{'p90':>10}{'p99':>10}{'mean':>10}{'/base':>8}"
    print(head + f"{'iso/plain':>11}")
    print(
        f"{'baseline (null server)':<34}{baseline['p50_us']:>10}{baseline['p90_us']:>10}"
        f"{baseline['p99_us']:>10}{baseline['mean_us']:>10}{1.0:>8.2f}"
    )
    plain = modes.get("plain")
    for mode, kinds in modes.items():
        for kind, figures in kinds.items():
            for what in FIGURES:
                row = figures[what]
                ratio = ""
                if mode == "isolated" and plain is not None:
                    ratio = f"{row['p50_us'] / plain[kind][what]['p50_us']:.2f}"
                print(
                    f"{f'{mode} {kind} {what}':<34}{row['p50_us']:>10}{row['p90_us']:>10}"
                    f"{row['p99_us']:>10}{row['mean_us']:>10}{row['p50_us'] / base:>8.2f}"
                    f"{ratio:>11}"
                )
    print("(microseconds; run: --runs sequential warm activations; create/init/destroy:")
    print(" --colds cold starts of a 256 MB container)")


def set_python_kind(kind: str) -> None:
    """Measure ``kind`` instead of python:3.11."""
    global PYTHON_KIND
    ACTIONS.pop(PYTHON_KIND)
    ACTIONS[kind] = PYTHON_NOOP
    PYTHON_KIND = kind


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--colds", type=int, default=30)
    parser.add_argument(
        "--isolation", action="store_true", help="also measure without isolation, compare"
    )
    parser.add_argument(
        "--zygote", action="store_true", help="python:3.11 cold starts by tier only"
    )
    parser.add_argument("--node", action="store_true", help="nodejs:20 cold starts by tier")
    parser.add_argument("--python", default=PYTHON_KIND, help="the Python kind (python:3.13)")
    parser.add_argument("--idle", type=float, default=0.3, help="--node: a stem cell's idle s")
    parser.add_argument("--before", type=Path, help="--node: a tree whose proxy to compare")
    args = parser.parse_args()
    set_python_kind(args.python)
    if args.node:
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="squall-bench-") as tmp:
            node = await measure_node(Path(tmp), args.colds, args.idle, args.before)
        load_after = os.getloadavg()[0]
        print(f"nodejs:20 cold starts by tier, {args.colds} per tier; load {load} -> {load_after}")
        print_tiers(node, NODE_KIND)
        machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
        report = {
            "colds": args.colds,
            "idle_s": args.idle,
            "before": str(args.before) if args.before else None,
            "load_average_1min": {"before": load, "after": load_after},
            "machine": machine,
            "tiers": node,
        }
        NODE_RESULTS.parent.mkdir(parents=True, exist_ok=True)
        NODE_RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {NODE_RESULTS.relative_to(REPO)}")
        return
    if args.zygote:
        with tempfile.TemporaryDirectory(prefix="squall-bench-") as tmp:
            tiers = await measure_tiers(Path(tmp), args.colds)
        print(f"{PYTHON_KIND} cold starts by tier, {args.colds} per tier")
        print_tiers(tiers, PYTHON_KIND)
        machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
        report = {"colds": args.colds, "machine": machine, "tiers": tiers}
        ZYGOTE_RESULTS.parent.mkdir(parents=True, exist_ok=True)
        ZYGOTE_RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {ZYGOTE_RESULTS.relative_to(REPO)}")
        return
    with tempfile.TemporaryDirectory(prefix="squall-bench-") as tmp:
        workdir = Path(tmp)
        baseline = await measure_baseline(args.runs, workdir)
        names = ["isolated", "plain"] if args.isolation else ["isolated"]
        modes = await measure(workdir, names, args.runs, args.colds)
    print(f"runtime round trip, {args.runs} warm runs and {args.colds} cold starts per kind")
    print_table(baseline, modes)
    result: dict[str, Any] = {
        "runs": args.runs,
        "colds": args.colds,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "baseline": baseline,
        "modes": modes,
    }
    if "plain" in modes:
        result["isolation_cost_p50"] = {
            f"{kind} {what}": round(
                modes["isolated"][kind][what]["p50_us"] / modes["plain"][kind][what]["p50_us"], 2
            )
            for kind in ACTIONS
            for what in FIGURES
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    asyncio.run(main())
