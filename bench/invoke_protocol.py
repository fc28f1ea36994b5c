"""CPU of one warm invoke served over loopback: the hot-route protocol vs uvicorn + ASGI.

    .venv/bin/python bench/invoke_protocol.py [--invokes 2000] [--rounds 7] [--concurrency 20]

The whole platform in this process (``Standalone``, as ``squall standalone`` builds it),
served on loopback by two uvicorn servers at once, on uvloop as ``squall standalone``:

- ``asgi``: uvicorn's httptools protocol with the coalescing transport (every request
  through the ASGI application: ``RequestMiddleware``, the fast path, Starlette's
  ``Request`` and ``Response``) — the protocol ``squall standalone`` used before;
- ``hot``: the protocol ``squall standalone`` serves with (``cli/serving.py``
  ``protocol_for``): plain invokes served by ``controller/hotroute.py`` without ASGI.

A client in the same process (raw keep-alive sockets, one request at a time on each of
``--concurrency`` connections, or one connection for ``c=1``) posts blocking
``result=true`` invokes of a no-op Node.js and Python action, and ``missing``: an action
that does not exist (route, authentication, lookup, a 404: the HTTP layer alone). The
variants take turns (the first one alternates by round). Figures: this process's CPU
time per invoke (``time.process_time``: server and client, not the runtimes — the client
is the same for both, so the difference is the server's) and wall time per invoke;
medians over ``--rounds``, hot/asgi ratios, the 1-minute load average. Writes
``bench/results/invoke_protocol.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop
from protocol_support import (
    NOOPS,
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

RESULTS = Path(__file__).resolve().parent / "results" / "invoke_protocol.json"
MISSING = "bench-protocol-missing"
ACTIONS = NOOPS


def invoke_request(path: str, auth: bytes, body: bytes) -> bytes:
    return (
        b"POST %s?blocking=true&result=true HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    ) % (path.encode(), auth, len(body), body)


async def sample(
    port: int, path: str, auth: bytes, invokes: int, concurrency: int
) -> dict[str, float]:
    raw = invoke_request(path, auth, b"{}")
    missing = MISSING in path

    async def worker(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count):
                status, answer = await exchange(reader, writer, raw)
                if (status, answer) != (200, b"{}") and not (missing and status == 404):
                    raise SystemExit(f"{path}: {status} {answer[:200]!r}")
        finally:
            writer.close()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(n) for n in spread(invokes, concurrency)))
    return {
        "cpu_ms": 1000 * (time.process_time() - cpu) / invokes,
        "wall_ms": 1000 * (time.perf_counter() - wall) / invokes,
    }


async def run(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    async with platform("squall-protocol-") as system:
        protocols: dict[str, type[asyncio.Protocol]] = {
            "asgi": CoalescingHttpToolsProtocol,
            "hot": protocol_for(system.app),
        }
        async with serve_variants(system.app, protocols) as ports:
            auth = b"Basic " + base64.b64encode(system.guest_auth.encode())
            paths = {}
            for family, (kind, code) in ACTIONS.items():
                path = f"/api/v1/namespaces/_/actions/bench-protocol-{family}"
                body = orjson.dumps({"exec": {"kind": kind, "code": code}})
                put = (
                    b"PUT %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                ) % (path.encode(), auth, len(body), body)
                await put_once(ports["asgi"], put, path)
                paths[family] = path
                for port in ports.values():  # warm: containers for both concurrencies
                    await sample(port, path, auth, 100, 1)
                    await sample(port, path, auth, 4 * args.concurrency, args.concurrency)
            paths["missing"] = f"/api/v1/namespaces/_/actions/{MISSING}"

            async def one(name: str, family: str, conc: int) -> dict[str, float]:
                return await sample(ports[name], paths[family], auth, args.invokes, conc)

            return await take_turns(args.rounds, list(ports), paths, (1, args.concurrency), one)


def main() -> None:
    _, args = arguments(__doc__, "invokes", RESULTS)
    load_before = os.getloadavg()[0]
    started = time.time()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        samples = runner.run(run(args))
    load_after = os.getloadavg()[0]
    rows = [header("asgi", "hot")]
    summary: dict[str, Any] = {}
    for family in (*ACTIONS, "missing"):
        for conc in (1, args.concurrency):
            got, figures = compare(
                samples, f"{family} c={conc}", ("cpu_ms", "wall_ms"), "asgi", "hot"
            )
            rows += got
            summary |= figures
    report("invoke_protocol", started, args, (load_before, load_after), rows, summary, samples)


if __name__ == "__main__":
    main()
