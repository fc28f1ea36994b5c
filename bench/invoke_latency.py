"""Warm invoke latency and throughput of ``squall standalone``, against a baseline.

    .venv/bin/python bench/invoke_latency.py [--requests 2000] [--duration 10]
        [--connections 50] [--apihost http://127.0.0.1:3233 --auth uuid:key]

Without ``--apihost`` it starts its own ``squall standalone`` on a free loopback port with
a temporary home (and throttles raised out of the way), and stops it at the end.

It creates a no-op Node.js action (``function main(){return {}}``) and a no-op Python
action, warms them, and measures three targets in the same run:

- ``baseline``: ``GET /api/v1`` (the HTTP stack alone, no auth, no invoke);
- ``nodejs`` and ``python``: ``POST .../actions/NAME?blocking=true&result=true``.

For each: (a) latency over one keep-alive connection, ``--requests`` sequential requests
(p50/p90/p99/mean); (b) throughput with ``--connections`` concurrent keep-alive
connections for ``--duration`` seconds (requests/s, p50/p99, errors). The load comes from
``bench/load.js`` (Node.js), which does not saturate before the server on two cores.
Results are printed as a table with invoke/baseline ratios, and written as JSON to
``bench/results/invoke_latency.json``. Only loopback addresses are ever targeted.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOAD_JS = HERE / "load.js"
RESULTS = HERE / "results" / "invoke_latency.json"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0

ACTIONS = {
    "nodejs": ("nodejs:default", "function main() { return {}; }"),
    "python": ("python:default", "def main(args):\n    return {}\n"),
}
# The server's own throttles would turn a load test into a 429 test.
UNTHROTTLED = {
    "SQUALL_INVOCATIONS_PER_MINUTE": "100000000",
    "SQUALL_CONCURRENT_INVOCATIONS": "100000",
    "SQUALL_FIRES_PER_MINUTE": "100000000",
}
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "proxy")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
    env.update(extra or {})
    return env


def check_loopback(apihost: str) -> None:
    parts = urlsplit(apihost)
    host = parts.hostname or ""
    if parts.scheme != "http":
        raise SystemExit(f"only http:// on loopback is benchmarked, not {apihost}")
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing to load a non-loopback address: {apihost}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def read_wskprops(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def wait_answering(
    process: subprocess.Popen[bytes],
    apihost: str,
    log_path: Path,
    deadline_s: float = START_DEADLINE_S,
) -> None:
    """Return once the standalone ``process`` serves ``GET /api/v1`` at ``apihost``; exit
    with its log when it dies or does not answer within ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while True:
        if process.poll() is not None:
            raise SystemExit(f"squall standalone exited:\n{log_path.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{apihost}/api/v1", trust_env=False).status_code == 200:
                return
        if time.monotonic() > end:
            raise SystemExit(f"squall standalone did not answer:\n{log_path.read_text()}")
        time.sleep(0.05)


@contextlib.contextmanager
def own_server(
    source: Path = REPO,
    pids: list[int] | None = None,
    launcher: list[str] | None = None,
    env: dict[str, str] | None = None,
    workdir: Path | None = None,
) -> Iterator[tuple[str, str]]:
    """A ``squall standalone`` of our own: (apihost, auth), stopped with SIGTERM at exit.

    ``source`` is the source tree it runs from (``-m`` puts the working directory first
    on ``sys.path``): another checkout, to compare two versions in one run. The server's
    pid is appended to ``pids`` when given (to read its CPU time). ``launcher`` replaces
    ``python -m squall.cli.main`` (a script that runs the CLI inside a probe), ``env``
    adds to the server's environment. ``workdir`` holds its home and ``server.log``
    (kept, to be read after it stopped); a temporary directory when None."""
    with (
        contextlib.nullcontext(str(workdir))
        if workdir is not None
        else tempfile.TemporaryDirectory(prefix="squall-bench-")
    ) as tmp:
        home = Path(tmp) / "home"
        port = free_port()
        apihost = f"http://127.0.0.1:{port}"
        log_path = Path(tmp) / "server.log"
        args = [*(launcher or [sys.executable, "-m", "squall.cli.main"]), "standalone"]
        args += ["--host", "127.0.0.1", "--port", str(port), "--home", str(home)]
        args += ["--keep-warm", "600", "--log-level", "warning"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=clean_env({**UNTHROTTLED, **(env or {})}),
                cwd=source,
            )
        if pids is not None:
            pids.append(process.pid)
        try:
            wait_answering(process, apihost, log_path)
            yield apihost, read_wskprops(home / "wskprops")["AUTH"]
        finally:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-4000:]
                print(
                    f"squall standalone exited early ({process.returncode}):\n{tail}",
                    file=sys.stderr,
                )
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_DEADLINE_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    print("warning: the server ignored SIGTERM and was killed", file=sys.stderr)


def create_actions(apihost: str, auth: str, suffix: str) -> dict[str, str]:
    """Create (or overwrite) the no-op actions and check they answer ``{}``."""
    uuid, _, key = auth.partition(":")
    names = {}
    with httpx.Client(
        base_url=f"{apihost}/api/v1/namespaces/_", auth=(uuid, key), trust_env=False
    ) as c:
        for family, (kind, code) in ACTIONS.items():
            name = f"bench-noop-{family}-{suffix}"
            r = c.put(
                f"/actions/{name}",
                params={"overwrite": "true"},
                json={"exec": {"kind": kind, "code": code}},
            )
            r.raise_for_status()
            r = c.post(f"/actions/{name}", params={"blocking": "true", "result": "true"}, json={})
            if r.status_code != 200 or r.json() != {}:
                raise SystemExit(f"{name} does not work: {r.status_code} {r.text}")
            names[family] = name
    return names


