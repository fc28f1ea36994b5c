"""An invoker that is slow is not dead (issue #13): what it was given runs, and every
record is the action's result — none a ``whisk internal error``.

- A container start that fails on a loaded machine: a runtime may not listen within the
  start timeout, and a burst of cold starts fails together; each of those activations
  used to end as "Failed to provision resources to run the action.", although none of
  its code had run. The load is made on purpose and only where it matters: the cgroup
  that holds the invokers' sandboxes gets 0.1 % of a CPU until the invoker says a start
  failed, then its whole share back.
- Pings that come later than the offline limit (a loaded or paused machine): the
  controllers call the invoker offline, but it is alive and finishes what it started,
  and what waited on its queue runs once an invoker is healthy again. Its process is
  frozen (SIGSTOP) until both controllers call it offline, then thawed.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
from pathlib import Path

import httpx
import pytest
from _polling import until_blocking
from _required import require
from clustersupport import Cluster, cpu_starved, recovered, sandbox_cpu_files
from netsupport import WITNESS_JS as WITNESS
from test_cluster import create, final_record, invoke, recovery_log, unique

pytestmark = pytest.mark.cluster

# What the invoker logs when it could not get a container for an action: a start failed.
NO_CONTAINER = "no container for /guest/{name}"


def logged_since(path: Path, offset: int) -> str:
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def test_an_activation_whose_container_did_not_start_in_time_runs_once_a_start_succeeds(
    cluster: Cluster,
) -> None:
    # Given invokers whose sandboxes get 0.1 % of a CPU: no runtime starts in time
    invokers = cluster.local.invokers
    quotas = [
        f for m in invokers if m.process is not None for f in sandbox_cpu_files(m.process.pid)
    ]
    require("a cgroup CPU controller over the invokers' sandboxes", bool(quotas))
    offsets = {m.name: m.log_path.stat().st_size for m in invokers}
    name = unique("starved")

    def start_failed() -> bool:
        said = NO_CONTAINER.format(name=name)
        return any(said in logged_since(m.log_path, offsets[m.name]) for m in invokers)

    with cluster.client(0) as c0:
        create(c0, name, WITNESS, witness=cluster.witness.url)
        with cpu_starved(quotas):
            # When an activation is accepted and its container's start fails
            r = invoke(c0, name, blocking=False)
            assert r.status_code == 202, r.text
            activation_id = r.json()["activationId"]
            assert until_blocking(start_failed, 120), cluster.logs()
        # Then, the CPU back, it runs: its record is the action's result, not an error
        record = final_record(c0, activation_id, 90)
    assert record["response"]["status"] == "success", (record["response"], cluster.logs())
    assert record["response"]["result"] == {"id": activation_id}
    # And it ran once
    assert cluster.witness.calls[activation_id] == 1


def started(cluster: Cluster, seen: set[str]) -> set[str]:
    """The activations that told the witness they run, but those of ``seen``."""
    while True:
        try:
            return set(cluster.witness.calls) - seen
        except RuntimeError:  # its server thread added one while we read
            continue


def offline_everywhere(cluster: Cluster, names: list[str]) -> bool:
    """Whether every controller lists every invoker of ``names`` as down (offline)."""
    for member in cluster.local.controllers:
        try:
            states = httpx.get(f"{member.url}/invokers", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        if any(states.get(name) != "down" for name in names):
            return False
    return True


def test_invokers_paused_past_the_offline_limit_keep_what_they_started_and_complete_it(
    cluster: Cluster,
) -> None:
    # Given blocking activations of a 6 s action running, through both controllers
    name, quick = unique("paused"), unique("queued")
    with cluster.client(0) as c0:
        create(c0, name, WITNESS, witness=cluster.witness.url, sleepMs=6000)
        create(c0, quick, WITNESS, witness=cluster.witness.url)
    before = recovered(cluster)
    invokers = [m for m in cluster.local.invokers if m.process is not None]

    def blocking(i: int) -> httpx.Response:
        with cluster.client(i % 2) as client:
            return invoke(client, name, blocking=True)

    queued: list[str] = []
    pool = concurrent.futures.ThreadPoolExecutor(4)
    try:
        seen = started(cluster, set())
        futures = [pool.submit(blocking, i) for i in range(4)]
        # (each run tells the witness as it starts)
        assert until_blocking(lambda: len(started(cluster, seen)) >= 4, 90), cluster.logs()
        paused: list[int] = []
        try:
            # When every invoker's process is frozen until the controllers call it offline
            # (its runtimes go on: their answers wait for it)
            for member in invokers:
                assert member.process is not None
                os.kill(member.process.pid, signal.SIGSTOP)
                paused.append(member.process.pid)
            # And activations accepted meanwhile wait on their queues (those invoked
            # once the controllers stopped sending work there are refused: 503)
            for i in range(4):
                with cluster.client(i % 2) as client:
                    r = invoke(client, quick, blocking=False)
                assert r.status_code in (202, 503), r.text
                if r.status_code == 202:
                    queued.append(r.json()["activationId"])
            names = [m.name for m in invokers]
            assert until_blocking(lambda: offline_everywhere(cluster, names), 60), recovery_log(
                cluster
            )
        finally:
            # And then thawed: the same processes ping again
            for pid in paused:
                os.kill(pid, signal.SIGCONT)
        # Then every caller gets the action's result, not a whisk internal error
        answers = [f.result(timeout=120) for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    bodies = [r.json() for r in answers]
    assert [r.status_code for r in answers] == [200] * 4, (bodies, recovery_log(cluster))
    ids = [b["activationId"] for b in bodies]
    assert all(b["response"]["result"] == {"id": b["activationId"]} for b in bodies), bodies
    # And so do their records, each run once, and those of the queued ones: moved off
    # the queues, they waited for an invoker to be healthy again, then ran
    with cluster.client(1) as c1:
        records = [final_record(c1, i, 90) for i in ids + queued]
    assert [r["response"]["status"] for r in records] == ["success"] * len(records), (
        [r["response"] for r in records],
        recovery_log(cluster),
    )
    assert [cluster.witness.calls[i] for i in ids + queued] == [1] * len(records)
    # And no controller recorded anything as lost
    assert recovered(cluster)["lost"] == before["lost"], recovery_log(cluster)
    cluster.local.wait_ready()
