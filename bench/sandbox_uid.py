"""What an unprivileged host uid costs a cold start (issue 13), against root in the same run.

    .venv/bin/python bench/sandbox_uid.py [--colds 30]

Two isolating factories side by side, identical but for ``Isolation.unprivileged``:
``uid`` (the default: each sandbox runs as an unprivileged host uid, bubblewrap runs
unprivileged and binds through the supervisor's stage) and ``root`` (bubblewrap as root,
the sandbox's uid mapped to host root, as before). Both start sandboxes through the
supervisor. Per kind and path, taking turns (each mode first every other round) so that
load changes hit both alike, each
sample is a cold start: ``create`` (until the runtime listens) plus ``/init`` of a no-op
action plus its first ``/run``, then destroy (untimed):

- ``nodejs:20`` and ``python:3.11`` through bubblewrap (the true cold start: for Python,
  a container for no known namespace, which no zygote forks);
- ``python:3.11`` forked by the namespace's zygote from a spare (spares refilled, untimed,
  before each sample).

Prints p50/p90 per tier and the ratio ``uid/root`` of the p50s, with the 1-minute load
average before and after; writes ``bench/results/sandbox_uid.json``.
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
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from squall.sandbox.isolation import Isolation  # noqa: E402
from squall.sandbox.process import ProcessContainerFactory  # noqa: E402

RESULTS = REPO / "bench" / "results" / "sandbox_uid.json"
CODE = {
    "nodejs:20": "function main() { return {} }",
    "python:3.11": "def main(args):\n    return {}\n",
}
#: (tier, kind, tenant): a tenant makes python:3.11 come from that namespace's zygote.
TIERS = (
    ("nodejs:20 bwrap", "nodejs:20", None),
    ("python:3.11 bwrap", "python:3.11", None),
    ("python:3.11 zygote", "python:3.11", "bench"),
)
MODES = ("root", "uid")


async def cold(factory: ProcessContainerFactory, kind: str, tenant: str | None) -> float:
    """One cold start (create, /init, first /run) in ms; the container is destroyed."""
    if tenant is not None and (zygote := factory.zygote_of(tenant, kind)) is not None:
        await zygote.filled()  # an invoker between bursts: spares ready
    began = time.perf_counter()
    container = await factory.create(kind, 256, tenant=tenant)
    try:
        assert (await container.initialize({"code": CODE[kind]}, timeout=30)).status == 200
        assert (await container.run({"value": {}}, timeout=30)).status == 200
        return (time.perf_counter() - began) * 1000
    finally:
        await container.destroy()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))],
        "n": len(ordered),
    }


async def main(colds: int) -> dict[str, Any]:
    isolation = Isolation.detect()
    load_before = os.getloadavg()[0]
    samples: dict[str, dict[str, list[float]]] = {t[0]: {m: [] for m in MODES} for t in TIERS}
    with tempfile.TemporaryDirectory(prefix="squall-bench-uid-") as tmp:
        factories = {
            mode: ProcessContainerFactory(
                Path(tmp) / mode,
                "https://api",
                isolation=replace(isolation, unprivileged=mode == "uid"),
            )
            for mode in MODES
        }
        try:
            for _tier, kind, tenant in TIERS:  # warm-up: zygotes started, caches hot
                for mode in MODES:
                    await cold(factories[mode], kind, tenant)
            for round_ in range(colds):
                for tier, kind, tenant in TIERS:
                    # Each mode goes first every other round: no order effect favours one.
                    for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                        samples[tier][mode].append(await cold(factories[mode], kind, tenant))
        finally:
            for factory in factories.values():
                await factory.close()
    load_after = os.getloadavg()[0]
    table: dict[str, Any] = {}
    for tier, by_mode in samples.items():
        row: dict[str, Any] = {mode: summary(values) for mode, values in by_mode.items()}
        row["uid/root"] = row["uid"]["p50"] / row["root"]["p50"]
        table[tier] = row
    return {
        "colds": colds,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_1m": {"before": load_before, "after": load_after},
        "cold_start_ms": table,
    }


def report(result: dict[str, Any]) -> None:
    load = result["load_1m"]
    print(f"cold start (create + /init + first /run), {result['colds']} samples per cell")
    print(f"load average (1 min): {load['before']:.2f} before, {load['after']:.2f} after")
    heads = ("root p50", "uid p50", "root p90", "uid p90", "uid/root")
    print(f"{'tier':<22}" + "".join(f"{head:>10}" for head in heads))
    for tier, row in result["cold_start_ms"].items():
        print(
            f"{tier:<22}{row['root']['p50']:>10.1f}{row['uid']['p50']:>10.1f}"
            f"{row['root']['p90']:>10.1f}{row['uid']['p90']:>10.1f}{row['uid/root']:>10.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--colds", type=int, default=30)
    options = parser.parse_args()
    result = asyncio.run(main(options.colds))
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")