def load(node: str, options: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [node, str(LOAD_JS), json.dumps(options)],
        capture_output=True,
        text=True,
        check=False,
        env=clean_env(),
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"load.js failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def targets(apihost: str, auth: str, names: dict[str, str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {"baseline": {"url": f"{apihost}/api/v1", "method": "GET"}}
    for family, name in names.items():
        found[family] = {
            "url": f"{apihost}/api/v1/namespaces/_/actions/{name}?blocking=true&result=true",
            "method": "POST",
            "auth": auth,
            "body": "{}",
        }
    return found


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def measure(args: argparse.Namespace, apihost: str, auth: str, node: str) -> dict[str, Any]:
    names = create_actions(apihost, auth, f"{os.getpid()}")
    results: dict[str, Any] = {}
    for target, request in targets(apihost, auth, names).items():
        # Warm-up at both concurrencies, so (b) does not measure containers starting.
        load(node, {**request, "connections": 1, "requests": min(200, args.requests)})
        load(node, {**request, "connections": args.connections, "durationMs": 2000})
        latency = load(node, {**request, "connections": 1, "requests": args.requests})
        throughput = load(
            node,
            {**request, "connections": args.connections, "durationMs": int(args.duration * 1000)},
        )
        results[target] = {"latency": latency, "throughput": throughput}
    base = results["baseline"]
    for target in names:
        r = results[target]
        r["ratio_to_baseline"] = {
            "latency_p50": ratio(
                r["latency"]["latencyMs"]["p50"], base["latency"]["latencyMs"]["p50"]
            ),
            "latency_mean": ratio(
                r["latency"]["latencyMs"]["mean"], base["latency"]["latencyMs"]["mean"]
            ),
            "throughput_rps": ratio(r["throughput"]["rps"], base["throughput"]["rps"]),
        }
    return results


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    rows = [
        f"(a) latency, 1 connection, {args.requests} requests (ms)",
        f"{'target':<10}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}{'errors':>8}{'p50 /base':>11}",
    ]
    for target, r in results.items():
        lat = r["latency"]["latencyMs"]
        x = r.get("ratio_to_baseline", {}).get("latency_p50")
        rows.append(
            f"{target:<10}{lat['p50']:>9.3f}{lat['p90']:>9.3f}{lat['p99']:>9.3f}"
            f"{lat['mean']:>9.3f}{r['latency']['errors']:>8}{'' if x is None else x:>11}"
        )
    rows += [
        "",
        f"(b) throughput, {args.connections} connections, {args.duration:g} s",
        f"{'target':<10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'errors':>8}"
        f"{'rps /base':>11}",
    ]
    for target, r in results.items():
        t = r["throughput"]
        x = r.get("ratio_to_baseline", {}).get("throughput_rps")
        rows.append(
            f"{target:<10}{t['rps']:>10.1f}{t['latencyMs']['p50']:>9.2f}{t['latencyMs']['p99']:>9.2f}"
            f"{t['requests']:>10}{t['errors']:>8}{'' if x is None else x:>11}"
        )
    return "\n".join(rows)


def run_measurement(
    args: argparse.Namespace, measure_on: Callable[[str, str], dict[str, Any]]
) -> tuple[dict[str, Any], str]:
    """``measure_on(apihost, auth)`` against ``--apihost``/``--auth`` (loopback only), or
    a server of its own; returns the results and ``"given"`` or ``"started"``."""
    if args.apihost:
        check_loopback(args.apihost)
        return measure_on(args.apihost.rstrip("/"), args.auth), "given"
    with own_server() as (apihost, auth):
        return measure_on(apihost, auth), "started"


def report_head(name: str, started: float, server: str, node: str | None) -> dict[str, Any]:
    """The fields every benchmark's JSON report starts with."""
    machine: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    if node is not None:
        machine["node"] = subprocess.run(
            [node, "--version"], capture_output=True, text=True
        ).stdout.strip()
    return {
        "benchmark": name,
        "started": started,
        "seconds": round(time.time() - started, 1),
        "server": server,
        "commit": git_commit(),
        "machine": machine,
    }


def write_report(name: str, started: float, args: argparse.Namespace, **fields: Any) -> None:
    """Write ``args.output``: a benchmark's JSON report (its head, the parameters but the
    output's path, then ``fields``), and say where."""
    parameters = {k: v for k, v in vars(args).items() if k != "output"}
    report = {**report_head(name, started, "started", None), "parameters": parameters, **fields}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwritten to {args.output}")


def write_turns_report(
    name: str, started: float, args: argparse.Namespace, load: Any, results: Any
) -> None:
    """Write ``args.output``: the JSON report of a benchmark that runs this tree and
    ``args.other`` in turns (its head, the parameters, load average and results)."""
    write_report(name, started, args, load_average=load, results=results)


def git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests for (a)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds for (b)")
    parser.add_argument("--connections", type=int, default=50, help="connections for (b)")
    parser.add_argument("--apihost", help="a running server (default: start one)")
    parser.add_argument("--auth", help="uuid:key for --apihost")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.requests < 1 or args.duration <= 0 or not 1 <= args.connections <= 1000:
        parser.error("--requests ≥ 1, --duration > 0, 1 ≤ --connections ≤ 1000")
    if bool(args.apihost) != bool(args.auth):
        parser.error("--apihost and --auth go together")
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for bench/load.js")

    started = time.time()
    results, server = run_measurement(args, lambda host, auth: measure(args, host, auth, node))
    report = {
        **report_head("invoke_latency", started, server, node),
        "parameters": {
            "requests": args.requests,
            "duration_s": args.duration,
            "connections": args.connections,
        },
        "results": results,
    }
    print(table(results, args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
