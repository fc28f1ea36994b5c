"""``squall standalone`` as a user runs it: a real process, real runtimes, real HTTP.

Most tests share the session's server (``standalone``); the ones that restart or stop a
server start their own on a home of their own (``start_server``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from _standalone import Standalone, StartServer, poll

pytestmark = pytest.mark.integration

HELLO_JS = "function main() { console.log('Hello World'); return { hello: 'world' }; }"
GREETING_PY = 'def main(args):\n    return {"greeting": "Hello " + args.get("name", "stranger")}\n'
# Sleeps ``args["s"]`` seconds (default none): one action for both quick and slow runs.
SLEEPY_PY = (
    "import time\n"
    "def main(args):\n"
    '    time.sleep(args.get("s", 0))\n'
    '    return {"slept": args.get("s", 0)}\n'
)
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stdout: Hello World$")
RECORD_DEADLINE_S = 15.0
FORBIDDEN = "The supplied authentication is not authorized to access this resource."


def put_action(
    client: httpx.Client, name: str, kind: str, code: str, **extra: Any
) -> dict[str, Any]:
    r = client.put(
        f"/namespaces/_/actions/{name}", json={"exec": {"kind": kind, "code": code}, **extra}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def invoke(client: httpx.Client, name: str, payload: Any = None, **query: str) -> httpx.Response:
    return client.post(f"/namespaces/_/actions/{name}", params=query, json=payload or {})


def wait_for_record(client: httpx.Client, activation_id: str) -> dict[str, Any]:
    """The final activation record, polled while it is pending (an accepted id is never
    unknown: a 404 fails at once)."""

    def probe() -> dict[str, Any] | None:
        r = client.get(f"/namespaces/_/activations/{activation_id}")
        assert r.status_code == 200, r.text
        record: dict[str, Any] = r.json()
        return None if record["response"]["status"] == "pending" else record

    return poll(probe, RECORD_DEADLINE_S, interval_s=0.05, what=f"activation {activation_id}")


def annotation(record: dict[str, Any], key: str) -> Any:
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


# -- invoking ---------------------------------------------------------------------------


def test_hello_js_blocking_invoke_returns_its_result_and_a_stamped_log_line(
    client: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given the seed's hello.js, created with PUT
    name = unique("hello")
    action = put_action(client, name, "nodejs:default", HELLO_JS)
    assert action["exec"]["kind"].startswith("nodejs:")

    # When it is invoked blocking, once for the full record and once for the result only
    full = invoke(client, name, blocking="true")
    result_only = invoke(client, name, blocking="true", result="true")

    # Then the record says success with the result, and result=true is the result alone
    assert full.status_code == 200, full.text
    record = full.json()
    assert record["response"]["status"] == "success"
    assert record["response"]["result"] == {"hello": "world"}
    assert full.headers["x-openwhisk-activation-id"] == record["activationId"]
    assert result_only.status_code == 200
    assert result_only.json() == {"hello": "world"}
    # And the console.log line is in the logs, in OpenWhisk's format, and nothing else is
    logs = client.get(f"/namespaces/_/activations/{record['activationId']}/logs").json()["logs"]
    assert len(logs) == 1, logs
    assert LOG_LINE.match(logs[0]), logs
    assert record["logs"] == logs


def test_python_action_reads_its_arguments(
    client: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given a Python action that greets by name
    name = unique("greet")
    put_action(client, name, "python:default", GREETING_PY)

    # When it is invoked with and without a name
    named = invoke(client, name, {"name": "Squall"}, blocking="true", result="true")
    anonymous = invoke(client, name, blocking="true", result="true")

    # Then each answer uses what was passed, or the default
    assert named.status_code == 200, named.text
    assert named.json() == {"greeting": "Hello Squall"}
    assert anonymous.status_code == 200, anonymous.text
    assert anonymous.json() == {"greeting": "Hello stranger"}


def test_non_blocking_invoke_answers_202_and_the_record_appears(
    client: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given a Python action
    name = unique("greet")
    put_action(client, name, "python:default", GREETING_PY)

    # When it is invoked without blocking
    r = invoke(client, name, {"name": "later"})

    # Then the answer is 202 with only the activation id, also in the header
    assert r.status_code == 202, r.text
    activation_id = r.json()["activationId"]
    assert r.json() == {"activationId": activation_id}
    assert re.fullmatch(r"[0-9a-f]{32}", activation_id)
    assert r.headers["x-openwhisk-activation-id"] == activation_id
    # And the record shows up with the result
    record = wait_for_record(client, activation_id)
    assert record["name"] == name
    assert record["response"]["result"] == {"greeting": "Hello later"}


def test_blocking_invoke_past_its_wait_answers_202_and_the_action_runs_on(
    client: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given an action that takes 1.5 s
    name = unique("sleepy")
    put_action(client, name, "python:default", SLEEPY_PY)

    # When it is invoked blocking but willing to wait only 200 ms
    r = invoke(client, name, {"s": 1.5}, blocking="true", timeout="200")

    # Then the answer is 202 with the id, and the run still completes successfully
    assert r.status_code == 202, r.text
    activation_id = r.json()["activationId"]
    assert r.headers["x-openwhisk-activation-id"] == activation_id
    record = wait_for_record(client, activation_id)
    assert record["response"]["status"] == "success", record["response"]
    assert record["response"]["result"] == {"slept": 1.5}


def test_action_over_its_time_limit_fails_with_502_and_the_next_run_gets_a_new_container(
    client: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given an action limited to 300 ms
    name = unique("limited")
    put_action(client, name, "python:default", SLEEPY_PY, limits={"timeout": 300})

    # When a run sleeps 5 s
    r = invoke(client, name, {"s": 5}, blocking="true")

    # Then it is cut off as an action developer error with OpenWhisk's message
    assert r.status_code == 502, r.text
    record = r.json()
    assert record["response"]["status"] == "action developer error"
    assert record["response"]["status"] == "action developer error"
    assert record["response"]["result"] == {
        "error": "The action exceeded its time limits of 300 milliseconds."
    }
    assert annotation(record, "timeout") is True

    # When it is invoked again with a quick run
    again = invoke(client, name, blocking="true")

    # Then it succeeds, in a fresh container (the timed-out one was destroyed: cold start)
    assert again.status_code == 200, again.text
    assert again.json()["response"]["result"] == {"slept": 0}
    assert annotation(again.json(), "timeout") is False
    assert annotation(again.json(), "initTime") is not None


# -- authentication -----------------------------------------------------------------------


def test_wrong_key_is_401(standalone: Standalone) -> None:
    # Given the guest's uuid with a wrong key
    uuid, key = standalone.credentials
    wrong = (uuid, "x" * len(key))

    # When it lists actions
    with standalone.client(auth=wrong) as c:
        r = c.get("/namespaces/_/actions")

    # Then the request is refused as unauthenticated, in OpenWhisk's error format
    assert r.status_code == 401
    assert r.json()["error"] == "The supplied authentication is invalid."
    assert r.json()["code"] == r.headers["x-request-id"]


def test_another_namespace_is_403_whether_or_not_the_entity_exists(
    client: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given an action of the guest's
    name = unique("mine")
    put_action(client, name, "nodejs:default", HELLO_JS)

    # When the guest reaches into another namespace, for anything
    answers = [
        client.get("/namespaces/someone-else/actions"),
        client.get(f"/namespaces/someone-else/actions/{name}"),
        client.put(
            f"/namespaces/someone-else/actions/{name}",
            json={"exec": {"kind": "nodejs:default", "code": HELLO_JS}},
        ),
        client.post(f"/namespaces/someone-else/actions/{name}", params={"blocking": "true"}),
    ]

    # Then every answer is 403 with the same message (nothing leaks)
    assert [r.status_code for r in answers] == [403] * 4
    assert {r.json()["error"] for r in answers} == {FORBIDDEN}
    # And the guest's own namespace by name works
    assert client.get(f"/namespaces/guest/actions/{name}").status_code == 200


# -- restarts and shutdown ----------------------------------------------------------------


def test_a_restart_keeps_the_credentials_and_the_entities(
    start_server: StartServer, tmp_path: Path
) -> None:
    # Given a server with an action and a package
    home = tmp_path / "home"
    first = start_server(home)
    with first.client() as c:
        put_action(c, "greet", "python:default", GREETING_PY)
        assert c.put("/namespaces/_/packages/tools", json={}).status_code == 200
        before = c.get("/namespaces/_/actions/greet").json()
    first.stop_cleanly()

    # When a server starts again on the same home
    second = start_server(home)

    # Then wskprops holds the same key, which still works, and the entities are there
    assert second.auth == first.auth
    with second.client() as c:
        after = c.get("/namespaces/_/actions/greet")
        assert after.status_code == 200
        assert after.json() == before
        assert c.get("/namespaces/_/packages/tools").status_code == 200
        r = invoke(c, "greet", {"name": "again"}, blocking="true", result="true")
        assert r.status_code == 200, r.text
        assert r.json() == {"greeting": "Hello again"}
    second.stop_cleanly()


def test_sigterm_during_a_slow_run_exits_and_the_activation_is_recorded(
    start_server: StartServer, tmp_path: Path
) -> None:
    # Given a server whose slow action (3 s) is running: warmed first, then invoked
    # blocking with a 1 s wait, so the 202 comes while the run is under way
    home = tmp_path / "home"
    server = start_server(home)
    with server.client() as c:
        put_action(c, "sleepy", "python:default", SLEEPY_PY)
        warm = invoke(c, "sleepy", blocking="true")
        assert warm.status_code == 200, warm.text
        r = invoke(c, "sleepy", {"s": 3}, blocking="true", timeout="1000")
        assert r.status_code == 202, r.text
        activation_id = r.json()["activationId"]
        assert server.runtimes(), "the action's runtime should be running"

    # When the server gets SIGTERM
    code = server.stop()

    # Then it exits 0 and leaves no runtime behind
    assert code == 0, server.log()
    assert not server.leftover_runtimes()

    # And after a restart the activation has a record: the run's, or an internal error
    restarted = start_server(home)
    with restarted.client() as c:
        r = c.get(f"/namespaces/_/activations/{activation_id}")
        assert r.status_code == 200, f"activation {activation_id} is missing: {r.text}"
        response = r.json()["response"]
    assert response["status"] in ("success", "whisk internal error"), response
    if response["status"] == "success":
        assert response["result"] == {"slept": 3}
    restarted.stop_cleanly()


def test_sigterm_right_after_a_non_blocking_invoke_still_records_the_activation(
    start_server: StartServer, tmp_path: Path
) -> None:
    # Given a server that has just accepted a non-blocking invoke (202)
    home = tmp_path / "home"
    server = start_server(home)
    with server.client() as c:
        put_action(c, "sleepy", "python:default", SLEEPY_PY)
        r = invoke(c, "sleepy", {"s": 0.5})
        assert r.status_code == 202, r.text
        activation_id = r.json()["activationId"]

    # When it gets SIGTERM at once
    code = server.stop()

    # Then it exits 0, and after a restart the accepted activation has a record
    assert code == 0, server.log()
    assert not server.leftover_runtimes()
    restarted = start_server(home)
    with restarted.client() as c:
        r = c.get(f"/namespaces/_/activations/{activation_id}")
        assert r.status_code == 200, f"activation {activation_id} is missing: {r.text}"
        assert r.json()["response"]["status"] in ("success", "whisk internal error")
    restarted.stop_cleanly()
