"""A real cluster for the tests in this directory: two controllers and two invokers
(``squall.cli.local_cluster``) over a private PostgreSQL server and a private NATS
JetStream server, which the tests stop and start again.

Health timings are shortened (pings every 0.5 s, offline after 4 s, what a silent invoker
had started ended as lost after 12 s of silence) so that a killed invoker is noticed
quickly; actions report each run to the :class:`Witness`, which listens on the test's
own outside host (their default egress reaches it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clustersupport import (
    Cluster,
    NatsServer,
    PrivatePostgres,
    require,
)
from netsupport import OutsideHost, Witness

from squall.cli.local_cluster import LocalCluster

ENV = {
    "SQUALL_PING_INTERVAL_S": "0.5",
    "SQUALL_UNRESPONSIVE_AFTER_S": "2",
    "SQUALL_OFFLINE_AFTER_S": "4",
    "SQUALL_LOST_AFTER_S": "12",
    "SQUALL_STEM_CELLS": "nodejs:20@256x1",
    "SQUALL_USER_MEMORY_MB": "4096",
    "SQUALL_INVOCATIONS_PER_MINUTE": "100000",
    "SQUALL_CONCURRENT_INVOCATIONS": "10000",
    "SQUALL_FIRES_PER_MINUTE": "100000",
    "SQUALL_LOG_LEVEL": "info",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, outside: OutsideHost) -> Iterator[Cluster]:
    require("PostgreSQL's server binaries (Debian package postgresql)", PrivatePostgres.available())
    require("nats-server (Debian package nats-server)", NatsServer.available())
    home: Path = tmp_path_factory.mktemp("cluster")
    nats = NatsServer(home)
    pg = PrivatePostgres()
    witness = Witness(outside)
    try:
        nats.start()
        pg.init()
        pg.start()
        local = LocalCluster(
            home,
            store_url=pg.url,
            bus_url=f"{nats.url}?ack_wait_s=5",
            controllers=2,
            invokers=2,
            # Sandboxes resolve names with the outside host's resolver: no query leaves.
            env={**ENV, "SQUALL_SANDBOX_DNS": outside.resolver or ""},
        )
        try:
            local.start()
            yield Cluster(local, nats, pg, witness, outside)
        finally:
            local.close()
    finally:
        nats.stop()
        pg.close()
        witness.close()
