"""Crash recovery, repeated: every accepted activation final exactly once after ``kill -9``
(issue #13's scenarios, each run ``--reps`` times).

    .venv/bin/python bench/crash_recovery.py [--reps 5] [--scenarios standalone,invoker,
        controller,cluster-up]

Scenarios (the load and checks are ``tests/crashsupport.py``'s, as in the tests):

- ``standalone``: ``squall standalone`` under mixed load (a burst of non-blocking invokes,
  then three clients sending non-blocking and blocking invokes, a two-step sequence and
  trigger fires whose rule runs the action), SIGKILL at a random moment (0.1 to 1.5 s into
  the load), restart on the same home;
- ``invoker`` and ``controller``: the same load through both controllers of a cluster
  (2 controllers, 2 invokers, a private PostgreSQL and NATS: ``running_cluster``), then
  ``kill -9`` of invoker0 (started again once everything is final, so what it held runs
  on invoker1) or of controller0 (started again at once);
- ``cluster-up``: ``bench/crash_cluster_up.py``: ``squall cluster up`` and ``kill -9`` of
  each member in turn.

The action tells a witness its activation id and its invoker's gateway when it starts.
The witness listens on an "outside host" (a network namespace this run creates, joined
to the host by a veth pair: ``tests/netsupport.py``), since a sandbox may reach nothing
on the host's loopback; nothing leaves the machine.

Per kill it records: accepted ids, final records, ids pending (at the deadline, or in the
store afterwards), ids lost (no record), ids run twice, what the store held queued (never
started) at the kill and how it ended (ran, on which invoker; failed), what it held
started and how that ended (the whisk internal error's message; success). Prints a table
(min/median/max per kill, and totals) and writes ``bench/results/crash_recovery.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
# This checkout's squall first (as its members run it: ``-m`` from here), then the tests'
# helpers and the other benchmarks.
sys.path[:0] = [str(HERE.parent), str(HERE), str(HERE.parent / "tests"),
                str(HERE.parent / "tests" / "cluster")]  # fmt: skip

import crashsupport as crash  # noqa: E402
from _standalone import Standalone, start  # noqa: E402
from clustersupport import Cluster, recovered, running_cluster  # noqa: E402
from crash_cluster_up import cluster_up_runs, print_cluster_up  # noqa: E402
from invoke_latency import report_head  # noqa: E402
from netsupport import OutsideHost, Witness, outside_host  # noqa: E402

from squall.cli.local_cluster import ClusterStartError  # noqa: E402

RESULTS = HERE / "results" / "crash_recovery.json"
SCENARIOS = ("standalone", "invoker", "controller", "cluster-up")
# Four runs at a time per invoker (128 MB each in 512 MB), each ~300 ms: a burst queues.
ENV = {"SQUALL_USER_MEMORY_MB": "512", "SQUALL_STEM_CELLS": ""}
SLEEP_MS = 300
BURST = 16
CLIENTS = 3
KILL_WINDOW_S = (0.1, 1.5)
DEADLINE_S = 90.0
START_TRIES = 3
GATEWAY = re.compile(r"sandbox network: \S+, gateway (\S+),")


def gateways(logs: dict[str, Path]) -> dict[str, str]:
    """Gateway address → the name of the member whose log says it holds it."""
    names: dict[str, str] = {}
    for name, path in logs.items():
        with contextlib.suppress(OSError):
            for found in GATEWAY.findall(path.read_text(errors="replace")):
                names[found] = name
    return names


def loaded(
    clients: list[httpx.Client],
    accepted: crash.Accepted,
    rng: random.Random,
    kill: Callable[[], None],
) -> float:
    """A burst through the first client, mixed load through all, ``kill`` at a random
    moment; returns how long the load ran before it."""
    crash.burst(clients[0], accepted, BURST)
    stop = threading.Event()
    threads = [
        threading.Thread(target=crash.mixed_load, args=(c, accepted, stop, rng.random()))
        for c in clients
    ]
    for thread in threads:
        thread.start()
    # Not a wait for a result: the moment of the kill is what varies.
    after = rng.uniform(*KILL_WINDOW_S)
    time.sleep(after)
    kill()
    stop.set()
    for thread in threads:
        thread.join(60)
    return after


def counted(
    accepted: crash.Accepted,
    finals: crash.Finals,
    at_kill: crash.Snapshot,
    after: crash.Snapshot,
    witness: Witness,
    names: dict[str, str],
) -> dict[str, Any]:
    """One kill's outcome as JSON, with the evidence (each problem id's record as the API
    shows it) when it broke a promise."""
    result = crash.outcome(
        accepted.all(), finals, witness.calls, witness.via, names, at_kill, after
    )
    problems = result.problems()
    evidence: dict[str, Any] = {}
    if problems:
        bad = set(result.pending) | set(result.lost) | set(result.twice)
        bad |= set(result.queued_failed)
        shown = {**finals.last, **finals.records}
        evidence = {i: shown.get(i, "no record") for i in sorted(bad)}
        print("  PROBLEM:", "; ".join(problems), file=sys.stderr)
    return {**asdict(result), "problems": problems, "evidence": evidence}


def standalone_kill(
    server: Standalone, witness: Witness, rep: int, rng: random.Random
) -> tuple[Standalone, dict[str, Any]]:
    """One kill of ``server`` under mixed load and its restart: the new server, and what
    the kill came to."""
    home, accepted = server.home, crash.Accepted()
    # Left unfinished by an earlier kill: counted there, not again.
    earlier = crash.unfinished("", str(home))
    clients = [server.client(timeout=10) for _ in range(CLIENTS)]

    def kill() -> None:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)

    kill_after = loaded(clients, accepted, rng, kill)
    for c in clients:
        c.close()
    at_kill = crash.unfinished("", str(home)) - earlier
    began = time.monotonic()
    server = start(home, keep_warm_s=60, env=ENV)
    restart_s = time.monotonic() - began
    with server.client() as client:
        finals = crash.every_final(client, accepted, at_kill.queued | at_kill.started, DEADLINE_S)
    names = {crash.gateway(g): "standalone" for seen in witness.via.values() for g in seen}
    after = crash.unfinished("", str(home)) - earlier
    run = counted(accepted, finals, at_kill, after, witness, names)
    run.update(rep=rep, kill_after_s=round(kill_after, 2), restart_s=round(restart_s, 2))
    return server, run


def standalone_runs(
    reps: int, witness: Witness, tmp: Path, rng: random.Random
) -> list[dict[str, Any]]:
    server = start(tmp / "standalone", keep_warm_s=60, env=ENV)
    runs: list[dict[str, Any]] = []
    try:
        with server.client() as client:
            crash.create_entities(client, witness.url, SLEEP_MS)
        for rep in range(reps):
            server, run = standalone_kill(server, witness, rep, rng)
            runs.append(run)
            _progress("standalone", rep, run)
    finally:
        if server.running():
            server.stop()
    return runs


def _clients(cluster: Cluster, per_controller: int, timeout: float = 10) -> list[httpx.Client]:
    urls = [f"{m.url}/api/v1" for _ in range(per_controller) for m in cluster.local.controllers]
    return [
        httpx.Client(base_url=url, auth=cluster.auth, timeout=timeout, trust_env=False)
        for url in urls
    ]


def cluster_kill_run(cluster: Cluster, victim: str, rep: int, rng: random.Random) -> dict[str, Any]:
    """One kill of ``victim`` (invoker0 or controller0) under mixed load; the survivor
    of its kind carries on, and ``victim`` is started again (a controller at once, an
    invoker once everything is final, so that what it held must run elsewhere)."""
    local, home = cluster.local, cluster.local.home
    accepted = crash.Accepted()
    # Left unfinished by an earlier kill: counted there, not again.
    earlier = crash.unfinished(cluster.pg.url, str(home))
    clients = _clients(cluster, 2)
    before = recovered(cluster)
    kill_after = loaded(clients, accepted, rng, lambda: local.kill(victim))
    for c in clients:
        c.close()
    at_kill = crash.unfinished(cluster.pg.url, str(home)) - earlier
    restart_s = None
    if victim.startswith("controller"):
        began = time.monotonic()
        local.spawn(victim)
        local.wait_ready()
        restart_s = round(time.monotonic() - began, 2)
    survivor = next(m for m in local.controllers if m.name != victim)
    logs = {m.name: m.log_path for m in local.invokers}
    with httpx.Client(
        base_url=f"{survivor.url}/api/v1", auth=cluster.auth, timeout=30, trust_env=False
    ) as client:
        finals = crash.every_final(client, accepted, at_kill.queued | at_kill.started, DEADLINE_S)
    after = crash.unfinished(cluster.pg.url, str(home)) - earlier
    run = counted(accepted, finals, at_kill, after, cluster.witness, gateways(logs))
    if victim.startswith("invoker"):
        counts = recovered(cluster)
        run["recovered"] = {k: counts[k] - before[k] for k in counts}
        local.spawn(victim)
        local.wait_ready()
    run.update(rep=rep, kill_after_s=round(kill_after, 2), restart_s=restart_s)
    return run


def started_cluster(
    tmp: Path, outside: OutsideHost, failures: list[str]
) -> tuple[contextlib.ExitStack, Cluster]:
    """A running cluster (and the stack that stops it). A start that fails is retried,
    up to ``START_TRIES`` in all; each failure's message is kept in ``failures``: it is
    a finding of its own, but not what this benchmark measures."""
    for attempt in range(START_TRIES):
        stack = contextlib.ExitStack()
        try:
            cluster = stack.enter_context(running_cluster(tmp / f"cluster{attempt}", outside, ENV))
        except ClusterStartError as error:
            stack.close()
            failures.append(str(error))
            print(f"  cluster start failed: {error}", file=sys.stderr)
            continue
        return stack, cluster
    raise RuntimeError(f"the cluster did not start in {START_TRIES} tries: {failures}")


def cluster_runs(
    reps: int, outside: OutsideHost, tmp: Path, rng: random.Random, which: list[str]
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in which}
    failures: list[str] = []
    stack, cluster = started_cluster(tmp, outside, failures)
    with stack:
        with _clients(cluster, 1, timeout=60)[0] as client:
            crash.create_entities(client, cluster.witness.url, SLEEP_MS)
        for rep in range(reps):  # interleaved, so that load changes hit both alike
            for name in which:
                run = cluster_kill_run(cluster, f"{name}0", rep, rng)
                runs[name].append(run)
                _progress(name, rep, run)
        twice = {k: n for k, n in cluster.witness.calls.items() if n > 1}
        if twice:
            print(f"  PROBLEM: ran twice over the whole cluster run: {twice}", file=sys.stderr)
    return runs, failures


def _progress(name: str, rep: int, run: dict[str, Any]) -> None:
    print(f"{name} #{rep + 1}: accepted {run['accepted']}, queued {run['queued']} "
          f"(ran {run['queued_ran']}), started {run['started']} "
          f"(error {len(run['started_error'])}), problems {run['problems'] or 'none'}",
          flush=True)  # fmt: skip


#: (column, how to count it from a run)
COUNTS: list[tuple[str, Callable[[dict[str, Any]], float | None]]] = [
    ("accepted", lambda r: r["accepted"]),
    ("final", lambda r: r["final"]),
    ("pending", lambda r: len(r["pending"])),
    ("lost", lambda r: len(r["lost"])),
    ("ran twice", lambda r: len(r["twice"])),
    ("queued@kill", lambda r: r["queued"]),
    ("queued ran", lambda r: sum(r["queued_ran"].values())),
    ("queued failed", lambda r: len(r["queued_failed"])),
    ("started@kill", lambda r: r["started"]),
    ("started→error", lambda r: len(r["started_error"])),
    ("started→ok", lambda r: r["started_ok"]),
    # The controllers' squall_controller_recovered_activations_total (an invoker's kill)
    ("moved", lambda r: r["recovered"]["moved"] if "recovered" in r else None),
    ("recorded lost", lambda r: r["recovered"]["lost"] if "recovered" in r else None),
]


def print_table(scenarios: dict[str, list[dict[str, Any]]]) -> None:
    print(f"\n{'scenario':<12}{'count':<15}{'min':>6}{'median':>8}{'max':>6}{'total':>7}")
    for name, runs in scenarios.items():
        if not runs or name == "cluster-up":
            continue
        for column, count in COUNTS:
            values = [v for v in map(count, runs) if v is not None]
            if not values:
                continue
            print(f"{name:<12}{column:<15}{min(values):>6g}{statistics.median(values):>8g}"
                  f"{max(values):>6g}{sum(values):>7g}")  # fmt: skip
        ran: dict[str, int] = {}
        messages: dict[str, int] = {}
        for r in runs:
            for who, n in r["queued_ran"].items():
                ran[who] = ran.get(who, 0) + n
            for message in r["started_error"].values():
                messages[message] = messages.get(message, 0) + 1
        print(f"{name:<12}queued ran on: {ran}")
        for message, n in messages.items():
            print(f"{name:<12}error x{n}: {message}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON report")
    args = parser.parse_args()
    output: Path = args.output
    which = [s for s in args.scenarios.split(",") if s]
    unknown = set(which) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    rng = random.Random(args.seed)
    started = time.time()
    load_before = Path("/proc/loadavg").read_text().strip()
    scenarios: dict[str, list[dict[str, Any]]] = {}
    start_failures: list[str] = []

    def save(load_after: str | None) -> None:
        """The report so far (written after each scenario, so a failure keeps the rest)."""
        report = {
            **report_head("crash_recovery", started, "squall standalone / cluster", None),
            "reps": args.reps,
            "complete": load_after is not None,
            "load_before": load_before,
            "load_after": load_after,
            "scenarios": scenarios,
            "cluster_start_failures": start_failures,
        }
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, default=sorted))

    with tempfile.TemporaryDirectory(prefix="crash-recovery-") as tmp_name:
        tmp = Path(tmp_name)
        with outside_host(tmp) as outside:
            if "standalone" in which:
                witness = Witness(outside)
                try:
                    scenarios["standalone"] = standalone_runs(args.reps, witness, tmp, rng)
                finally:
                    witness.close()
                save(None)
            in_cluster = [s for s in ("invoker", "controller") if s in which]
            if in_cluster:
                runs, start_failures = cluster_runs(args.reps, outside, tmp, rng, in_cluster)
                scenarios.update(runs)
                save(None)
        if "cluster-up" in which:
            scenarios["cluster-up"] = cluster_up_runs(args.reps, tmp, start_failures)
    load_after = Path("/proc/loadavg").read_text().strip()
    print_table(scenarios)
    if "cluster-up" in scenarios:
        print_cluster_up(scenarios["cluster-up"])
    for failure in start_failures:
        print(f"\ncluster start failed (retried): {failure}")
    print(f"\nload average before: {load_before}; after: {load_after}")
    save(load_after)
    print(f"written to {output}")


if __name__ == "__main__":
    main()
