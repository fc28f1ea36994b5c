"""What the in-process A/B benchmarks of the HTTP layer share (``invoke_protocol.py``,
``web_protocol.py``, ``invoke_path.py``).

- :func:`platform`: the whole standalone platform in this process, with limits no
  benchmark reaches and containers kept warm for the whole run;
- :func:`serve`, :func:`serve_variants`: uvicorn servers on loopback sockets, one per
  protocol, all over the same application, stopped on exit;
- :func:`exchange`: one request and its answer on a raw keep-alive connection;
- :func:`spread`: how many requests each of ``concurrency`` workers sends;
- :func:`take_turns`: the rounds, the variants taking turns (the first one alternates by
  round, so neither always runs on a machine the other just warmed);
- :func:`compare`: medians of two variants per figure, with the median of the per-round
  ratios (new/base) and in how many rounds the new one was lower, as a table and a summary;
- :func:`arguments`, :func:`report`: the common flags (a count per sample, ``--rounds``,
  ``--concurrency``, ``--output``), and the table printed with the load average and written
  as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from invoke_latency import write_report

from squall.cli.standalone import Standalone
from squall.config import Settings

Samples = dict[str, list[dict[str, float]]]
#: A no-op action of each family, as the invoke benchmarks run them.
NOOPS = {
    "nodejs": ("nodejs:default", "function main() { return {}; }"),
    "python": ("python:default", "def main(args):\n    return {}\n"),
}


def arguments(
    doc: str,
    count: str,
    results: Path,
    more: Callable[[argparse.ArgumentParser], object] | None = None,
) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Parse ``--<count>`` (requests per sample), ``--rounds``, ``--concurrency``,
    ``--output`` and what ``more`` adds; the parser is returned for further checks."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(f"--{count}", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--output", type=Path, default=results)
    if more is not None:
        more(parser)
    args = parser.parse_args()
    if not (1 <= getattr(args, count) <= 100_000 and 1 <= args.rounds <= 50):
        parser.error(f"1 ≤ --{count} ≤ 100000, 1 ≤ --rounds ≤ 50")
    if not 1 <= args.concurrency <= 200:
        parser.error("1 ≤ --concurrency ≤ 200")
    return parser, args


def report(
    name: str,
    started: float,
    args: argparse.Namespace,
    load: tuple[float, float],
    rows: list[str],
    summary: dict[str, Any],
    samples: dict[str, Any],
) -> None:
    """Print ``rows`` and the load average (before, after); write the JSON report."""
    rows.append(f"load average (1 min): {load[0]:.2f} before, {load[1]:.2f} after")
    print("\n".join(rows))
    write_report(
        name,
        started,
        args,
        load_average={"before": load[0], "after": load[1]},
        summary=summary,
        samples=samples,
    )


@contextlib.asynccontextmanager
async def platform(prefix: str) -> AsyncIterator[Standalone]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        settings = Settings(
            home=Path(tmp),
            keep_warm_s=600,
            invocations_per_minute=100_000_000,
            concurrent_invocations=100_000,
        )
        system = await Standalone.start(settings)
        try:
            yield system
        finally:
            await system.close()


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


@contextlib.asynccontextmanager
async def serve_variants(
    app: Any, protocols: dict[str, type[asyncio.Protocol]]
) -> AsyncIterator[dict[str, int]]:
    """A server per protocol over ``app``; yields each variant's port."""
    servers: list[uvicorn.Server] = []
    try:
        ports: dict[str, int] = {}
        for name, protocol in protocols.items():
            server, ports[name] = await serve(app, protocol)
            servers.append(server)
        yield ports
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.sleep(0.5)  # the servers' tasks close their connections


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.split(b"\r\ncontent-length: ", 1)[1].split(b"\r\n", 1)[0])
    return int(head[9:12]), await reader.readexactly(length)


async def put_once(port: int, raw: bytes, what: str) -> None:
    """Send one request (an entity's PUT) on a new connection; exit unless it is a 200."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    status, answer = await exchange(reader, writer, raw)
    writer.close()
    if status != 200:
        raise SystemExit(f"cannot create {what}: {status} {answer[:200]!r}")


def spread(total: int, concurrency: int) -> list[int]:
    return [total // concurrency + (i < total % concurrency) for i in range(concurrency)]


async def take_turns(
    rounds: int,
    variants: Sequence[str],
    targets: Iterable[str],
    concurrencies: Sequence[int],
    sample: Callable[[str, str, int], Awaitable[dict[str, float]]],
) -> Samples:
    """``sample(variant, target, concurrency)`` in every round; keyed
    ``"<target> c=<concurrency> <variant>"``."""
    samples: Samples = {}
    targets = list(targets)
    for round_ in range(rounds):
        order = list(variants) if round_ % 2 == 0 else list(variants)[::-1]
        for target in targets:
            for conc in concurrencies:
                for name in order:
                    got = await sample(name, target, conc)
                    samples.setdefault(f"{target} c={conc} {name}", []).append(got)
        print(f"round {round_ + 1} done, load {os.getloadavg()[0]:.1f}", flush=True)
    return samples


def compare(
    samples: Samples,
    label: str,
    figures: Iterable[str],
    base: str,
    new: str,
    width: int = 16,
) -> tuple[list[str], dict[str, Any]]:
    """Rows (see :func:`header`) and summary entries of ``label``'s figures, ``new`` over
    ``base`` round by round."""
    rows: list[str] = []
    summary: dict[str, Any] = {}
    for figure in figures:
        a = [s[figure] for s in samples[f"{label} {base}"]]
        b = [s[figure] for s in samples[f"{label} {new}"]]
        ratios = [y / x for x, y in zip(a, b, strict=True)]
        lower = sum(r < 1 for r in ratios)
        summary[f"{label} {figure}"] = {
            base: statistics.median(a),
            new: statistics.median(b),
            "median_pair_ratio": statistics.median(ratios),
            f"pairs_{new}_lower": lower,
        }
        rows.append(
            f"{label:<{width}}{figure:<8}{statistics.median(a):>11.3f}"
            f"{statistics.median(b):>11.3f}{statistics.median(ratios):>16.2f}"
            f"{lower:>6}/{len(ratios)}"
        )
    return rows, summary


def header(base: str, new: str, width: int = 16) -> str:
    ratio = f"{new}/{base}"
    return f"{'target':<{width}}{'figure':<8}{base:>11}{new:>11}{ratio:>16}{'pairs <':>9}"
