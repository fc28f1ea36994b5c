"""What serving a web action through the API gateway costs, against the same web action
called at its own URL, in the same run.

    .venv/bin/python bench/gateway_latency.py [--requests 500] [--rounds 6]
        [--apihost http://127.0.0.1:3233 --auth uuid:key]

Without ``--apihost`` it starts its own ``squall standalone`` on a free loopback port with
a temporary home (throttles raised out of the way) and stops it at the end; only loopback
addresses are ever targeted (helpers shared with ``invoke_latency.py``).

It creates a web-exported no-op Node.js action (``function main() { return {}; }``) and a
route to it (``GET /bench-<pid>/noop``, response type ``json``) through the management
API, checks both URLs answer ``{}``, warms them, and measures, one keep-alive connection,
one request after another, ``--requests`` each, in ``--rounds`` rounds (``web`` and
``gateway`` in alternating order: on a shared machine only figures taken close together
compare):

| target | request |
|---|---|
| ``baseline`` | ``GET /api/v1``: the HTTP stack alone |
| ``web`` | ``GET /api/v1/web/<ns>/default/<action>.json`` |
| ``gateway`` | ``GET /api/<tenant>/bench-<pid>/noop``: the route to the same action |

Figures per target and round: p50, p99, mean (ms); the median over the rounds of
``gateway - web`` (p50 of each round) is what the gateway adds (its store read of the
tenant's APIs, the matching). The 1-minute load average before and
after is recorded (the machine may be shared). Results are printed as a table and written
as JSON to ``bench/results/gateway_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from invoke_latency import RESULTS, load, ratio, report_head, run_measurement

OUTPUT = RESULTS.parent / "gateway_latency.json"
NOOP = "function main() { return {}; }"
MGMT = "/api/v1/web/whisk.system/apimgmt"


def create_targets(apihost: str, auth: str, suffix: str) -> dict[str, str]:
    """The web action and its route; ``{target: url}``."""
    uuid, _, key = auth.partition(":")
    name, base = f"bench-web-noop-{suffix}", f"/bench-{suffix}"
    with httpx.Client(base_url=apihost, auth=(uuid, key), trust_env=False, timeout=60) as c:
        body = {
            "exec": {"kind": "nodejs:default", "code": NOOP},
            "annotations": [{"key": "web-export", "value": True}],
        }
        c.put(
            f"/api/v1/namespaces/_/actions/{name}", params={"overwrite": "true"}, json=body
        ).raise_for_status()
        namespace = c.get("/api/v1/namespaces").json()[0]
        apidoc = {
            "namespace": "_",
            "gatewayBasePath": base,
            "gatewayPath": "/noop",
            "gatewayMethod": "GET",
            "action": {
                "name": name,
                "namespace": "_",
                "backendMethod": "GET",
                "backendUrl": f"{apihost}/api/v1/web/_/default/{name}.http",
                "authkey": auth,
            },
        }
        created = c.post(
            f"{MGMT}/createApi", params={"responsetype": "json"}, json={"apidoc": apidoc}
        )
        created.raise_for_status()
        route = urlsplit(created.json()["gwApiUrl"]).path + "/noop"
        found = {
            "baseline": f"{apihost}/api/v1",
            "web": f"{apihost}/api/v1/web/{namespace}/default/{name}.json",
            "gateway": f"{apihost}{route}",
        }
        for target in ("web", "gateway"):
            r = c.get(found[target])
            if r.status_code != 200 or r.json() != {}:
                raise SystemExit(f"{target} does not work: {r.status_code} {r.text}")
    return found


def measure(args: argparse.Namespace, apihost: str, auth: str, node: str) -> dict[str, Any]:
    """``--rounds`` rounds of ``--requests`` per target, the order of ``web`` and
    ``gateway`` swapped every round: on a shared machine the load drifts within seconds,
    so only figures taken close together compare, and the per-round differences do."""
    urls = create_targets(apihost, auth, str(os.getpid()))
    for url in urls.values():  # warm-up
        load(node, {"url": url, "method": "GET", "connections": 1, "requests": 200})
    rounds: list[dict[str, Any]] = []
    for n in range(args.rounds):
        order = ["baseline", "web", "gateway"] if n % 2 == 0 else ["baseline", "gateway", "web"]
        rounds.append(
            {
                target: load(
                    node,
                    {"url": urls[target], "method": "GET", "connections": 1,
                     "requests": args.requests},
                )
                for target in order
            }
        )  # fmt: skip
    p50s = {t: [r[t]["latencyMs"]["p50"] for r in rounds] for t in urls}
    added = [g - w for g, w in zip(p50s["gateway"], p50s["web"], strict=True)]
    return {
        "rounds": rounds,
        "p50_median_ms": {t: round(statistics.median(v), 3) for t, v in p50s.items()},
        "added_p50_ms": [round(a, 3) for a in added],
        "added_p50_median_ms": round(statistics.median(added), 3),
        "ratio_to_web": ratio(statistics.median(p50s["gateway"]), statistics.median(p50s["web"])),
    }


def table(results: dict[str, Any], load_before: float, load_after: float) -> str:
    rows = [
        "GET latency, 1 connection (ms), per round",
        f"{'round':<7}{'target':<10}{'requests':>10}{'p50':>9}{'p99':>9}{'mean':>9}{'errors':>8}",
    ]
    for n, found in enumerate(results["rounds"], 1):
        for target, r in found.items():
            ms = r["latencyMs"]
            rows.append(
                f"{n:<7}{target:<10}{r['requests']:>10}{ms['p50']:>9.3f}{ms['p99']:>9.3f}"
                f"{ms['mean']:>9.3f}{r['errors']:>8}"
            )
    medians = results["p50_median_ms"]
    rows.append("median p50: " + ", ".join(f"{t} {v} ms" for t, v in medians.items()))
    rows.append(
        f"gateway - web (p50, per round): {results['added_p50_ms']} ms;"
        f" median {results['added_p50_median_ms']} ms; gateway / web {results['ratio_to_web']}"
    )
    rows.append(f"load average (1 min) before {load_before:.2f}, after {load_after:.2f}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="per target and round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds, order alternating")
    parser.add_argument("--apihost", help="a running server (default: start one)")
    parser.add_argument("--auth", help="uuid:key for --apihost")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests >= 1, --rounds >= 1")
    if bool(args.apihost) != bool(args.auth):
        parser.error("--apihost and --auth go together")
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for bench/load.js")

    started = time.time()
    load_before = os.getloadavg()[0]
    results, server = run_measurement(args, lambda host, auth: measure(args, host, auth, node))
    load_after = os.getloadavg()[0]
    report = {
        **report_head("gateway_latency", started, server, node),
        "parameters": {"requests": args.requests, "rounds": args.rounds},
        "load_average_1min": {"before": load_before, "after": load_after},
        "results": results,
    }
    print(table(results, load_before, load_after))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
