"""Loop iterations and CPU per activation through the in-process bus, invoker intake and
completion waiters, without a container, for two source trees.

    .venv/bin/python bench/bus_hops.py --other /tmp/base [--activations 3000]
        [--concurrency 1 50] [--rounds 5]

Each tree in a child process of its own (its ``PYTHONPATH``), taking turns per round and
concurrency: a real ``MemoryBus``, ``SqliteStore``, ``Invoker`` and
``CompletionWaiters`` on one asyncio loop (the default selector loop, whose ``select``
is wrapped to count loop iterations), and ``--concurrency`` closed-loop callers that each
register a waiter, send an ``ActivationMessage`` to ``invoker.0`` and wait for its
record, as the controller's blocking invoke does. The action does not exist, so the
invoker ends every activation with a stored failure record and its completion: the
bus hops, the intake, the store's group commit and the waiters, no runtime. Prints per
activation: loop iterations (counted: the load barely moves them), SQLite commits (from
its statement trace, as ``group_commit_policy.py`` counts them) and process CPU ms
(``time.process_time``: moved by the load, so the medians of the rounds and how many
rounds were lower), with the 1-minute load average before and after. JSON to
``bench/results/bus_hops.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from group_commit_policy import _commits as commits

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "bus_hops.json"
WARM_UP = 200


class CountingSelector(selectors.DefaultSelector):
    """Counts ``select`` calls: one per loop iteration."""

    calls = 0

    def select(self, timeout: float | None = None) -> Any:
        CountingSelector.calls += 1
        return super().select(timeout)


async def _run(concurrency: int, activations: int, home: Path) -> dict[str, float]:
    from squall.bus.memory import MemoryBus
    from squall.bus.messages import ActivationMessage, invoker_topic
    from squall.controller.waiters import CompletionWaiters
    from squall.entities.activation import now_ms
    from squall.invoker.pool import ContainerPool
    from squall.invoker.service import Invoker
    from squall.sandbox.process import ProcessContainerFactory
    from squall.store.sqlite import SqliteStore

    bus = MemoryBus()
    store = await SqliteStore.open(home / "squall.db")
    factory = ProcessContainerFactory(home / "containers", "https://api.example.test")
    invoker = Invoker("0", bus, store.entities, store.activations, ContainerPool(factory, 256))
    await invoker.start()
    waiters = CompletionWaiters(bus, "c0", store.activations)
    await waiters.start()
    counter = iter(range(10**9))

    async def caller(count: int) -> None:
        for _ in range(count):
            activation_id = f"{next(counter):032x}"
            message = ActivationMessage(
                transid="t" * 32, activation_id=activation_id, namespace="guest",
                subject="guest", action="/guest/missing", revision="1-a", content={},
                blocking=True, controller="c0", accepted_ms=now_ms(),
            )  # fmt: skip
            waiters.register(activation_id)
            await bus.send(invoker_topic("0"), message.to_bytes())
            record = await waiters.wait(activation_id, 30.0)
            assert record is not None, "no completion"

    try:
        await asyncio.gather(*(caller(WARM_UP // concurrency + 1) for _ in range(concurrency)))
        per_caller = max(1, activations // concurrency)
        done = per_caller * concurrency
        statements: list[str] = []  # SQLite's statement trace: its commits
        store._db.conn.set_trace_callback(statements.append)
        iterations, cpu = CountingSelector.calls, time.process_time()
        await asyncio.gather(*(caller(per_caller) for _ in range(concurrency)))
        cpu = time.process_time() - cpu
        store._db.conn.set_trace_callback(None)
        return {
            "iterations": (CountingSelector.calls - iterations) / done,
            "cpu_ms": cpu * 1000 / done,
            "commits": commits(statements) / done,
        }
    finally:
        await waiters.close()
        await invoker.close(grace_s=5)
        await factory.close()
        await store.close()
        await bus.close()


def child(concurrency: int, activations: int) -> None:
    loop = asyncio.SelectorEventLoop(CountingSelector())
    with tempfile.TemporaryDirectory(prefix="bus-hops-") as home:
        result = loop.run_until_complete(_run(concurrency, activations, Path(home)))
    loop.close()
    print(json.dumps(result))


def measure(tree: Path, concurrency: int, activations: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(concurrency),
         "--activations", str(activations)],
        cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, help="the tree to compare with (required)")
    parser.add_argument("--activations", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.activations)
        return
    if args.other is None:
        parser.error("--other is required")
    trees = {"this": REPO, "other": args.other.resolve()}
    load_before = os.getloadavg()[0]
    started = time.time()
    rounds: dict[int, dict[str, list[dict[str, float]]]] = {
        c: {name: [] for name in trees} for c in args.concurrency
    }
    for n in range(args.rounds):
        for c in args.concurrency:
            order = list(trees.items()) if n % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                rounds[c][name].append(measure(tree, c, args.activations))
    load_after = os.getloadavg()[0]
    print(f"{args.activations} activations per run, {args.rounds} rounds, "
          f"load average {load_before:.1f} → {load_after:.1f}")  # fmt: skip
    print(
        f"{'c':>3} {'tree':<6} {'iterations':>11} {'commits':>8} {'cpu ms':>8} {'rounds lower':>13}"
    )
    summary: dict[str, Any] = {}
    for c, by_tree in rounds.items():
        this, other = by_tree["this"], by_tree["other"]
        lower = sum(a["cpu_ms"] < b["cpu_ms"] for a, b in zip(this, other, strict=True))
        for name, runs in by_tree.items():
            its = statistics.median(r["iterations"] for r in runs)
            cpu = statistics.median(r["cpu_ms"] for r in runs)
            com = statistics.median(r["commits"] for r in runs)
            summary.setdefault(str(c), {})[name] = {
                "iterations": its,
                "commits": com,
                "cpu_ms": cpu,
                "runs": runs,
            }
            shown = f"{lower}/{len(this)}" if name == "this" else ""
            print(f"{c:>3} {name:<6} {its:>11.3f} {com:>8.3f} {cpu:>8.4f} {shown:>13}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "benchmark": "bus_hops", "started": started, "seconds": round(time.time() - started, 1),
        "parameters": {"other": str(args.other), "activations": args.activations,
                       "concurrency": args.concurrency, "rounds": args.rounds},
        "load_average": [load_before, load_after], "results": summary,
    }, indent=1))  # fmt: skip
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
