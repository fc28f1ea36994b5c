"""Two versions of ``squall standalone`` side by side: warm invoke latency and server CPU.

    .venv/bin/python bench/invoke_ab.py --before REF [--rounds 3] [--requests 1000]
        [--duration 5] [--connections 50]

Exports the git revision ``REF`` (``git archive``) to a temporary directory and starts
two standalone servers on loopback: ``before`` from that tree and ``after`` from this
working tree (both with the same venv, isolation on, throttles raised). Each gets the
same no-op Node.js and Python actions. Then, for ``--rounds`` rounds, every target (one
kind on one server) is measured in turns — the server measured first alternates from
round to round, so a change of load hits both alike:

- ``c=1``: ``--requests`` blocking invokes over one keep-alive connection (p50, p99);
- ``c=N``: ``--connections`` connections in a closed loop for ``--duration`` seconds
  (requests/s);
- for both, the server process's CPU time (``utime + stime`` of every thread, from
  ``/proc/PID/stat``) divided by the invokes answered: ms of server CPU per invoke. The
  runtimes and the load generator are not in it.

Prints medians over the rounds with after/before ratios, the 1-minute load average
before and after, and writes ``bench/results/invoke_ab.json``. Only loopback is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from invoke_latency import REPO, create_actions, load, own_server, report_head, targets

RESULTS = REPO / "bench" / "results" / "invoke_ab.json"
TICKS = os.sysconf("SC_CLK_TCK")
VERSIONS = ("before", "after")


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` so far (not of its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def load_average() -> float:
    return os.getloadavg()[0]


def export(ref: str, into: Path) -> None:
    """``git archive ref`` unpacked into ``into``."""
    archive = into / "src.tar"
    subprocess.run(
        ["git", "archive", "--format=tar", "-o", str(archive), ref], cwd=REPO, check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(into / "src", filter="tar")
    archive.unlink()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited child not yet reaped is a zombie: state Z)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def measured(node: str, pid: int, options: dict[str, Any]) -> dict[str, Any]:
    cpu = cpu_seconds(pid)
    result = load(node, options)
    used = cpu_seconds(pid) - cpu
    if not alive(pid) or result["errors"]:
        # A dead server answers nothing, fast: its figures would look like a win.
        raise SystemExit(
            f"server {pid} {'exited' if not alive(pid) else 'answered errors'}: "
            f"{result['errors']} errors, statuses {result.get('statuses')}"
        )
    answered = max(1, result["requests"])
    return {
        "p50": result["latencyMs"]["p50"],
        "p99": result["latencyMs"]["p99"],
        "rps": result["rps"],
        "errors": result["errors"],
        "cpu_ms_per_invoke": 1000 * used / answered,
    }


def median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="c=1 requests per sample")
    parser.add_argument("--duration", type=float, default=5.0, help="c=N seconds per sample")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not (1 <= args.rounds <= 20 and 1 <= args.requests <= 100_000):
        parser.error("1 ≤ --rounds ≤ 20, 1 ≤ --requests ≤ 100000")
    if not (0 < args.duration <= 60 and 1 <= args.connections <= 1000):
        parser.error("0 < --duration ≤ 60, 1 ≤ --connections ≤ 1000")
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for bench/load.js")

    started = time.time()
    load_before = load_average()
    samples: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="squall-ab-") as tmp, contextlib.ExitStack() as stack:
        export(args.before, Path(tmp))
        pids: list[int] = []
        servers: dict[str, tuple[str, str, int]] = {}
        for version, source in zip(VERSIONS, (Path(tmp) / "src", REPO), strict=True):
            apihost, auth = stack.enter_context(own_server(source, pids))
            servers[version] = (apihost, auth, pids[-1])
        requests: dict[tuple[str, str], dict[str, Any]] = {}
        for version, (apihost, auth, _) in servers.items():
            names = create_actions(apihost, auth, f"{os.getpid()}")
            for family, request in targets(apihost, auth, names).items():
                if family != "baseline":
                    requests[(version, family)] = request
        for request in requests.values():  # warm both concurrencies (containers started)
            load(node, {**request, "connections": 1, "requests": 200})
            for _ in range(2):
                load(node, {**request, "connections": args.connections, "durationMs": 3000})
        for round_ in range(args.rounds):
            order = VERSIONS if round_ % 2 == 0 else VERSIONS[::-1]
            for family in ("nodejs", "python"):
                for version in order:
                    request = requests[(version, family)]
                    pid = servers[version][2]
                    one = measured(
                        node, pid, {**request, "connections": 1, "requests": args.requests}
                    )
                    many = measured(
                        node,
                        pid,
                        {
                            **request,
                            "connections": args.connections,
                            "durationMs": int(args.duration * 1000),
                        },
                    )
                    samples.setdefault(f"{family} c=1 {version}", []).append(one)
                    samples.setdefault(f"{family} c={args.connections} {version}", []).append(many)
                    print(
                        f"round {round_ + 1} {family:<6} {version:<6} c=1 p50 {one['p50']:.3f} ms"
                        f" cpu {one['cpu_ms_per_invoke']:.3f} ms/invoke | c={args.connections}"
                        f" {many['rps']:.0f}/s cpu {many['cpu_ms_per_invoke']:.3f} ms/invoke"
                        f" | load {load_average():.1f}",
                        flush=True,
                    )
    load_after = load_average()

    rows = [
        f"{'target':<22}{'before':>10}{'after':>10}{'after/before':>14}",
    ]
    summary: dict[str, Any] = {}
    for family in ("nodejs", "python"):
        for conc, figures in (
            ("c=1", ("p50", "p99", "cpu_ms_per_invoke")),
            (f"c={args.connections}", ("rps", "p50", "cpu_ms_per_invoke")),
        ):
            for figure in figures:
                b = median(samples[f"{family} {conc} before"], figure)
                a = median(samples[f"{family} {conc} after"], figure)
                label = f"{family} {conc} {figure.replace('_ms_per_invoke', ' ms/inv')}"
                summary[label] = {"before": b, "after": a, "ratio": a / b if b else None}
                rows.append(f"{label:<22}{b:>10.3f}{a:>10.3f}{(a / b if b else 0):>14.2f}")
    rows.append(f"load average (1 min): {load_before:.2f} before the run, {load_after:.2f} after")
    print("\n".join(rows))
    report = {
        **report_head("invoke_ab", started, "started", node),
        "parameters": {**vars(args), "output": str(args.output)},
        "load_average": {"before": load_before, "after": load_after},
        "summary": summary,
        "samples": samples,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
