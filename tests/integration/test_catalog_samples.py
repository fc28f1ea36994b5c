"""The ``/whisk.system/samples`` actions that call the platform — ``countdown``,
``helloPromises`` and ``invoke`` — through a real ``squall standalone``: they reach the
API at ``__OW_API_HOST`` from their sandbox with the ``openwhisk`` npm package and the
invoking namespace's action key, and give the parameters and results of OpenWhisk's
catalog (``apache/openwhisk-catalog``, ``packages/samples``). The in-process API tests
cannot run them: their server listens on no port an action could reach.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from _standalone import Standalone, poll

pytestmark = pytest.mark.integration

SAMPLES = "/namespaces/whisk.system/actions/samples"


def invoke(client: httpx.Client, action: str, params: dict[str, Any]) -> dict[str, Any]:
    """The record of a blocking invoke of ``/whisk.system/samples/<action>``, successful."""
    r = client.post(f"{SAMPLES}/{action}", params={"blocking": "true"}, json=params)
    assert r.status_code == 200, r.text
    record: dict[str, Any] = r.json()
    assert record["response"]["status"] == "success", record
    return record


def finished(client: httpx.Client, activation_id: str) -> dict[str, Any]:
    """The record of an activation once it has ended (non-blocking ones are polled)."""

    def probe() -> dict[str, Any] | None:
        got = client.get(f"/namespaces/_/activations/{activation_id}")
        if got.status_code != 200 or got.json()["response"]["status"] == "pending":
            return None
        record: dict[str, Any] = got.json()
        return record

    return poll(probe, 60, 0.1, f"activation {activation_id}")


def path_of(record: dict[str, Any]) -> Any:
    return next(kv["value"] for kv in record["annotations"] if kv["key"] == "path")


def test_countdown_invokes_itself_down_to_zero(
    standalone: Standalone, client: httpx.Client
) -> None:
    # When countdown is invoked with n = 3
    record = invoke(client, "countdown", {"n": 3})
    # Then each activation logs its n and answers with the next one's id (a non-blocking
    # invoke of itself, in the caller's namespace), until 0 wishes a happy new year
    counted = []
    while True:
        assert record["namespace"] == standalone.namespace
        assert path_of(record) == "whisk.system/samples/countdown"
        stdout = [line.split("stdout: ", 1)[1] for line in record["logs"]]
        counted.append(stdout[0])
        result = record["response"]["result"]
        if stdout[0] == "0":
            assert stdout[1:] == ["Happy New Year!"]
            assert result == {}
            break
        assert stdout[1:] == []
        assert set(result) == {"activationId"}, result
        record = finished(client, result["activationId"])
        assert record["response"]["status"] == "success", record
    assert counted == ["3", "2", "1", "0"]


def test_countdown_without_a_number_stops_at_once(client: httpx.Client) -> None:
    # Given no n (or one that is not a number) / Then it logs NaN and invokes nothing
    for params in ({}, {"n": "many"}):
        record = invoke(client, "countdown", params)
        assert record["response"]["result"] == {}
        assert [line.split("stdout: ", 1)[1] for line in record["logs"]] == ["NaN"]


def test_hello_promises_splits_the_greeting_it_invokes(client: httpx.Client) -> None:
    # When helloPromises is invoked with a name and a place
    record = invoke(client, "helloPromises", {"name": "Cat", "place": "Narrowsburg"})
    # Then it answers with the words of greeting's answer, which it invoked blocking
    assert record["response"]["result"] == {"lines": ["Hello,", "Cat", "from", "Narrowsburg!"]}
    assert any("stdout: activation:" in line for line in record["logs"]), record["logs"]
    # And greeting's own defaults apply to what it was not given
    defaults = invoke(client, "helloPromises", {})
    assert defaults["response"]["result"] == {"lines": ["Hello,", "stranger", "from", "somewhere!"]}


def test_invoke_returns_the_activation_of_utils_date(
    standalone: Standalone, client: httpx.Client
) -> None:
    # When invoke is invoked (it takes no parameters)
    record = invoke(client, "invoke", {})
    # Then its result is the record of a blocking invoke of /whisk.system/utils/date in
    # the caller's namespace, and it logged the date that record holds
    date = record["response"]["result"]
    assert date["name"] == "date" and date["namespace"] == standalone.namespace
    assert path_of(date) == "whisk.system/utils/date"
    assert date["response"]["status"] == "success"
    now = date["response"]["result"]["date"]
    assert datetime.fromisoformat(now.replace("Z", "+00:00")).tzinfo is not None
    assert [line.split("stdout: ", 1)[1] for line in record["logs"]] == [f"It is now {now}"]
    # And that activation is stored, as the caller's
    stored = finished(client, date["activationId"])
    assert stored["response"]["result"] == {"date": now}
