"""The encode/decode cost of one activation's record and messages, per stage of the
invoke path: dict + stdlib ``json``, dict + ``orjson`` (how Squall carried records before
they were typed), and the typed msgspec Structs it carries now.

    .venv/bin/python bench/record_codec.py [--iterations 20000] [--rounds 5] [--max-seconds 120]

What one blocking invoke does with its record and messages, stage by stage:

- ``message encode``: the controller builds the ActivationMessage and encodes it;
- ``message decode``: the invoker decodes it;
- ``record build``: the invoker builds the final record;
- ``store encode``: the record as the store's row text;
- ``completion encode``: the completion (the record inside) as bus bytes;
- ``completion decode``: the controller decodes it back into a record;
- ``REST render``: the record as the REST answer's bytes (``response`` without
  ``statusCode``);
- ``store decode``: ``GET /activations/{id}`` reads the row back into a record.

Two records: a no-op's (result ``{}``, no logs) and a typical one (a result of 20 keys,
10 log lines). Each stage runs ``--iterations`` times per round in each of the three
ways, in turns, for ``--rounds`` rounds; the table shows the median µs per call and each
way's ratio to ``dict+orjson`` (the baseline, measured in the same run). Writes
``bench/results/record_codec.json`` with the load average before and after.

The ``dict`` columns use the record's stored shape built as a dict, with the message as
the dict the earlier dataclass built (and read back field by field, as it did): the
same JSON bytes as the typed column, so the three columns do the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from squall.bus.messages import ActivationMessage, Completion, decode_inbox
from squall.entities.activation import (
    STATUS_NAMES,
    Activation,
    ActivationResponse,
    decode,
    encode,
    final_record,
    rest_json,
)

RESULTS = Path(__file__).resolve().parent / "results" / "record_codec.json"
WAYS = ("dict+json", "dict+orjson", "msgspec")
BASELINE = "dict+orjson"

Dumps = Callable[[Any], bytes]
Loads = Callable[[bytes | str], Any]


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


CODECS: dict[str, tuple[Dumps, Loads]] = {
    "dict+json": (_json_dumps, json.loads),
    "dict+orjson": (orjson.dumps, orjson.loads),
}

ANNOTATIONS: list[dict[str, Any]] = [
    {"key": "path", "value": "guest/noop"},
    {"key": "waitTime", "value": 2},
    {"key": "kind", "value": "nodejs:20"},
    {"key": "timeout", "value": False},
    {"key": "limits", "value": {"concurrency": 1, "logs": 10, "memory": 256, "timeout": 60000}},
]


def _inputs(typical: bool) -> dict[str, Any]:
    """What the invoker has in hand when it builds the record."""
    result: dict[str, Any] = (
        {f"field{i}": f"value {i} " * 3 if i % 2 else i * 1.5 for i in range(20)} if typical else {}
    )
    logs = [f"2024-01-01T00:00:00.{i:09d}Z stdout: handled step {i}" for i in range(10)]
    return {"result": result, "logs": logs if typical else [], "size": 2 + len(str(result))}


def _message_fields() -> dict[str, Any]:
    return {
        "transid": "t" * 32,
        "activation_id": "a" * 32,
        "namespace": "guest",
        "subject": "guest",
        "action": "/guest/noop",
        "revision": "1-0123456789abcdef",
        "content": {"name": "Ada", "n": 1},
        "blocking": True,
        "controller": "0",
        "accepted_ms": 1_700_000_000_000,
        "init_args": {},
        "cause": None,
        "caused_by": None,
        "store_record": True,
        "network": None,
        "started": False,
    }


def _message_dict(f: dict[str, Any]) -> dict[str, Any]:
    return {
        "v": 1, "t": "activation", "transid": f["transid"], "activationId": f["activation_id"],
        "namespace": f["namespace"], "subject": f["subject"], "action": f["action"],
        "revision": f["revision"], "content": f["content"], "blocking": f["blocking"],
        "controller": f["controller"], "acceptedMs": f["accepted_ms"],
        "initArgs": f["init_args"], "cause": f["cause"], "causedBy": f["caused_by"],
        "storeRecord": f["store_record"], "network": f["network"], "started": f["started"],
    }  # fmt: skip


def _message_from_dict(raw: dict[str, Any]) -> dict[str, Any]:
    """Read back field by field, checked, as the earlier dataclass's from_bytes did."""
    if raw.get("v") != 1 or raw.get("t") != "activation":
        raise ValueError("not an activation message")
    return {
        "transid": str(raw["transid"]), "activation_id": str(raw["activationId"]),
        "namespace": str(raw["namespace"]), "subject": str(raw["subject"]),
        "action": str(raw["action"]), "revision": str(raw["revision"]),
        "content": dict(raw["content"]), "blocking": bool(raw["blocking"]),
        "controller": str(raw["controller"]), "accepted_ms": int(raw["acceptedMs"]),
        "init_args": dict(raw.get("initArgs") or {}), "cause": raw.get("cause"),
        "caused_by": raw.get("causedBy"), "store_record": bool(raw.get("storeRecord", True)),
        "network": raw.get("network"), "started": bool(raw.get("started", False)),
    }  # fmt: skip


