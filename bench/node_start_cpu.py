"""The CPU of starting a Node.js runtime, plain or from a user-land V8 startup snapshot.

    .venv/bin/python bench/node_start_cpu.py [--samples 20] [--kind nodejs:20]

Plain processes (no sandbox: what is measured happens inside ``node``), each with
Squall's ``NODE_OPTIONS`` and a sandbox's minimal environment (``PATH``, ``HOME``,
``LANG``), the variants taking turns, the order reversed every sample:

- ``node -e 0``: Node.js's own start (its bootstrap, from its built-in snapshot), CPU of
  the child (user + system, ``RUSAGE_CHILDREN``) until it exited;
- ``node -e 0, user snapshot``: the same from a user-land snapshot holding nothing
  (``node --snapshot-blob B --build-snapshot``, built here once per run): what replacing
  the built-in snapshot costs by itself;
- ``node -e 0, NODE_EXTRA_CA_CERTS``: the variable this host's shells set (the system's CA
  bundle, read at every start); a sandbox never has it, a benchmark's ``node`` may;
- ``proxy``: ``squall/runtimes/nodejs/proxy.js`` on a Unix socket as a true cold start
  (its ``/init`` of a no-op right after the ready byte, then one ``/run``): CPU (every
  thread's ``schedstat``) until it is ready, and for ``/init`` + ``/run``;
- ``proxy, user snapshot``: the same proxy from a snapshot that holds what its start
  loads and the snapshot builder accepts (``fs``, ``net``, ``path``, ``module``: ``http``
  cannot be in a user snapshot on any installed Node.js), whose main function requires
  the proxy (which then loads ``http``).

Medians and quartiles; the 1-minute load average before and after. Writes
``bench/results/node_start_cpu.json``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from invoke_latency import write_report  # noqa: E402
from node_flags import UnixConnection, cpu_ms, post  # noqa: E402

from squall.runtimes import proxy_path  # noqa: E402
from squall.sandbox.interpreters import detect, load_manifest  # noqa: E402
from squall.sandbox.processbase import NODE_OPTIONS  # noqa: E402

RESULTS = REPO / "bench" / "results" / "node_start_cpu.json"
NOOP = "function main() { return {}; }"
CA_CERTS = "/etc/ssl/certs/ca-certificates.crt"
#: A snapshot's entry: what the proxy loads at start, as far as a user snapshot takes it.
SNAPSHOT_PROXY = """
const fs = require('fs'); const net = require('net'); const path = require('path');
const Module = require('module');
require('v8').startupSnapshot.setDeserializeMainFunction(() => {
  const proxy = process.env.SNAPSHOT_PROXY;
  delete process.env.SNAPSHOT_PROXY;
  Module.createRequire(proxy)(proxy);
});
"""
SNAPSHOT_NOTHING = "require('v8').startupSnapshot.setDeserializeMainFunction(() => {});\n"


def base_env(tmp: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "LANG": "C.UTF-8"}


def build_snapshot(node: str, entry: str, blob: Path) -> None:
    script = blob.with_suffix(".js")
    script.write_text(entry)
    subprocess.run(
        [node, *NODE_OPTIONS, "--snapshot-blob", str(blob), "--build-snapshot", str(script)],
        env=base_env(blob.parent),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # Node warns that `module` is "not yet verified" there
    )


def exit_cpu_ms(argv: list[str], env: dict[str, str]) -> float:
    """CPU (user + system) of one child run to its end, in ms."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return spent * 1e3


def proxy_cpu_ms(argv: list[str], env: dict[str, str], tmp: Path) -> dict[str, float]:
    """One proxy as a true cold start: CPU until ready, and for /init + first /run."""
    path = str(tmp / f"proxy-{time.monotonic_ns()}.sock")
    ready_r, ready_w = os.pipe()
    env = {**env, "__OW_SOCKET": path, "__OW_READY_FD": str(ready_w)}
    proxy = subprocess.Popen(
        argv, env=env, pass_fds=(ready_w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        os.close(ready_w)
        if os.read(ready_r, 1) != b"r":
            raise SystemExit(f"the proxy did not start: {argv}")
        start = cpu_ms(proxy.pid)
        connection = UnixConnection(path)
        init = {"value": {"name": "a", "main": "main", "code": NOOP}}
        assert post(connection, "/init", init) == 200
        assert post(connection, "/run", {"value": {}}) == 200
        first = cpu_ms(proxy.pid) - start
        connection.close()
    finally:
        os.close(ready_r)
        proxy.kill()
        proxy.wait()
    return {"start_cpu_ms": start, "init_run_cpu_ms": first, "all_cpu_ms": start + first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--kind", default="nodejs:20")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    found = detect(load_manifest()).get(args.kind)
    if found is None:
        raise SystemExit(f"no interpreter for {args.kind}")
    node, proxy = found.executable, str(proxy_path("nodejs"))
    started = time.time()
    load_before = os.getloadavg()[0]
    samples: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="node-start-") as name:
        tmp = Path(name)
        env = base_env(tmp)
        build_snapshot(node, SNAPSHOT_NOTHING, tmp / "nothing.blob")
        build_snapshot(node, SNAPSHOT_PROXY, tmp / "proxy.blob")
        snapshot = [node, *NODE_OPTIONS, "--snapshot-blob"]
        variants = {
            "node -e 0": lambda: {"cpu_ms": exit_cpu_ms([node, *NODE_OPTIONS, "-e", "0"], env)},
            "node -e 0, user snapshot": lambda: {
                "cpu_ms": exit_cpu_ms([*snapshot, str(tmp / "nothing.blob")], env)
            },
            "node -e 0, NODE_EXTRA_CA_CERTS": lambda: {
                "cpu_ms": exit_cpu_ms(
                    [node, *NODE_OPTIONS, "-e", "0"], {**env, "NODE_EXTRA_CA_CERTS": CA_CERTS}
                )
            },
            "proxy": lambda: proxy_cpu_ms([node, *NODE_OPTIONS, proxy], env, tmp),
            "proxy, user snapshot": lambda: proxy_cpu_ms(
                [*snapshot, str(tmp / "proxy.blob")], {**env, "SNAPSHOT_PROXY": proxy}, tmp
            ),
        }
        names = list(variants)
        for number in range(args.samples):
            for variant in names if number % 2 == 0 else names[::-1]:
                samples.setdefault(variant, []).append(variants[variant]())
    load_after = os.getloadavg()[0]
    figures: dict[str, dict[str, list[float]]] = {}
    for variant, runs in samples.items():
        figures[variant] = {}
        for key in runs[0]:
            values = sorted(run[key] for run in runs)
            low, median, high = statistics.quantiles(values, n=4)
            figures[variant][key] = [round(median, 2), round(low, 2), round(high, 2)]
            print(f"{variant:<32} {key:<16} median {median:6.1f}  [{low:.1f}-{high:.1f}] ms")
    print(f"load average (1 min): {load_before:.2f} -> {load_after:.2f}")
    write_report(
        "node_start_cpu",
        started,
        args,
        interpreter=node,
        load_average_1min={"before": load_before, "after": load_after},
        medians_and_quartiles=figures,
        samples=samples,
    )


if __name__ == "__main__":
    main()
