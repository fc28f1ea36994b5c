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
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import uvicorn
import uvloop
from invoke_latency import write_report

from squall.cli.coalescing import CoalescingHttpToolsProtocol
from squall.cli.serving import protocol_for
from squall.cli.standalone import Standalone
from squall.config import Settings

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


async def serve(app: Any, protocol: type[asyncio.Protocol]) -> tuple[uvicorn.Server, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, http=protocol, loop="none", lifespan="off", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    for _ in range(1000):
        if server.started:
            return server, sock.getsockname()[1]
        await asyncio.sleep(0.01)
    raise SystemExit("uvicorn did not start")


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.split(b"\r\ncontent-length: ", 1)[1].split(b"\r\n", 1)[0])
    return int(head[9:12]), await reader.readexactly(length)


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

    per_worker = [
        requests // concurrency + (i < requests % concurrency) for i in range(concurrency)
    ]
    cpu, loop, wall = time.process_time(), time.thread_time(), time.perf_counter()
    await asyncio.gather(*(worker(n) for n in per_worker))
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
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        status, answer = await exchange(reader, writer, put)
        writer.close()
        if status != 200:
            raise SystemExit(f"cannot create {path}: {status} {answer[:200]!r}")


async def run(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    with tempfile.TemporaryDirectory(prefix="squall-web-protocol-") as tmp:
        settings = Settings(
            home=Path(tmp),
            keep_warm_s=600,
            invocations_per_minute=100_000_000,
            concurrent_invocations=100_000,
        )
        system = await Standalone.start(settings)
        servers: list[uvicorn.Server] = []
        try:
            ports: dict[str, int] = {}
            for name, protocol in (
                ("asgi", CoalescingHttpToolsProtocol),
                ("hot", protocol_for(system.app)),
            ):
                server, ports[name] = await serve(system.app, protocol)
                servers.append(server)
            await _create(ports["asgi"], b"Basic " + base64.b64encode(system.guest_auth.encode()))
            for target in args.targets:
                for port in ports.values():  # warm: containers for both concurrencies
                    await sample(port, target, 100, 1)
                    await sample(port, target, 4 * args.concurrency, args.concurrency)
            samples: dict[str, list[dict[str, float]]] = {}
            for round_ in range(args.rounds):
                order = list(ports) if round_ % 2 == 0 else list(ports)[::-1]
                for target in args.targets:
                    for conc in (1, args.concurrency):
                        for name in order:
                            got = await sample(ports[name], target, args.requests, conc)
                            samples.setdefault(f"{target} c={conc} {name}", []).append(got)
                print(f"round {round_ + 1} done, load {os.getloadavg()[0]:.1f}", flush=True)
            for target in args.targets:
                for name in ports:
                    calls = await count_calls(ports[name], target, 200)
                    samples[f"{target} calls {name}"] = [{"calls": calls}]
            return samples
        finally:
            for server in servers:
                server.should_exit = True
            await asyncio.sleep(0.5)
            await system.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.targets = args.targets.split(",")
    if not set(args.targets) <= set(TARGETS):
        parser.error(f"--targets: some of {','.join(TARGETS)}")
    if not (1 <= args.requests <= 100_000 and 1 <= args.rounds <= 50):
        parser.error("1 ≤ --requests ≤ 100000, 1 ≤ --rounds ≤ 50")
    if not 1 <= args.concurrency <= 200:
        parser.error("1 ≤ --concurrency ≤ 200")
    load_before = os.getloadavg()[0]
    started = time.time()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        samples = runner.run(run(args))
    load_after = os.getloadavg()[0]
    rows = [f"{'target':<14}{'figure':<8}{'asgi':>9}{'hot':>9}{'hot/asgi':>10}{'pairs <':>9}"]
    summary: dict[str, Any] = {}
    for target in args.targets:
        for conc in (1, args.concurrency):
            figures: tuple[str, ...] = ("cpu_ms", "loop_ms", "wall_ms")
            if conc == 1:
                figures += ("p50_ms", "p99_ms")
            for figure in figures:
                a = [s[figure] for s in samples[f"{target} c={conc} asgi"]]
                h = [s[figure] for s in samples[f"{target} c={conc} hot"]]
                ratios = [y / x for x, y in zip(a, h, strict=True)]
                label = f"{target} c={conc}"
                summary[f"{label} {figure}"] = {
                    "asgi": statistics.median(a),
                    "hot": statistics.median(h),
                    "median_pair_ratio": statistics.median(ratios),
                    "pairs_hot_lower": sum(r < 1 for r in ratios),
                }
                rows.append(
                    f"{label:<14}{figure:<8}{statistics.median(a):>9.3f}"
                    f"{statistics.median(h):>9.3f}{statistics.median(ratios):>10.2f}"
                    f"{sum(r < 1 for r in ratios):>6}/{len(ratios)}"
                )
        a_calls = samples[f"{target} calls asgi"][0]["calls"]
        h_calls = samples[f"{target} calls hot"][0]["calls"]
        summary[f"{target} calls"] = {"asgi": a_calls, "hot": h_calls}
        label = f"{target} c=1"
        rows.append(
            f"{label:<14}{'calls':<8}{a_calls:>9.0f}{h_calls:>9.0f}{h_calls / a_calls:>10.2f}"
        )
    rows.append(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after")
    print("\n".join(rows))
    write_report(
        "web_protocol",
        started,
        args,
        load_average={"before": load_before, "after": load_after},
        summary=summary,
        samples=samples,
    )


if __name__ == "__main__":
    main()