def _record_dict(inputs: dict[str, Any]) -> dict[str, Any]:
    """The stored shape, built as a dict (as the dataclass's to_json built it)."""
    return {
        "namespace": "guest",
        "name": "noop",
        "subject": "guest",
        "activationId": "a" * 32,
        "start": 1_700_000_000_002,
        "end": 1_700_000_000_003,
        "version": "0.0.1",
        "publish": False,
        "response": {
            "status": STATUS_NAMES[0],
            "statusCode": 0,
            "success": True,
            "result": inputs["result"],
            "size": inputs["size"],
        },
        "logs": inputs["logs"],
        "annotations": list(ANNOTATIONS),
        "duration": 1,
    }


def _record_struct(inputs: dict[str, Any]) -> Activation:
    return final_record(
        namespace="guest",
        name="noop",
        subject="guest",
        activation_id="a" * 32,
        start=1_700_000_000_002,
        end=1_700_000_000_003,
        response=ActivationResponse.ok(inputs["result"], inputs["size"]),
        logs=inputs["logs"],
        annotations=list(ANNOTATIONS),
    )


def _rest_dict(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    out["response"] = {k: v for k, v in record["response"].items() if k != "statusCode"}
    return out


Stage = Callable[[], object]


def _stages(way: str, inputs: dict[str, Any]) -> dict[str, Stage]:
    """The stages of one invoke, done ``way``; each a no-argument callable."""
    fields = _message_fields()
    if way == "msgspec":
        message = ActivationMessage(**fields)
        message_bytes = message.to_bytes()
        record = _record_struct(inputs)
        row = encode(record)
        completion = Completion("t" * 32, "a" * 32, "0", record).to_bytes()
        return {
            "message encode": lambda: ActivationMessage(**fields).to_bytes(),
            "message decode": lambda: ActivationMessage.from_bytes(message_bytes),
            "record build": lambda: _record_struct(inputs),
            "store encode": lambda: encode(record).decode(),
            "completion encode": lambda: Completion("t" * 32, "a" * 32, "0", record).to_bytes(),
            "completion decode": lambda: decode_inbox(completion),
            "REST render": lambda: orjson.dumps(rest_json(record)),
            "store decode": lambda: decode(row),
        }
    dumps, loads = CODECS[way]
    message_dict = _message_dict(fields)
    message_bytes = dumps(message_dict)
    record_dict = _record_dict(inputs)
    row_text = dumps(record_dict).decode()
    completion_dict = {
        "v": 1,
        "t": "completion",
        "transid": "t" * 32,
        "activationId": "a" * 32,
        "invoker": "0",
        "record": record_dict,
    }
    completion_bytes = dumps(completion_dict)

    def completion_decode() -> object:
        raw = loads(completion_bytes)
        if raw.get("v") != 1 or raw.get("t") != "completion":
            raise ValueError("not a completion")
        return dict(raw["record"])

    return {
        "message encode": lambda: dumps(_message_dict(fields)),
        "message decode": lambda: _message_from_dict(loads(message_bytes)),
        "record build": lambda: _record_dict(inputs),
        "store encode": lambda: dumps(record_dict).decode(),
        "completion encode": lambda: dumps({**completion_dict, "record": record_dict}),
        "completion decode": completion_decode,
        "REST render": lambda: orjson.dumps(_rest_dict(record_dict)),
        "store decode": lambda: loads(row_text),
    }


def _check_same_json(inputs: dict[str, Any]) -> None:
    """The three ways produce the same JSON objects, so they do the same work."""
    typed = _stages("msgspec", inputs)
    for way in ("dict+json", "dict+orjson"):
        plain = _stages(way, inputs)
        for stage in ("store encode", "completion encode", "message encode", "REST render"):
            a, b = typed[stage](), plain[stage]()
            assert isinstance(a, bytes | str) and isinstance(b, bytes | str)
            assert orjson.loads(a) == orjson.loads(b), (way, stage)


def _time(call: Stage, iterations: int) -> float:
    """µs per call over ``iterations`` calls."""
    began = time.perf_counter_ns()
    for _ in range(iterations):
        call()
    return (time.perf_counter_ns() - began) / iterations / 1000


def measure(iterations: int, rounds: int, max_s: float) -> dict[str, Any]:
    """Median µs per call of every stage and way; a record's rounds stop early (at least
    one is always done) once ``max_s`` seconds have passed for it."""
    results: dict[str, Any] = {}
    for label, typical in (("noop", False), ("typical", True)):
        deadline = time.monotonic() + max_s
        inputs = _inputs(typical)
        _check_same_json(inputs)
        stages = {way: _stages(way, inputs) for way in WAYS}
        samples: dict[str, dict[str, list[float]]] = {
            stage: {way: [] for way in WAYS} for stage in stages[BASELINE]
        }
        done = 0
        while done < rounds and (done == 0 or time.monotonic() < deadline):
            done += 1
            for stage in samples:
                for way in WAYS:  # in turns: a change of load hits every way alike
                    samples[stage][way].append(_time(stages[way][stage], iterations))
        medians = {
            stage: {way: statistics.median(v) for way, v in ways.items()}
            for stage, ways in samples.items()
        }
        total = {way: sum(m[way] for m in medians.values()) for way in WAYS}
        results[label] = {"rounds": done, "stages_us": medians, "total_us": total}
    return results


def table(results: dict[str, Any]) -> str:
    lines = []
    for label, figures in results.items():
        lines.append(
            f"\n{label} record: µs per call, median of {figures['rounds']} rounds"
            f" (ratio to {BASELINE})"
        )
        lines.append(f"{'stage':<20}" + "".join(f"{way:>22}" for way in WAYS))
        rows = [*figures["stages_us"].items(), ("per activation", figures["total_us"])]
        for stage, ways in rows:
            base = ways[BASELINE]
            cells = "".join(f"{ways[w]:>12.2f} ({ways[w] / base:4.2f}x)" for w in WAYS)
            lines.append(f"{stage:<20}{cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per record kind")
    args = parser.parse_args()
    if not 0 < args.iterations <= 1_000_000 or not 0 < args.rounds <= 50:
        parser.error("--iterations 1..1000000, --rounds 1..50")
    load_before = os.getloadavg()
    results = measure(args.iterations, args.rounds, args.max_seconds)
    load_after = os.getloadavg()
    print(table(results))
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "iterations": args.iterations,
                "rounds": args.rounds,
                "max_seconds": args.max_seconds,
                "baseline": BASELINE,
                "load_average": {"before": load_before, "after": load_after},
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
