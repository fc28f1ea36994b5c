"""The supervisor's back-off schedule and exit descriptions (cli/supervisor.py); its
restarts of real members are tested in tests/cluster/test_cluster_up.py."""

from __future__ import annotations

import signal

from squall.cli.supervisor import BASE_S, CAP_S, backoff_s, describe_exit


def test_the_backoff_doubles_from_base_up_to_the_cap() -> None:
    waits = [backoff_s(attempt) for attempt in range(1, 12)]
    assert waits[:4] == [BASE_S, 2 * BASE_S, 4 * BASE_S, 8 * BASE_S]
    assert max(waits) == CAP_S
    assert waits == sorted(waits)
    assert backoff_s(5000) == CAP_S  # no overflow far along a streak


def test_exits_are_described_by_signal_name_or_code() -> None:
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"
    assert describe_exit(1) == "code 1"
    assert describe_exit(-200) == "signal 200"
