"""CPU and latency of a warm web action served over loopback: hot-route protocol vs ASGI.

    .venv/bin/python bench/web_protocol.py [--requests 2000] [--rounds 7] [--concurrency 20]
        [--targets json,http,options,missing]

The whole platform in this process (``Standalone``, as ``squall standalone`` builds it),
served on loopback by two uvicorn servers at once, on uvloop as ``squall standalone``:

- ``asgi``: uvicorn's httptools protocol with the coalescing transport (every request
  through the ASGI application: ``RequestMiddleware``, the fast path, Starlette's
  ``Request`` and ``Response``);
- ``hot``: the protocol ``squall standalone`` serves with (``cli/serving.py``
  ``protocol_for``): web action requests served by ``controller/hotroute.py`` without
  ASGI.

A client in the same process (raw keep-alive sockets, one request at a time on each of
``--concurrency`` connections, or one connection for ``c=1``) calls, anonymously:

- ``json``: ``GET .../noop.json?x=1`` of a Node.js action answering ``{"ok": true}``;
- ``http``: ``POST .../page.http`` with a JSON body, a Python action answering
  ``{statusCode, headers, body}`` (``text/html``);
- ``options``: a CORS preflight (``OPTIONS``) of that Node.js action: the lookups and an
  answer, no invocation;
- ``missing``: ``GET`` of a web action that does not exist (route, namespace and action
  lookup, a 404: the HTTP layer alone).

The variants take turns (the first one alternates by round). Figures: this process's CPU
time per request (``cpu_ms``, ``time.process_time``: server and client, not the runtimes —
the client is the same for both, so the difference is the server's), the event loop
thread's alone (``loop_ms``, ``time.thread_time``: the HTTP layer, controller, invoker and
client, without the store's threads; this machine has no hardware counters to count
instructions), wall time per request,
and at c=1 the p50/p99 of each request's latency; medians over ``--rounds``, hot/asgi
ratios per round, the 1-minute load average. Then, once per variant, a count that the
machine's load does not change: Python and C function calls on the event loop thread per
request (``sys.setprofile``, 200 requests at c=1, the client's included: the same for
both). Writes ``bench/results/web_protocol.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop
from protocol_support import (
    arguments,
    compare,
    exchange,
    header,
    platform,
    put_once,
    report,
    serve_variants,
    spread,
    take_turns,
)

from squall.cli.coalescing import CoalescingHttpToolsProtocol
from squall.cli.serving import protocol_for

RESULTS = Path(__file__).resolve().parent / "results" / "web_protocol.json"
WEB = "/api/v1/web/guest/default"
ACTIONS = {
    "noop": ("nodejs:default", "function main() { return {ok: true}; }"),
    "page": (
        "python:default",
        "def main(args):\n"
        "    return {'statusCode': 200, 'headers': {'X-Page': '1'}, 'body': '<p>hi</p>'}\n",
    ),
}
# target: (request, expected status)
TARGETS = {
    "json": (b"GET %s/noop.json?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % WEB.encode(), 200),
    "http": (
        b"POST %s/page.http HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 13\r\n\r\n{"name": "x"}' % WEB.encode(),
        200,
    ),
    "options": (
        b"OPTIONS %s/noop.json HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Access-Control-Request-Headers: X-Custom\r\n\r\n" % WEB.encode(),
        200,
    ),
    "missing": (
        b"GET %s/bench-missing.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % WEB.encode(),
        404,
    ),
}


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def sample(port: int, target: str, requests: int, concurrency: int) -> dict[str, float]:
    raw, expected = TARGETS[target]
    latencies: list[float] = []

    async def worker(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        clock = time.perf_counter
        try:
            for _ in range(count):
                t0 = clock()
                status, answer = await exchange(reader, writer, raw)
                latencies.append(clock() - t0)
                if status != expected:
                    raise SystemExit(f"{target}: {status} {answer[:200]!r}")
        finally:
            writer.close()

    cpu, loop, wall = time.process_time(), time.thread_time(), time.perf_counter()
    await asyncio.gather(*(worker(n) for n in spread(requests, concurrency)))
    return {
        "cpu_ms": 1000 * (time.process_time() - cpu) / requests,
        "loop_ms": 1000 * (time.thread_time() - loop) / requests,
        "wall_ms": 1000 * (time.perf_counter() - wall) / requests,
        "p50_ms": 1000 * _percentile(latencies, 0.50),
        "p99_ms": 1000 * _percentile(latencies, 0.99),
    }


async def count_calls(port: int, target: str, requests: int) -> float:
    """Python and C function calls on this thread per request (server and client)."""
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call" or event == "c_call":
            calls += 1

    sys.setprofile(profile)
    try:
        await sample(port, target, requests, 1)
    finally:
        sys.setprofile(None)
    return calls / requests


async def _create(port: int, auth: bytes) -> None:
    for name, (kind, code) in ACTIONS.items():
        path = f"/api/v1/namespaces/_/actions/{name}"
        body = orjson.dumps(
            {
                "exec": {"kind": kind, "code": code},
                "annotations": [{"key": "web-export", "value": True}],
            }
        )
        put = (
            b"PUT %s?overwrite=true HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        ) % (path.encode(), auth, len(body), body)
        await put_once(port, put, path)


async def run(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    async with platform("squall-web-protocol-") as system:
        protocols: dict[str, type[asyncio.Protocol]] = {
            "asgi": CoalescingHttpToolsProtocol,
            "hot": protocol_for(system.app),
        }
        async with serve_variants(system.app, protocols) as ports:
            await _create(ports["asgi"], b"Basic " + base64.b64encode(system.guest_auth.encode()))
            for target in args.targets:
                for port in ports.values():  # warm: containers for both concurrencies
                    await sample(port, target, 100, 1)
                    await sample(port, target, 4 * args.concurrency, args.concurrency)

            async def one(name: str, target: str, conc: int) -> dict[str, float]:
                return await sample(ports[name], target, args.requests, conc)

            samples = await take_turns(
                args.rounds, list(ports), args.targets, (1, args.concurrency), one
            )
            for target in args.targets:
                for name in ports:
                    calls = await count_calls(ports[name], target, 200)
                    samples[f"{target} calls {name}"] = [{"calls": calls}]
            return samples


def main() -> None:
    parser, args = arguments(
        __doc__,
        "requests",
        RESULTS,
        lambda parser: parser.add_argument("--targets", default=",".join(TARGETS)),
    )
    args.targets = args.targets.split(",")
    if not set(args.targets) <= set(TARGETS):
        parser.error(f"--targets: some of {','.join(TARGETS)}")
    load_before = os.getloadavg()[0]
    started = time.time()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        samples = runner.run(run(args))
    load_after = os.getloadavg()[0]
    rows = [header("asgi", "hot", 14)]
    summary: dict[str, Any] = {}
    for target in args.targets:
        for conc in (1, args.concurrency):
            figures: tuple[str, ...] = ("cpu_ms", "loop_ms", "wall_ms")
            if conc == 1:
                figures += ("p50_ms", "p99_ms")
            got, entries = compare(samples, f"{target} c={conc}", figures, "asgi", "hot", 14)
            rows += got
            summary |= entries
        a_calls = samples[f"{target} calls asgi"][0]["calls"]
        h_calls = samples[f"{target} calls hot"][0]["calls"]
        summary[f"{target} calls"] = {"asgi": a_calls, "hot": h_calls}
        label = f"{target} c=1"
        rows.append(
            f"{label:<14}{'calls':<8}{a_calls:>11.0f}{h_calls:>11.0f}{h_calls / a_calls:>16.2f}"
        )
    report("web_protocol", started, args, (load_before, load_after), rows, summary, samples)


if __name__ == "__main__":
    main()
