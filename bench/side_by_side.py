"""Squall next to the local emulators and the floor, in one interleaved run (issue 12).

    .venv/bin/python bench/side_by_side.py [--rounds 3] [--cluster] [--out DIR]

Uses ``../shared/bench/peers`` (its ``bench.py`` driver, ``client.py`` latency client and
``wrk``; run its ``setup.sh`` once, e.g. ``bash ../shared/bench/peers/setup.sh
/tmp/peers-cache``) and ``../shared/bench/floor/faas`` (the bare three-process pipeline):

- starts a ``squall standalone`` of its own (temporary home, throttles out of the way,
  isolation and the sandbox network on, as a user runs it), creates a no-op Node.js and a
  no-op Python action and warms them;
- with ``--cluster``, also a local cluster (``squall cluster up``'s class: 2 controllers,
  2 invokers, PostgreSQL at ``--store``, NATS at ``--bus``) with the same two actions;
- starts the floor pipeline;
- runs ``bench.py`` with the peers (serverless-offline fastest settings, functions-framework
  ASGI, lambda-local) and every Squall and the floor as external peers (blocking invokes
  with ``result=true``; the same clients for all), rounds interleaved, cold starts skipped
  (``invoker_bench.py`` B2 measures Squall's);
- prints bench.py's table and writes its results (``summary.json``, ``summary.md``,
  ``raw.jsonl``) to ``--out``, with the 1/5/15-minute load average before and after.

Every server is on loopback; everything started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from squall.cli.local_cluster import LocalCluster
from squall.config import Settings
from squall.store.factory import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))

from invoke_latency import REPO, UNTHROTTLED, free_port

SHARED = REPO.parent / "shared" / "bench"
PEERS = SHARED / "peers"
FLOOR = SHARED / "floor" / "faas"
FLOOR_PORT, FLOOR_RUNTIME_PORT = 19100, 19101
NOOP = {
    "js": ("nodejs:20", "function main() { return { ok: true }; }"),
    "py": ("python:default", "def main(args):\n    return {'ok': True}\n"),
}
QUIET = {**UNTHROTTLED, "SQUALL_LOG_LEVEL": "warning"}


def wait_for(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2, trust_env=False).status_code < 500:
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not answer at {url}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def prepare(api_host: str, auth: tuple[str, str]) -> dict[str, str]:
    """Create and warm the no-op actions; their blocking-invoke URLs by short name."""
    urls = {}
    with httpx.Client(base_url=api_host, auth=auth, timeout=60, trust_env=False) as client:
        for short, (kind, code) in NOOP.items():
            name = f"noop-{short}"
            body = {"exec": {"kind": kind, "code": code}}
            r = client.put(f"/api/v1/namespaces/_/actions/{name}?overwrite=true", json=body)
            r.raise_for_status()
            url = f"/api/v1/namespaces/_/actions/{name}?blocking=true&result=true"
            for _ in range(20):
                client.post(url, json={}).raise_for_status()
            urls[short] = api_host + url
    return urls


@contextlib.contextmanager
def standalone(tmp: Path) -> Iterator[tuple[dict[str, str], tuple[str, str], int]]:
    port = free_port()
    home = tmp / "standalone"
    args = [sys.executable, "-m", "squall.cli.main", "standalone", "--port", str(port)]
    args += ["--home", str(home), "--keep-warm", "3600"]
    with open(tmp / "standalone.log", "wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **QUIET},
            cwd=REPO, start_new_session=True,
        )  # fmt: skip
    try:
        api_host = f"http://127.0.0.1:{port}"
        wait_for(f"{api_host}/api/v1", process, "squall standalone")
        auth_text = next(
            line.split("=", 1)[1]
            for line in (home / "wskprops").read_text().splitlines()
            if line.startswith("AUTH=")
        )
        uid, _, key = auth_text.partition(":")
        yield prepare(api_host, (uid, key)), (uid, key), process.pid
    finally:
        stop(process)


async def _share_guest(settings: Settings, auth: tuple[str, str]) -> None:
    """Give the cluster's guest the standalone's credentials: bench.py sends one
    ``--auth`` to every peer."""
    store = await open_store(settings)
    try:
        await store.auth.create_subject("guest", uuid=auth[0], key=auth[1], rotate=True)
    finally:
        await store.close()


@contextlib.contextmanager
def cluster(
    tmp: Path, store: str, bus: str, auth: tuple[str, str]
) -> Iterator[tuple[dict[str, str], int]]:
    local = LocalCluster(
        tmp / "cluster", store_url=store, bus_url=bus, controllers=2, invokers=2,
        env=QUIET,
    )  # fmt: skip
    local.start()
    try:
        asyncio.run(_share_guest(Settings(store_url=store), auth))
        # The first controller: nginx would spread the load over both.
        urls = prepare(local.controllers[0].url, auth)
        process = local.controllers[0].process
        assert process is not None
        yield urls, process.pid
    finally:
        local.close()


@contextlib.contextmanager
def floor() -> Iterator[str]:
    """The bare pipeline: runtime, invoker, controller (no auth, store, bus or sandbox)."""
    sock = Path(tempfile.mkdtemp(prefix="floor-")) / "inv.sock"
    python = shutil.which("python3") or sys.executable
    started = []
    try:
        for argv in (
            [python, "runtime.py", str(FLOOR_RUNTIME_PORT)],
            [python, "invoker.py", str(sock), str(FLOOR_RUNTIME_PORT)],
        ):
            started.append(subprocess.Popen(argv, cwd=FLOOR, start_new_session=True))
        end = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < end:
            time.sleep(0.05)
        controller = [python, "controller.py", str(FLOOR_PORT), str(sock)]
        started.append(subprocess.Popen(controller, cwd=FLOOR, start_new_session=True))
        url = f"http://127.0.0.1:{FLOOR_PORT}/api/v1/namespaces/_/actions/noop?blocking=true"
        end = time.monotonic() + 10
        while time.monotonic() < end:
            with contextlib.suppress(httpx.TransportError):
                if httpx.post(url, json={}, timeout=2, trust_env=False).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        for process in reversed(started):
            stop(process)


def load() -> list[float]:
    """The 1, 5 and 15-minute load averages."""
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", default="sls-fast,ff-asgi,ll")
    parser.add_argument("--cluster", action="store_true", help="add a 2+2 local cluster")
    parser.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--bus", default="nats://127.0.0.1:4222")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "side_by_side")
    args = parser.parse_args()
    if not (PEERS / "bench.py").exists():
        raise SystemExit(f"{PEERS} is missing: this script runs beside ../shared/bench/peers")
    cache = os.environ.get("PEERS_CACHE", "/tmp/peers-cache")
    if not Path(cache).is_dir():
        raise SystemExit(f"run: bash {PEERS}/setup.sh {cache}")
    before = load()
    with tempfile.TemporaryDirectory(prefix="squall-sbs-") as tmp, contextlib.ExitStack() as stack:
        urls, auth, pid = stack.enter_context(standalone(Path(tmp)))
        specs = [f"squall-js=@{urls['js']}", f"squall-py=@{urls['py']}"]
        pids = [f"squall-js={pid}", f"squall-py={pid}"]
        if args.cluster:
            curls, cpid = stack.enter_context(cluster(Path(tmp), args.store, args.bus, auth))
            specs += [f"cluster-js=@{curls['js']}", f"cluster-py=@{curls['py']}"]
            pids += [f"cluster-js={cpid}", f"cluster-py={cpid}"]
        specs.append(f"floor=@{stack.enter_context(floor())}")
        command = [sys.executable, str(PEERS / "bench.py"), "--peers", args.peers]
        for spec in specs:
            command += ["--peer", spec]
        for spec in pids:
            command += ["--pid-of", spec]
        command += ["--auth", ":".join(auth), "--rounds", str(args.rounds)]
        command += ["--skip", "cold,handler-cold,reload", "--out", str(args.out)]
        subprocess.run(command, cwd=PEERS, env={**os.environ, "PEERS_CACHE": cache}, check=True)
    after = load()  # bench.py printed its table (also in summary.md)
    (args.out / "load.json").write_text(json.dumps({"before": before, "after": after}) + "\n")
    print(f"load average (1/5/15 min) before {before}, after {after}; results in {args.out}")


if __name__ == "__main__":
    main()
