"""B5: trigger → rule → action latency with 1, 4 and 16 rules, against a direct invoke.

    .venv/bin/python bench/trigger_latency.py [--samples 300] [--rules 1,4,16]
        [--apihost http://127.0.0.1:3233 --auth uuid:key]

Without ``--apihost`` it starts its own ``squall standalone`` on a free loopback port with
a temporary home (throttles, fires per minute included, raised out of the way) and stops
it at the end; only loopback addresses are ever targeted (helpers shared with
``invoke_latency.py``). A given server keeps its own throttles: raise them first.

It creates no-op Node.js actions (``function main() { return {}; }``), one per rule, and
for each rule count a trigger with that many rules, one to each action. One sample, over
one keep-alive connection (``http.client``, so the client adds little):

- ``fire``: ``POST /triggers/T`` until its 202 — the fire request's own latency;
- ``final``: from sending that request until the last rule's action record is final:
  the trigger's record is read (it exists when the 202 arrives) for the actions'
  activation ids, which are then polled without pause until none is ``pending``;
- ``recorded``: the last action record's ``end`` minus the send time (epoch ms), plus
  0.5 ms because ``end`` is truncated to whole milliseconds: the same span without the
  client's round trips for reading records (``final`` includes at least two more), at
  ~1 ms resolution per sample.

The baseline, measured in the same run on a no-op action: ``invoke`` (a blocking invoke,
``?blocking=true``, until its answer) and ``invoke+poll`` (a non-blocking invoke, then
polling its record until final: the ``final`` method without the trigger). Every target
is warmed first (all containers started). The ratio ``final / invoke+poll`` is what the
trigger and its rules cost over invoking the action directly; the goal is a p50 ≤ 1 ms
for one rule, judged on ``recorded`` (``final`` adds the observer's own round trips).
Figures: p50, p99, mean (ms). Results are printed as a table and written as JSON to
``bench/results/trigger_latency.json``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from invoke_latency import RESULTS, report_head, run_measurement

OUTPUT = RESULTS.parent / "trigger_latency.json"
NOOP = "function main() { return {}; }"
GOAL_P50_MS = 1.0
POLL_DEADLINE_S = 30.0


class Api:
    """One keep-alive connection to ``/api/v1/namespaces/_``."""

    def __init__(self, apihost: str, auth: str) -> None:
        parts = urlsplit(apihost)
        self._conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80)
        self._headers = {
            "Authorization": "Basic " + base64.b64encode(auth.encode()).decode(),
            "Content-Type": "application/json",
        }

    def call(self, method: str, path: str, body: Any = None, **query: str) -> tuple[int, Any]:
        url = "/api/v1/namespaces/_" + path
        if query:
            url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        payload = None if body is None else json.dumps(body)
        self._conn.request(method, url, body=payload, headers=self._headers)
        response = self._conn.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else None)

    def ok(self, method: str, path: str, body: Any = None, **query: str) -> Any:
        status, answer = self.call(method, path, body, **query)
        if status >= 300:
            raise SystemExit(f"{method} {path}: {status} {answer}")
        return answer

    def until_final(self, ids: list[str]) -> dict[str, Any]:
        """Poll the records of ``ids`` until none is pending; the last one to finish."""
        pending, last = list(ids), None
        end = time.monotonic() + POLL_DEADLINE_S
        while pending:
            for activation_id in list(pending):
                record = self.ok("GET", f"/activations/{activation_id}")
                if record["response"]["status"] != "pending":
                    pending.remove(activation_id)
                    last = record
            if time.monotonic() > end:
                raise SystemExit(f"activations still pending after {POLL_DEADLINE_S} s")
        assert isinstance(last, dict)
        return last

    def close(self) -> None:
        self._conn.close()


def setup(api: Api, rule_counts: list[int], suffix: str) -> tuple[str, dict[int, str]]:
    """The no-op actions, and one trigger per rule count with rules to them."""
    actions = [f"bench-trig-a{i}-{suffix}" for i in range(max(rule_counts))]
    for name in actions:
        body = {"exec": {"kind": "nodejs:default", "code": NOOP}}
        api.ok("PUT", f"/actions/{name}", body, overwrite="true")
    triggers = {}
    for n in rule_counts:
        trigger = f"bench-trig-t{n}-{suffix}"
        api.ok("PUT", f"/triggers/{trigger}", {}, overwrite="true")
        for i in range(n):
            rule = {"trigger": f"/_/{trigger}", "action": f"/_/{actions[i]}"}
            api.ok("PUT", f"/rules/bench-trig-r{n}-{i}-{suffix}", rule, overwrite="true")
        triggers[n] = trigger
    return actions[0], triggers


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {
        "p50": round(pct(50), 3),
        "p99": round(pct(99), 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


def fire_sample(api: Api, trigger: str, rules: int) -> dict[str, float]:
    sent_ms = time.time() * 1000
    t0 = time.perf_counter()
    status, answer = api.call("POST", f"/triggers/{trigger}", {})
    t_fire = time.perf_counter()
    if status != 202:
        raise SystemExit(f"fire {trigger}: {status} {answer}")
    record = api.ok("GET", f"/activations/{answer['activationId']}")
    ids = [json.loads(line)["activationId"] for line in record["logs"]]
    if len(ids) != rules:
        raise SystemExit(f"{trigger}: {len(ids)} rules fired, expected {rules}: {record['logs']}")
    last = api.until_final(ids)
    t_final = time.perf_counter()
    return {
        "fire": (t_fire - t0) * 1000,
        "final": (t_final - t0) * 1000,
        "recorded": last["end"] + 0.5 - sent_ms,
    }


def invoke_sample(api: Api, action: str) -> dict[str, float]:
    t0 = time.perf_counter()
    api.ok("POST", f"/actions/{action}", {}, blocking="true")
    t1 = time.perf_counter()
    answer = api.ok("POST", f"/actions/{action}", {})
    api.until_final([answer["activationId"]])
    t2 = time.perf_counter()
    return {"invoke": (t1 - t0) * 1000, "invoke+poll": (t2 - t1) * 1000}


def run(samples: int, sample: Callable[[], dict[str, float]]) -> dict[str, dict[str, float]]:
    for _ in range(max(20, samples // 10)):  # warm-up: containers started, caches filled
        sample()
    series: dict[str, list[float]] = {}
    for _ in range(samples):
        for key, value in sample().items():
            series.setdefault(key, []).append(value)
    return {key: stats(values) for key, values in series.items()}


def measure(args: argparse.Namespace, apihost: str, auth: str) -> dict[str, Any]:
    api = Api(apihost, auth)
    try:
        action, triggers = setup(api, args.rules, str(os.getpid()))
        results: dict[str, Any] = {"direct": run(args.samples, lambda: invoke_sample(api, action))}
        for n, trigger in triggers.items():

            def fire(t: str = trigger, n: int = n) -> dict[str, float]:
                return fire_sample(api, t, n)

            results[f"rules={n}"] = run(args.samples, fire)
    finally:
        api.close()
    baseline = results["direct"]["invoke+poll"]["p50"]
    for n in triggers:
        r = results[f"rules={n}"]
        r["final_over_invoke_poll_p50"] = round(r["final"]["p50"] / baseline, 2)
    one = results.get("rules=1")
    if one is not None:
        met = one["recorded"]["p50"] <= GOAL_P50_MS
        results["goal"] = {"recorded_p50_ms": GOAL_P50_MS, "met": met}
    return results


def table(results: dict[str, Any], samples: int) -> str:
    rows = [
        f"latency over one keep-alive connection, {samples} samples each (ms)",
        f"{'target':<12}{'measure':<13}{'p50':>9}{'p99':>9}{'mean':>9}{'p50 /invoke+poll':>18}",
    ]
    for target, r in results.items():
        if target == "goal":
            continue
        for key, s in r.items():
            if not isinstance(s, dict):
                continue
            ratio = r.get("final_over_invoke_poll_p50", "") if key == "final" else ""
            rows.append(
                f"{target:<12}{key:<13}{s['p50']:>9.3f}{s['p99']:>9.3f}{s['mean']:>9.3f}"
                f"{ratio!s:>18}"
            )
    goal = results.get("goal")
    if goal is not None:
        rows.append(
            f"goal: recorded p50 <= {goal['recorded_p50_ms']} ms with one rule: "
            f"{'met' if goal['met'] else 'not met'}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300, help="samples per target")
    parser.add_argument("--rules", default="1,4,16", help="rule counts")
    parser.add_argument("--apihost", help="a running server (default: start one)")
    parser.add_argument("--auth", help="uuid:key for --apihost")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    try:
        args.rules = sorted({int(n) for n in args.rules.split(",")})
    except ValueError:
        parser.error("--rules is a comma-separated list of integers")
    if args.samples < 1 or not all(1 <= n <= 64 for n in args.rules):
        parser.error("--samples >= 1, rule counts within 1..64")
    if bool(args.apihost) != bool(args.auth):
        parser.error("--apihost and --auth go together")

    started = time.time()
    results, server = run_measurement(args, lambda host, auth: measure(args, host, auth))
    report = {
        **report_head("trigger_latency", started, server, None),
        "parameters": {"samples": args.samples, "rules": args.rules},
        "results": results,
    }
    print(table(results, args.samples))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
