"""``squall cluster up`` surviving ``kill -9`` of each member, for ``bench/crash_recovery.py``.

``squall cluster up --controllers 2 --invokers 2`` on the machine's PostgreSQL (a fresh
schema of database ``test``) and NATS (a stream prefix of its own), with the cluster
tests' health timings (``cluster_up`` in tests/cluster/clustersupport.py). Each
repetition kills every member in turn with SIGKILL (the pid its ``/ping`` gives) and
measures, from the kill:

- ``ping_s``: until the member's port answers ``/ping`` with a new start token (the
  supervisor started it again, and it serves);
- ``invoke_s``: until a blocking invoke succeeds — through the killed controller itself,
  or through controller0 when an invoker was killed.

Then it waits until controller0 lists both invokers up. The supervisor doubles its wait
before a restart for a member that dies again within 30 s of its start, so each member
is killed only once it has been up 31 s: every kill gets the first wait (0.5 s), which
the output line ``restart N in X s`` confirms (recorded as ``restart_wait_s``).
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from _standalone import free_port
from clustersupport import cluster_up, shared_services

from squall.cli.local_cluster import port_free

MEMBER = re.compile(r"^(\w+): (http://\S+) \(pid \d+\)$", re.M)
RESTART_WAIT = re.compile(
    r"(\w+) \(pid \d+\) exited with signal SIGKILL .*; restart \d+ in (\S+) s"
)
UP_BEFORE_KILL_S = 31.0
DEADLINE_S = 120.0
START_TRIES = 3
NOOP = {"exec": {"kind": "python:3.11", "code": "def main(a):\n  return {'ok': 1}"}}

T = TypeVar("T")


def _until(probe: Callable[[], T | None], what: str, deadline_s: float = DEADLINE_S) -> T:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"gave up after {deadline_s} s waiting for {what}")


def _pong(url: str) -> dict[str, Any] | None:
    try:
        pong: dict[str, Any] = httpx.get(f"{url}/ping", timeout=2, trust_env=False).json()
    except (httpx.HTTPError, ValueError):
        return None
    return pong


def _invokes(client: httpx.Client) -> bool | None:
    try:
        r = client.post("/api/v1/namespaces/_/actions/up?blocking=true&result=true")
    except httpx.TransportError:
        return None
    return True if r.status_code == 200 and r.json() == {"ok": 1} else None


def _kill(
    name: str, url: str, client: httpx.Client, out: Path, controller0: httpx.Client
) -> dict[str, Any]:
    """Kills member ``name`` (listening at ``url``) and times its return; ``client``
    invokes through the controller that must serve again."""
    old = _until(lambda: _pong(url), f"{name} to answer before the kill")
    began = time.monotonic()
    os.kill(int(old["pid"]), signal.SIGKILL)

    def new_token() -> bool | None:
        pong = _pong(url)
        return True if pong is not None and pong.get("start") != old["start"] else None

    def both_up() -> bool | None:
        states = controller0.get("/invokers").json()
        return True if states == {"invoker0": "up", "invoker1": "up"} else None

    _until(new_token, f"{name} to answer with a new start token")
    ping_s = time.monotonic() - began
    _until(lambda: _invokes(client), f"an invoke after {name} was killed")
    invoke_s = time.monotonic() - began
    _until(both_up, "both invokers up")
    waits = [w for member, w in RESTART_WAIT.findall(out.read_text()) if member == name]
    return {
        "member": name,
        "ping_s": round(ping_s, 2),
        "invoke_s": round(invoke_s, 2),
        "restart_wait_s": float(waits[-1]) if waits else None,
    }


def _ports() -> int:
    """A port P with P + 1 free too (cluster up listens on both: one per controller)."""
    for _ in range(100):
        port = free_port()
        if port < 65535 and port_free(port + 1):
            return port
    raise RuntimeError("no two free ports in a row on 127.0.0.1")


def _launch(
    tmp: Path, out: Path, store: str, bus: str, failures: list[str]
) -> subprocess.Popen[bytes]:
    """``cluster up``, ready. Another process may take a port between the choice and
    the start: such a start is retried (up to ``START_TRIES`` in all), its message kept
    in ``failures``."""
    for _ in range(START_TRIES):
        process = cluster_up(tmp / "up-home", out, store, bus, "--controllers", "2",
                             "--invokers", "2", "--port", str(_ports()))  # fmt: skip

        def ready(p: subprocess.Popen[bytes] = process) -> bool | None:
            if p.poll() is not None:
                return False
            return "ready" in out.read_text().splitlines() or None

        if _until(ready, "cluster up to be ready"):
            return process
        failures.append(f"cluster up: {out.read_text()[-2000:]}")
        print(f"  {failures[-1]}", file=sys.stderr)
        if "cannot listen" not in out.read_text():
            break
    raise RuntimeError(f"cluster up did not start: {failures[-1]}")


def cluster_up_runs(reps: int, tmp: Path, failures: list[str]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    out = tmp / "up.out"
    with shared_services() as (store, bus):
        process = _launch(tmp, out, store, bus, failures)
        try:
            text = out.read_text()
            assert process.poll() is None and "ready" in text.splitlines(), text
            members = dict(MEMBER.findall(text))
            auth = next(line[5:] for line in text.splitlines() if line.startswith("AUTH="))
            user, _, password = auth.partition(":")
            clients = {
                name: httpx.Client(base_url=url, auth=(user, password), timeout=70, trust_env=False)
                for name, url in members.items() if name.startswith("controller")
            }  # fmt: skip
            c0 = clients["controller0"]
            assert c0.put("/api/v1/namespaces/_/actions/up", json=NOOP).status_code == 200
            _until(lambda: _invokes(c0), "the first invoke")
            up_since = dict.fromkeys(members, time.monotonic())
            for rep in range(reps):
                for name, url in members.items():
                    # Not a check: the supervisor's first restart wait applies after 30 s up.
                    time.sleep(max(0.0, up_since[name] + UP_BEFORE_KILL_S - time.monotonic()))
                    run = _kill(name, url, clients.get(name, c0), out, c0)
                    up_since[name] = time.monotonic()
                    run["rep"] = rep
                    runs.append(run)
                    print(f"cluster-up #{rep + 1}: {run}", flush=True)
            for client in clients.values():
                client.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    return runs


def print_cluster_up(runs: list[dict[str, Any]]) -> None:
    print(f"\n{'cluster up: kill -9 of':<24}{'seconds until':<20}{'min':>6}{'median':>8}{'max':>6}")
    for member in sorted({r["member"] for r in runs}):
        mine = [r for r in runs if r["member"] == member]
        for field, label in (("ping_s", "/ping, new token"), ("invoke_s", "an invoke succeeds")):
            values = [r[field] for r in mine]
            print(f"{member:<24}{label:<20}{min(values):>6.2f}{statistics.median(values):>8.2f}"
                  f"{max(values):>6.2f}")  # fmt: skip
