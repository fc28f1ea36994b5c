"""What the throttles cost per request: in memory (standalone) against shared in NATS
key-value buckets (a cluster, squall/bus/nats_counters.py).

    .venv/bin/python bench/throttle_counters.py [--requests 2000] [--nats nats://127.0.0.1:4222]

For each provider it times, one request after another (``--requests``, at most
``--max-seconds`` each):

- ``admit``: what an admitted invoke costs the throttles — the per-minute ``hit`` and the
  concurrency ``admit`` (``Throttles.admit_invoke``), then ``started`` (before
  publishing), with a large limit (NATS: mostly from the controller's leases);
- ``admit (2 ctl)``: the same, alternating between two controllers (NATS: two
  connections), so every per-minute write finds the other's revision first;
- ``refused``: a request over its per-minute limit (``hit`` only);
- ``nats one read``: one ``in_flight`` read of a namespace with nothing in flight, that
  is one round trip to NATS, for scale.

``ended`` is not timed: it never blocks (a background write for NATS). Rows give p50,
p99 and mean in microseconds and the ratio of the p50 to memory's ``admit`` p50
(measured in the same run). The JSON goes to ``bench/results/throttle_counters.json``
with the load average. NATS buckets are made under a random prefix and deleted at the
end; only the loopback server named by ``--nats`` is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from squall.bus.counters import (  # noqa: E402
    INVOKES,
    MemoryCounters,
    ThrottleCounters,
)
from squall.bus.nats import NatsBus  # noqa: E402
from squall.bus.nats_counters import NatsCounters  # noqa: E402

MINUTE = 1  # a fixed window: the bench is about cost, not minutes


async def _time(step: Callable[[int], Awaitable[None]], requests: int, max_s: float) -> list[float]:
    samples: list[float] = []
    end = time.monotonic() + max_s
    for i in range(requests):
        start = time.perf_counter()
        await step(i)
        samples.append((time.perf_counter() - start) * 1e6)
        if time.monotonic() > end:
            break
    return samples


def _admit(sides: Sequence[ThrottleCounters], namespace: str) -> Callable[[int], Awaitable[None]]:
    async def step(i: int) -> None:
        side = sides[i % len(sides)]
        await side.hit(INVOKES, namespace, MINUTE, 10**9)
        await side.admit(namespace, 10**6)
        activation = f"{i:032x}"
        await side.started(namespace, activation)
        side.ended(activation)

    return step


def _refused(side: ThrottleCounters, namespace: str) -> Callable[[int], Awaitable[None]]:
    async def step(i: int) -> None:
        await side.hit(INVOKES, namespace, MINUTE, 0)

    return step


async def run(requests: int, max_s: float, nats_url: str) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    memory = MemoryCounters()
    results["memory admit"] = await _time(_admit([memory], "m"), requests, max_s)
    results["memory refused"] = await _time(_refused(memory, "m-r"), requests, max_s)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    buses = [await NatsBus.connect(nats_url, prefix=prefix) for _ in range(2)]
    sides = [await NatsCounters.open(bus, str(i)) for i, bus in enumerate(buses)]
    try:
        # One round trip to NATS (a read of a missing key), for scale.
        async def get(i: int) -> None:
            await sides[0].in_flight("n-get")

        results["nats one read"] = await _time(get, requests, max_s)
        results["nats admit"] = await _time(_admit(sides[:1], "n"), requests, max_s)
        results["nats admit (2 ctl)"] = await _time(_admit(sides, "n2"), requests, max_s)
        results["nats refused"] = await _time(_refused(sides[0], "n-r"), requests, max_s)
    finally:
        for side in sides:
            await side.close()
        await buses[0].delete_streams()
        for bus in buses:
            await bus.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    args = parser.parse_args()
    results = asyncio.run(run(args.requests, args.max_seconds, args.nats))
    base = statistics.median(results["memory admit"])
    rows = []
    print(f"{'target':<22}{'n':>6}{'p50 us':>10}{'p99 us':>10}{'mean us':>10}{'p50/base':>10}")
    for name, samples in results.items():
        ordered = sorted(samples)
        p50 = statistics.median(ordered)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        mean = statistics.fmean(ordered)
        rows.append({"target": name, "n": len(ordered), "p50_us": p50, "p99_us": p99,
                     "mean_us": mean, "ratio": p50 / base})  # fmt: skip
        print(
            f"{name:<22}{len(ordered):>6}{p50:>10.1f}{p99:>10.1f}{mean:>10.1f}{p50 / base:>10.1f}"
        )
    load = os.getloadavg()
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "throttle_counters.json").write_text(
        json.dumps({"rows": rows, "loadavg": load, "requests": args.requests}, indent=2)
    )


if __name__ == "__main__":
    main()
