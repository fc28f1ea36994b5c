"""What log forwarding costs an invocation: blocking invokes of a Node.js action that logs
three lines, with the namespace forwarding nowhere (the baseline), to a live Splunk HEC
receiver on loopback, and to a dead one (nothing listens: every batch fails its three
attempts and is dropped).

    .venv/bin/python bench/log_forwarding.py [--requests 300] [--duration 5]
        [--concurrency 8] [--rounds 3]

The platform runs in this process (``Standalone``, SQLite under a temporary home, driven
over ASGI: the forwarder shares the event loop with the API, as in a controller); the
receiver of the tests (``tests/logreceiver.py``) runs in a process of its own. In each of
``--rounds`` rounds (scenarios in rotating order), per scenario: (a) ``--requests``
sequential invokes (p50/p90/p99/mean, ms), (b) ``--concurrency`` callers for
``--duration`` seconds (at most 20 000 requests; invokes/s). Printed as a table with
ratios to the baseline, written to ``bench/results/log_forwarding.json`` with the load
average before and after, and the forwarded and dropped line counts from ``/metrics``.
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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from logreceiver import SPLUNK_TOKEN, free_port  # noqa: E402

from squall.cli.standalone import Standalone  # noqa: E402
from squall.config import Settings  # noqa: E402

RESULTS = HERE / "results" / "log_forwarding.json"
MAX_REQUESTS = 20_000
CODE = (
    "function main(p) { console.log('one', p.i); console.log('two'); console.error('three');"
    " return {}; }"
)
LF = "/runtime/namespaces/guest/logForwarding"
NS = "/api/v1/namespaces/_"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def invoke(client: httpx.AsyncClient, i: int) -> float:
    started = time.perf_counter()
    r = await client.post(
        f"{NS}/actions/logger", params={"blocking": "true", "result": "true"}, json={"i": i}
    )
    if r.status_code != 200:
        raise RuntimeError(f"invoke failed: {r.status_code} {r.text}")
    return (time.perf_counter() - started) * 1000


async def measure_once(
    client: httpx.AsyncClient, args: argparse.Namespace
) -> tuple[list[float], int, float]:
    """Sequential latencies, then (requests, seconds) of the concurrent phase."""
    latencies = [await invoke(client, i) for i in range(args.requests)]
    done = 0
    end = time.monotonic() + args.duration

    async def caller() -> None:
        nonlocal done
        while time.monotonic() < end and done < MAX_REQUESTS:
            await invoke(client, done)
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(args.concurrency)))
    return latencies, done, time.monotonic() - started


def summary(latencies: list[float], done: int, seconds: float) -> dict[str, Any]:
    return {
        "p50_ms": percentile(latencies, 0.5),
        "p90_ms": percentile(latencies, 0.9),
        "p99_ms": percentile(latencies, 0.99),
        "mean_ms": statistics.fmean(latencies),
        "invokes_per_s": done / seconds,
        "requests": len(latencies) + done,
    }


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@contextlib.contextmanager
def receiver_process() -> Iterator[int]:
    """The tests' receiver in a process of its own (its work must not count as the
    platform's); yields its port."""
    script = HERE.parent / "tests" / "logreceiver.py"
    child = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=HERE.parent
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # its port, once it listens
        if not line.strip().isdigit():
            raise RuntimeError("the log receiver did not start")
        yield int(line)
    finally:
        child.terminate()
        child.wait(15)


async def run(args: argparse.Namespace, port: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="squall-bench-lf-"))
    settings = Settings(
        home=home,
        keep_warm_s=300,
        invocations_per_minute=100_000_000,
        concurrent_invocations=100_000,
    )
    system = await Standalone.start(settings)
    uuid, _, key = system.guest_auth.partition(":")
    transport = httpx.ASGITransport(app=system.app)
    results: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", auth=(uuid, key), timeout=60
        ) as client:
            action = {"exec": {"kind": "nodejs:default", "code": CODE}}
            await client.put(f"{NS}/actions/logger", json=action, params={"overwrite": "true"})
            live = {"host": "http://127.0.0.1", "port": str(port)}
            dead = {"host": "http://127.0.0.1", "port": str(free_port())}
            common = {"index": "bench", "hec_token": SPLUNK_TOKEN}
            configs = {
                "baseline": {"adobe_io_runtime": {}},
                "live": {"splunk_hec": {**live, **common}},
                "dead": {"splunk_hec": {**dead, **common}},
            }
            for i in range(20):  # warm the container
                await invoke(client, i)
            # Rounds in rotating order, so a drift of the machine's load hits every
            # scenario alike; each scenario's figures are over all its rounds.
            names = list(configs)
            gathered: dict[str, tuple[list[float], int, float]] = {n: ([], 0, 0.0) for n in names}
            for round_ in range(args.rounds):
                for name in names[round_ % 3 :] + names[: round_ % 3]:
                    assert (await client.put(LF, json=configs[name])).status_code == 200
                    latencies, done, seconds = await measure_once(client, args)
                    before = gathered[name]
                    gathered[name] = (before[0] + latencies, before[1] + done, before[2] + seconds)
                print(f"  round {round_ + 1}/{args.rounds} done", file=sys.stderr)
            results.update({n: summary(*gathered[n]) for n in names})
            text = (await client.get("/metrics")).text
            results["lines"] = {
                "forwarded": metric(text, "squall_controller_log_forwarding_lines_total"),
                "dropped": metric(text, "squall_controller_log_forwarding_dropped_lines_total"),
            }
    finally:
        await system.close()
    return results


def table(results: dict[str, Any]) -> str:
    base = results["baseline"]
    rows = [
        f"{'scenario':<10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
        f"{'inv/s':>8} {'p50 x':>6} {'inv/s x':>8}"
    ]
    for name in ("baseline", "live", "dead"):
        r = results[name]
        rows.append(
            f"{name:<10} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['mean_ms']:>8.2f} {r['invokes_per_s']:>8.1f} "
            f"{r['p50_ms'] / base['p50_ms']:>6.2f} "
            f"{r['invokes_per_s'] / base['invokes_per_s']:>8.2f}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with receiver_process() as port:
        results = asyncio.run(run(args, port))
    load_after = os.getloadavg()
    print(table(results))
    print(f"lines: {results['lines']}")
    print(f"load average before {load_before}, after {load_after}")
    report = {
        "benchmark": "log_forwarding",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "args": vars(args) | {"output": str(args.output)},
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
