"""The store's cost of crash recovery per activation: the started point and the message
kept with the pending record, against the writes an activation made before them.

    .venv/bin/python bench/started_point.py [--activations 5000] [--in-flight 100]

On a SQLite store in a temporary directory (as standalone uses it: WAL, group commit),
each activation's store writes, in the order the platform makes them:

- ``blocking before``: the final record (``put``);
- ``blocking now``: ``start`` (the invoker's mark, which stores the pending record),
  then the final record;
- ``non-blocking before``: the pending record (``put_pending``), then the final one;
- ``non-blocking now``: the pending record with its message (a 1 KB payload), ``start``,
  then the final record.

Each is measured one activation at a time (every write its own commit) and with
``--in-flight`` activations at once (writes of one loop iteration share a commit), in
turns so that load changes hit all alike. Prints µs per activation and the ratio to its
"before", and writes ``bench/results/started_point.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from msgspec.structs import replace

from squall.bus.messages import ActivationMessage
from squall.entities.activation import Activation, ActivationResponse, pending_record
from squall.store.contracts import ActivationStore
from squall.store.sqlite import SqliteStore

RESULTS = Path(__file__).resolve().parent / "results" / "started_point.json"
PAYLOAD = {"text": "x" * 1000}

Flow = Callable[[ActivationStore, str], Awaitable[None]]


def _pending(activation_id: str) -> Activation:
    return pending_record(
        namespace="guest",
        subject="guest",
        activation_id=activation_id,
        name="noop",
        path="guest/noop",
        version="0.0.1",
        accepted_ms=1_700_000_000_000,
        annotations=[{"key": "kind", "value": "nodejs:20"}],
    )


def _final(activation_id: str) -> Activation:
    return replace(
        _pending(activation_id),
        end=1_700_000_000_001,
        duration=1,
        response=ActivationResponse.ok({}),
    )


def _message(activation_id: str) -> bytes:
    return ActivationMessage(
        transid="t" * 32,
        activation_id=activation_id,
        namespace="guest",
        subject="guest",
        action="/guest/noop",
        revision="1-abc",
        content=PAYLOAD,
        blocking=False,
        controller="0",
        accepted_ms=1_700_000_000_000,
    ).to_bytes()


async def blocking_before(store: ActivationStore, activation_id: str) -> None:
    await store.put(_final(activation_id))


async def blocking_now(store: ActivationStore, activation_id: str) -> None:
    await store.start(_pending(activation_id))
    await store.put(_final(activation_id))


async def nonblocking_before(store: ActivationStore, activation_id: str) -> None:
    await store.put_pending(_pending(activation_id))
    await store.put(_final(activation_id))


async def nonblocking_now(store: ActivationStore, activation_id: str) -> None:
    await store.put_pending(_pending(activation_id), _message(activation_id))
    await store.start(_pending(activation_id))
    await store.put(_final(activation_id))


FLOWS: dict[str, Flow] = {
    "blocking before": blocking_before,
    "blocking now": blocking_now,
    "non-blocking before": nonblocking_before,
    "non-blocking now": nonblocking_now,
}


async def _measure(store: ActivationStore, flow: Flow, count: int, in_flight: int) -> float:
    """µs per activation."""
    ids = [uuid.uuid4().hex for _ in range(count)]
    started = time.perf_counter()
    for i in range(0, count, in_flight):
        await asyncio.gather(*(flow(store, a) for a in ids[i : i + in_flight]))
    return (time.perf_counter() - started) / count * 1e6


async def main(activations: int, in_flight: int, turns: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, list[float]]] = {
        name: {"alone": [], "in flight": []} for name in FLOWS
    }
    with tempfile.TemporaryDirectory() as tmp:
        stores = await SqliteStore.open(Path(tmp) / "squall.db")
        store = stores.activations
        try:
            per_turn = max(1, activations // turns)
            for _ in range(turns):
                for name, flow in FLOWS.items():
                    results[name]["alone"].append(await _measure(store, flow, per_turn, 1))
                    results[name]["in flight"].append(
                        await _measure(store, flow, per_turn, in_flight)
                    )
        finally:
            await stores.close()
    return {
        name: {mode: statistics.median(values) for mode, values in modes.items()}
        for name, modes in results.items()
    }


def _print(figures: dict[str, dict[str, float]], in_flight: int) -> None:
    print(f"µs of store writes per activation (median of turns); in flight = {in_flight}")
    print(f"{'flow':<22}{'alone':>10}{'ratio':>8}{'in flight':>12}{'ratio':>8}")
    for name, modes in figures.items():
        base = figures[name.replace("now", "before")]
        print(
            f"{name:<22}{modes['alone']:>10.1f}{modes['alone'] / base['alone']:>8.2f}"
            f"{modes['in flight']:>12.1f}{modes['in flight'] / base['in flight']:>8.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--activations", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    figures = asyncio.run(main(args.activations, args.in_flight, args.turns))
    _print(figures, args.in_flight)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"in_flight": args.in_flight, "figures": figures}, indent=2))
    print(f"written to {RESULTS}")
