"""Server CPU of one warm invoke through the ASGI application: fast path vs Starlette.

    .venv/bin/python bench/invoke_path.py [--invokes 2000] [--rounds 7] [--concurrency 20]

The whole platform in this process (``Standalone``, as ``squall standalone`` builds it:
SQLite store, memory bus, the invoker with isolated runtimes), without uvicorn and
without a client socket: each request is handed to the ASGI application by a minimal
driver (a scope, a ``receive`` that gives the body, a ``send`` that keeps the answer), so
what is timed is the application, the invoker, the store and the runtime exchange — and
the driver, the same for both variants:

A third target, ``missing``, posts to an action that does not exist: the same route,
authentication and action lookup, answered 404 without an invoke — the HTTP layer alone.

- ``starlette``: ``RequestMiddleware`` over the Starlette application (every route);
- ``fast``: the application as served, whose ``InvokeFastPath`` sends
  ``POST .../actions/...`` past Starlette's routing and exception layers.

A no-op Node.js and a no-op Python action, warmed, are invoked blocking with
``result=true``, ``--invokes`` times per sample, one at a time (``c=1``) and
``--concurrency`` at once; the variants take turns (the first one alternates by round).
Figures: this process's CPU time (``time.process_time``: every thread, not the runtimes)
per invoke, and wall time per invoke; medians over ``--rounds``, with fast/starlette
ratios (the median of the per-round ratios, and in how many rounds ``fast`` was lower)
and the 1-minute load average. Writes ``bench/results/invoke_path.json``.
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
from protocol_support import (
    NOOPS,
    arguments,
    compare,
    header,
    platform,
    report,
    spread,
    take_turns,
)
from starlette.types import ASGIApp, Message

from squall.controller.fastpath import InvokeFastPath
from squall.controller.middleware import RequestMiddleware

RESULTS = Path(__file__).resolve().parent / "results" / "invoke_path.json"
#: A target without an invoke: the same route, authentication and action lookup, a 404.
MISSING = "bench-path-missing"
ACTIONS = NOOPS


async def request(
    app: ASGIApp, method: str, path: str, query: str, auth: bytes, body: bytes
) -> tuple[int, bytes]:
    """One request through ``app``; (status, body)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", auth),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 3233),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never: the answer ends the request
        raise AssertionError

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def sample(
    app: ASGIApp, path: str, auth: bytes, invokes: int, concurrency: int
) -> dict[str, float]:
    query = "blocking=true&result=true"

    async def worker(count: int) -> None:
        for _ in range(count):
            status, answer = await request(app, "POST", path, query, auth, b"{}")
            if (status, answer) != (200, b"{}") and not (status == 404 and MISSING in path):
                raise SystemExit(f"{path}: {status} {answer[:200]!r}")

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(n) for n in spread(invokes, concurrency)))
    return {
        "cpu_ms": 1000 * (time.process_time() - cpu) / invokes,
        "wall_ms": 1000 * (time.perf_counter() - wall) / invokes,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with platform("squall-path-") as system:
        served = system.app
        assert isinstance(served, RequestMiddleware) and isinstance(served.app, InvokeFastPath)
        variants: dict[str, ASGIApp] = {
            "starlette": RequestMiddleware(served.app.app),
            "fast": served,
        }
        auth = b"Basic " + base64.b64encode(system.guest_auth.encode())
        paths = {}
        for family, (kind, code) in ACTIONS.items():
            path = f"/api/v1/namespaces/_/actions/bench-path-{family}"
            body = orjson.dumps({"exec": {"kind": kind, "code": code}})
            status, answer = await request(served, "PUT", path, "", auth, body)
            if status != 200:
                raise SystemExit(f"cannot create {path}: {status} {answer[:200]!r}")
            paths[family] = path
            for app in variants.values():  # warm: containers for both concurrencies
                await sample(app, path, auth, 100, 1)
                await sample(app, path, auth, 4 * args.concurrency, args.concurrency)
        paths["missing"] = f"/api/v1/namespaces/_/actions/{MISSING}"

        async def one(name: str, family: str, conc: int) -> dict[str, float]:
            return await sample(variants[name], paths[family], auth, args.invokes, conc)

        return await take_turns(args.rounds, list(variants), paths, (1, args.concurrency), one)


def main() -> None:
    _, args = arguments(__doc__, "invokes", RESULTS)
    load_before = os.getloadavg()[0]
    started = time.time()
    samples = asyncio.run(run(args))
    load_after = os.getloadavg()[0]
    rows = [header("starlette", "fast")]
    summary: dict[str, Any] = {}
    for family in (*ACTIONS, "missing"):
        for conc in (1, args.concurrency):
            label = f"{family} c={conc}"
            got, entries = compare(samples, label, ("cpu_ms", "wall_ms"), "starlette", "fast")
            rows += got
            summary |= entries
    report("invoke_path", started, args, (load_before, load_after), rows, summary, samples)


if __name__ == "__main__":
    main()
