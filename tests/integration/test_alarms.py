"""The built-in alarms through a real ``squall standalone``: an ``alarms/interval`` trigger
with a rule fires its action on schedule, and keeps doing so after a restart.

The server runs with ``SQUALL_ALARMS_MIN_INTERVAL_S=0.5`` so that an interval of 1.2 s
(``minutes: 0.02``) is accepted: the operator setting for short test schedules.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _standalone import Standalone, poll, start

pytestmark = pytest.mark.integration

INTERVAL_MS = 1200
ECHO_PY = "def main(args):\n    return args\n"
FIRES_DEADLINE_S = 30.0


@pytest.fixture
def server_on(tmp_path: Path) -> Iterator[Callable[[], Standalone]]:
    """Start servers (one after another) on the same home, with short alarms allowed;
    each must have stopped cleanly by the end."""
    servers: list[Standalone] = []

    def _start() -> Standalone:
        server = start(
            tmp_path / "home", keep_warm_s=60, env={"SQUALL_ALARMS_MIN_INTERVAL_S": "0.5"}
        )
        servers.append(server)
        return server

    yield _start
    for server in servers:
        if server.running():
            server.stop_cleanly()


def trigger_records(client: httpx.Client, trigger: str) -> list[dict[str, Any]]:
    r = client.get(
        "/namespaces/_/activations", params={"name": trigger, "docs": "true", "limit": "200"}
    )
    assert r.status_code == 200, r.text
    records: list[dict[str, Any]] = r.json()
    return sorted(records, key=lambda x: x["start"])


def fires_at_least(client: httpx.Client, trigger: str, n: int) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        records = trigger_records(client, trigger)
        return records if len(records) >= n else None

    return poll(probe, FIRES_DEADLINE_S, interval_s=0.1, what=f"{n} fires of {trigger}")


def action_result(client: httpx.Client, trigger_record: dict[str, Any]) -> dict[str, Any]:
    """The result of the action the (one) rule ran for this fire, once it is final."""
    [line] = trigger_record["logs"]
    entry = json.loads(line)
    assert entry["statusCode"] == 0, entry

    def probe() -> dict[str, Any] | None:
        r = client.get(f"/namespaces/_/activations/{entry['activationId']}")
        assert r.status_code == 200, r.text
        record: dict[str, Any] = r.json()
        return None if record["response"]["status"] == "pending" else record

    record = poll(probe, FIRES_DEADLINE_S, interval_s=0.05, what="the rule's action")
    assert record["cause"] == trigger_record["activationId"]
    result: dict[str, Any] = record["response"]["result"]
    return result


def test_interval_alarm_fires_on_schedule_across_a_restart(
    server_on: Callable[[], Standalone],
) -> None:
    # Given a server, a Python action, a trigger created with the interval feed, a rule
    first = server_on()
    with first.client() as client:
        r = client.put(
            "/namespaces/_/actions/echo",
            json={"exec": {"kind": "python:default", "code": ECHO_PY}},
        )
        assert r.status_code == 200, r.text
        feed = [{"key": "feed", "value": "/whisk.system/alarms/interval"}]
        assert client.put("/namespaces/_/triggers/beat", json={"annotations": feed}).is_success
        rule = {"trigger": "/_/beat", "action": "/_/echo"}
        assert client.put("/namespaces/_/rules/on-beat", json=rule).is_success
        # When the feed is created, as wsk and the npm client do: a blocking invoke
        started = time.time_ns() // 1_000_000 + 500
        r = client.post(
            "/namespaces/whisk.system/actions/alarms/interval",
            params={"blocking": "true"},
            json={
                "lifecycleEvent": "CREATE",
                "triggerName": "/guest/beat",
                "authKey": first.auth,
                "minutes": INTERVAL_MS / 60_000,
                "startDate": started,
                "trigger_payload": {"beat": True},
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["response"]["result"] == {"status": "success"}
        # Then the trigger fires on schedule and the rule runs the action with the payload
        before = fires_at_least(client, "beat", 2)
        assert action_result(client, before[0]) == {"beat": True}
    # When the server restarts on the same home
    first.stop_cleanly()
    second = server_on()
    with second.client() as client:
        counted = len(trigger_records(client, "beat"))
        assert counted >= 2
        # Then it keeps firing, on the new server
        after = fires_at_least(client, "beat", counted + 2)
        assert action_result(client, after[-1]) == {"beat": True}
        # And never more than once a tick: no more fires than ticks since the start
        # (plus the one that may be due as we count)
        elapsed = time.time_ns() // 1_000_000 - started
        assert len(trigger_records(client, "beat")) <= elapsed // INTERVAL_MS + 2
        # When the feed is deleted / Then it is gone (the trigger stays)
        feed_call = {"triggerName": "/guest/beat", "authKey": second.auth}
        r = client.post(
            "/namespaces/whisk.system/actions/alarms/interval",
            params={"blocking": "true"},
            json={"lifecycleEvent": "DELETE", **feed_call},
        )
        assert r.json()["response"]["result"] == {"status": "success"}, r.text
        r = client.post(
            "/namespaces/whisk.system/actions/alarms/interval",
            params={"blocking": "true"},
            json={"lifecycleEvent": "READ", **feed_call},
        )
        assert r.json()["response"]["result"] == {
            "error": "could not find trigger /guest/beat in the database"
        }
        assert client.get("/namespaces/_/triggers/beat").status_code == 200
