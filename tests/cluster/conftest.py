"""A real cluster for the tests in this directory: two controllers and two invokers
(``squall.cli.local_cluster``) over a private PostgreSQL server and a private NATS
JetStream server, which the tests stop and start again (``running_cluster`` in
clustersupport.py).

Health timings are shortened (pings every 0.5 s, offline after 4 s, what a silent invoker
had started ended as lost after 12 s of silence) so that a killed invoker is noticed
quickly; actions report each run to the :class:`Witness`, which listens on the test's
own outside host (their default egress reaches it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clustersupport import Cluster, running_cluster
from netsupport import OutsideHost


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, outside: OutsideHost) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster"), outside) as cluster:
        yield cluster
