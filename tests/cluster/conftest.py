"""A real cluster for the tests in this directory: two controllers and two invokers
(``squall.cli.local_cluster``), the machine's PostgreSQL (through a relay the tests can
cut, in a fresh schema) and a private NATS JetStream server (which the tests restart).

Health timings are shortened (pings every 0.5 s, offline after 4 s) so that a killed
invoker is noticed quickly; actions get the network (loopback only is used) so they can
report each run to the :class:`Witness`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clustersupport import (
    NATS_PORT,
    PG_HOST,
    PG_PORT,
    Cluster,
    NatsServer,
    TcpProxy,
    Witness,
    postgres_schema,
    reachable,
    require,
)

from squall.cli.local_cluster import LocalCluster

ENV = {
    "SQUALL_PING_INTERVAL_S": "0.5",
    "SQUALL_UNRESPONSIVE_AFTER_S": "2",
    "SQUALL_OFFLINE_AFTER_S": "4",
    "SQUALL_SANDBOX_NETWORK": "1",
    "SQUALL_STEM_CELLS": "nodejs:20@256x1",
    "SQUALL_USER_MEMORY_MB": "4096",
    "SQUALL_INVOCATIONS_PER_MINUTE": "100000",
    "SQUALL_CONCURRENT_INVOCATIONS": "10000",
    "SQUALL_FIRES_PER_MINUTE": "100000",
    "SQUALL_LOG_LEVEL": "info",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require("PostgreSQL on 127.0.0.1:5432", reachable(PG_HOST, PG_PORT))
    require("NATS on 127.0.0.1:4222", reachable(PG_HOST, NATS_PORT))
    home: Path = tmp_path_factory.mktemp("cluster")
    nats = NatsServer(home)
    nats.start()
    pg = TcpProxy((PG_HOST, PG_PORT))
    pg.start()
    witness = Witness()
    with postgres_schema() as schema:
        store_url = (
            f"postgresql://postgres@127.0.0.1:{pg.port}/test?options=-csearch_path%3D{schema}"
        )
        local = LocalCluster(
            home,
            store_url=store_url,
            bus_url=f"{nats.url}?ack_wait_s=5",
            controllers=2,
            invokers=2,
            env=ENV,
        )
        try:
            local.start()
            yield Cluster(local, nats, pg, witness)
        finally:
            local.close()
            nats.stop()
            pg.close()
            witness.close()
