"""Warm /run round trip through the process sandbox, against a baseline.

    .venv/bin/python bench/runtime_roundtrip.py [--runs 2000]

Creates one container per runtime (``nodejs:20``, ``python:3.11``) through
:class:`~squall.sandbox.process.ProcessContainerFactory`, initializes a no-op action, warms
it, and measures ``--runs`` sequential warm activations:

- ``run``: ``container.run(...)`` alone (one HTTP exchange on the kept-alive socket);
- ``run+logs``: ``run`` then ``logs(...)``, i.e. also waiting for both sentinel lines, as
  the invoker does for every activation.

The baseline is the same HTTP client against a null server in a child process that
answers every request with ``{}`` and does nothing else: what remains above it is the
cost of the runtime proxies. It also times container start (create until listening) and
/init. Prints a table with ratios to the baseline and writes
``bench/results/runtime_roundtrip.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from squall.sandbox.http import UnixHttpClient  # noqa: E402
from squall.sandbox.process import ProcessContainerFactory  # noqa: E402

RESULTS = REPO / "bench" / "results" / "runtime_roundtrip.json"
ACTIONS = {
    "nodejs:20": "function main(params) { return {}; }",
    "python:3.11": "def main(args):\n    return {}\n",
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


async def measure_kind(
    factory: ProcessContainerFactory, kind: str, runs: int
) -> dict[str, dict[str, float]]:
    started = time.perf_counter_ns()
    container = await factory.create(kind, 256)
    created = time.perf_counter_ns() - started
    started = time.perf_counter_ns()
    answer = await container.initialize({"name": "noop", "code": ACTIONS[kind]}, timeout=10)
    initialized = time.perf_counter_ns() - started
    assert answer.status == 200, answer.body
    await container.logs(1 << 20, wait=5)
    for _ in range(200):  # warm the JIT, caches and connection
        await container.run(PAYLOAD, timeout=10)
        await container.logs(1 << 20, wait=5)
    run_only, with_logs = [], []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        answer = await container.run(PAYLOAD, timeout=10)
        t1 = time.perf_counter_ns()
        await container.logs(1 << 20, wait=5)
        t2 = time.perf_counter_ns()
        assert answer.status == 200
        run_only.append(t1 - t0)
        with_logs.append(t2 - t0)
    await container.destroy()
    return {
        "run": summary(run_only),
        "run+logs": summary(with_logs),
        "start": {"ms": round(created / 1e6, 1)},
        "init": {"ms": round(initialized / 1e6, 1)},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="squall-bench-") as tmp:
        workdir = Path(tmp)
        baseline = await measure_baseline(runs, workdir)
        factory = ProcessContainerFactory(workdir / "containers", "http://127.0.0.1:3233")
        try:
            kinds = {kind: await measure_kind(factory, kind, runs) for kind in ACTIONS}
        finally:
            await factory.close()
    base = baseline["p50_us"]
    print(f"warm /run round trip, {runs} runs each (microseconds)")
    print(f"{'target':<22}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}{'p50/base':>10}")
    rows: list[tuple[str, dict[str, float]]] = [("baseline (null server)", baseline)]
    for kind, figures in kinds.items():
        rows += [(f"{kind} run", figures["run"]), (f"{kind} run+logs", figures["run+logs"])]
    for name, row in rows:
        print(
            f"{name:<22}{row['p50_us']:>9}{row['p90_us']:>9}{row['p99_us']:>9}"
            f"{row['mean_us']:>9}{row['p50_us'] / base:>10.2f}"
        )
    for kind, figures in kinds.items():
        print(f"{kind}: start {figures['start']['ms']} ms, /init {figures['init']['ms']} ms")
    result: dict[str, Any] = {
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "baseline": baseline,
        "kinds": kinds,
        "ratios_p50": {
            f"{kind} {what}": round(figures[what]["p50_us"] / base, 2)
            for kind, figures in kinds.items()
            for what in ("run", "run+logs")
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    asyncio.run(main())
