"""A container start that fails on a loaded machine does not fail the activation (issue
#13): it had not started, so the invoker tries again and it runs.

On a loaded machine a runtime may not listen within the start timeout, and a burst of
cold starts fails together; each of those activations used to end as a ``whisk internal
error`` ("Failed to provision resources to run the action."), although none of its code
had run. Here the load is made on purpose and only where it matters: the cgroup that
holds the invokers' sandboxes gets 0.1 % of a CPU until the invoker says a start failed,
then its whole share back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _polling import until_blocking
from _required import require
from clustersupport import Cluster, cpu_starved, sandbox_cpu_files
from netsupport import WITNESS_JS as WITNESS
from test_cluster import create, final_record, invoke, unique

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
