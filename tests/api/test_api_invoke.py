"""Invoking actions through the API: blocking, non-blocking, results, errors, parameters."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from apisupport import (
    BAD_TIMEOUT,
    GUEST,
    NODE_REJECT,
    NODE_THROW,
    NOT_FOUND,
    NS,
    PY_APP_ERROR,
    annotation,
    annotation_keys,
    assert_error,
    get_activation,
    node_action,
    python_action,
)

from squall.store.sqlite import SqliteEntityStore

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
ACTIVATION_ID = re.compile(r"\A[0-9a-f]{32}\Z")
LOG_LINE = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr): ")
NODE_SLOW = (
    "function main(p) {\n"
    "  return new Promise(resolve => setTimeout(() => resolve({slept: p.ms}), p.ms));\n"
    "}\n"
)


async def create(client: httpx.AsyncClient, name: str, body: dict[str, Any]) -> None:
    r = await client.put(f"{NS}/actions/{name}", json=body)
    assert r.status_code == 200, r.text


async def invoke(
    client: httpx.AsyncClient, name: str, payload: Any = None, **params: str
) -> httpx.Response:
    return await client.post(
        f"{NS}/actions/{name}", json={} if payload is None else payload, params=params
    )


def assert_record(record: dict[str, Any], name: str, kind: str, status_code: int) -> None:
    """The shape every activation record has."""
    assert ACTIVATION_ID.match(record["activationId"]), record["activationId"]
    assert record["namespace"] == GUEST
    assert record["name"] == name
    assert record["subject"] == GUEST
    assert record["version"] == "0.0.1"
    assert isinstance(record["start"], int)
    assert isinstance(record["end"], int)
    assert record["end"] >= record["start"]
    assert record["duration"] == record["end"] - record["start"]
    response = record["response"]
    names = {0: "success", 1: "application error", 2: "action developer error"}
    assert response["status"] == names[status_code]
    assert "statusCode" not in response  # OpenWhisk shows status and success instead
    assert response["success"] is (status_code == 0)
    assert annotation(record, "path") == f"{GUEST}/{name}"
    assert annotation(record, "kind") == kind
    assert annotation(record, "limits") == {
        "timeout": 60000,
        "memory": 256,
        "logs": 10,
        "concurrency": 1,
    }
    assert annotation(record, "timeout") is False
    wait_time = annotation(record, "waitTime")
    assert isinstance(wait_time, int)
    assert wait_time >= 0
    for line in record["logs"]:
        assert LOG_LINE.match(line), line


@pytest.mark.parametrize(
    ("body", "kind", "greeting_log"),
    [
        (node_action(), "nodejs:20", "stdout: hello from node world"),
        (python_action(), "python:3.13", "stdout: hello from python world"),
    ],
    ids=["nodejs", "python"],
)
async def test_blocking_invoke_returns_the_full_record_cold_then_warm(
    client: httpx.AsyncClient,
    unique: Unique,
    body: dict[str, Any],
    kind: str,
    greeting_log: str,
) -> None:
    # Given a fresh action
    name = unique("hello")
    await create(client, name, body)
    # When it is invoked blocking for the first time
    r = await invoke(client, name, {"name": "world"}, blocking="true")
    # Then 200 with the whole activation record, including initTime (a cold start)
    assert r.status_code == 200, r.text
    cold = r.json()
    assert_record(cold, name, kind, 0)
    assert cold["response"]["result"]["greeting"] == "Hello world"
    assert r.headers["x-openwhisk-activation-id"] == cold["activationId"]
    assert any(line.endswith(greeting_log) for line in cold["logs"]), cold["logs"]
    init_time = annotation(cold, "initTime")
    assert isinstance(init_time, int)
    assert init_time >= 0
    # When it is invoked again
    r = await invoke(client, name, {"name": "again"}, blocking="true")
    # Then the warm run has no initTime and a new activation id
    assert r.status_code == 200, r.text
    warm = r.json()
    assert_record(warm, name, kind, 0)
    assert "initTime" not in annotation_keys(warm)
    assert warm["activationId"] != cold["activationId"]
    assert warm["response"]["result"]["greeting"] == "Hello again"
    # And the stored records are what the blocking answers said
    assert await get_activation(client, cold["activationId"]) == cold
    assert await get_activation(client, warm["activationId"]) == warm


async def test_a_new_actions_first_invoke_reads_nothing_from_the_store(
    client: httpx.AsyncClient, unique: Unique, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a fresh action, and the store's reads of it counted from now on
    name = unique("once")
    await create(client, name, python_action())
    reads: list[str] = []
    get = SqliteEntityStore.get

    async def counted(store: SqliteEntityStore, namespace: str, collection: str, path: str) -> Any:
        if collection == "actions" and path == name:
            reads.append(namespace)
        return await get(store, namespace, collection, path)

    monkeypatch.setattr(SqliteEntityStore, "get", counted)
    # When it is invoked blocking, cold then warm
    for who in ("cold", "warm"):
        r = await invoke(client, name, {"name": who}, blocking="true")
        assert r.status_code == 200, r.text
        assert r.json()["response"]["result"]["greeting"] == f"Hello {who}"
    # Then it was never read: the controller's catalog kept it as the PUT stored it, and
    # the invoker beside it (standalone) runs that, at the revision the message names
    assert reads == []


async def test_node_logs_carry_stdout_and_stderr(client: httpx.AsyncClient, unique: Unique) -> None:
    name = unique("logs")
    await create(client, name, node_action())
    record = (await invoke(client, name, {"name": "x"}, blocking="true")).json()
    streams = [line.split(" ", 2)[1] for line in record["logs"]]
    assert "stdout:" in streams
    assert "stderr:" in streams
    assert any(line.endswith("stderr: to stderr") for line in record["logs"])


async def test_result_true_returns_only_the_result(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an action
    name = unique("result")
    await create(client, name, node_action())
    # When it is invoked blocking with result=true
    r = await invoke(client, name, {"name": "R"}, blocking="true", result="true")
    # Then the body is just the action's result
    assert r.status_code == 200, r.text
    assert r.json() == {"greeting": "Hello R", "params": {"name": "R"}}
    assert ACTIVATION_ID.match(r.headers["x-openwhisk-activation-id"])


async def test_non_blocking_invoke_is_202_with_the_activation_id(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an action
    name = unique("async")
    await create(client, name, node_action())
    # When it is invoked without blocking (the default)
    for params in ({}, {"blocking": "false"}):
        r = await invoke(client, name, {"name": "later"}, **params)
        # Then 202 with only the activation id, also in the header
        assert r.status_code == 202, r.text
        body = r.json()
        assert set(body) == {"activationId"}
        assert ACTIVATION_ID.match(body["activationId"])
        assert r.headers["x-openwhisk-activation-id"] == body["activationId"]
        # And the activation runs and is recorded
        record = await get_activation(client, body["activationId"])
        assert record["response"]["result"]["greeting"] == "Hello later"


async def test_blocking_wait_longer_than_timeout_is_202_and_the_action_runs_on(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an action that takes half a second
    name = unique("slow")
    await create(client, name, node_action(NODE_SLOW))
    # When it is invoked blocking but with a 50 ms wait
    r = await invoke(client, name, {"ms": 500}, blocking="true", timeout="50")
    # Then 202 with the activation id, and the record appears when the action finishes
    assert r.status_code == 202, r.text
    activation_id = r.json()["activationId"]
    assert r.headers["x-openwhisk-activation-id"] == activation_id
    record = await get_activation(client, activation_id)
    assert record["response"]["result"] == {"slept": 500}


async def test_node_rejected_promise_is_an_application_error(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a Node action whose promise rejects with {error: 'x'}
    name = unique("reject")
    await create(client, name, node_action(NODE_REJECT))
    # When it is invoked blocking / Then 502 with an application error record
    r = await invoke(client, name, blocking="true")
    assert r.status_code == 502, r.text
    record = r.json()
    assert_record(record, name, "nodejs:20", 1)
    # (OpenWhisk's Node.js runtime wraps the rejection reason: {error: serializeError(reason)})
    assert record["response"]["result"] == {"error": {"error": "x"}}
    # And with result=true, 502 with the result only
    r = await invoke(client, name, blocking="true", result="true")
    assert r.status_code == 502
    assert r.json() == {"error": {"error": "x"}}


async def test_python_error_result_is_an_application_error(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("pyerr")
    await create(client, name, python_action(PY_APP_ERROR))
    r = await invoke(client, name, blocking="true")
    assert r.status_code == 502, r.text
    record = r.json()
    assert_record(record, name, "python:3.13", 1)
    assert record["response"]["result"] == {"error": "bad input"}


async def test_node_throw_is_a_developer_error(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a Node action that throws
    name = unique("throw")
    await create(client, name, node_action(NODE_THROW))
    # When it is invoked blocking / Then 502 with an action developer error
    r = await invoke(client, name, blocking="true")
    assert r.status_code == 502, r.text
    record = r.json()
    assert_record(record, name, "nodejs:20", 2)
    assert "boom" in str(record["response"]["result"]["error"])
    # And the stored record says the same
    stored = await get_activation(client, record["activationId"])
    assert stored["response"]["status"] == "action developer error"


async def test_default_parameters_are_merged_under_the_payload(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a package parameter and action parameters
    pkg, name = unique("pkg"), unique("params")
    await client.put(
        f"{NS}/packages/{pkg}",
        json={"parameters": [{"key": "from_pkg", "value": "p"}, {"key": "both", "value": "pkg"}]},
    )
    await create(
        client,
        f"{pkg}/{name}",
        node_action(
            parameters=[
                {"key": "name", "value": "default"},
                {"key": "kept", "value": 1},
                {"key": "both", "value": "action"},
            ]
        ),
    )
    # When it is invoked with a payload that overrides one parameter
    r = await invoke(client, f"{pkg}/{name}", {"name": "payload"}, blocking="true", result="true")
    # Then the action sees package < action < payload
    assert r.status_code == 200, r.text
    assert r.json()["params"] == {
        "from_pkg": "p",
        "both": "action",
        "name": "payload",
        "kept": 1,
    }
    # And without a payload it sees the defaults
    r = await invoke(client, f"{pkg}/{name}", blocking="true", result="true")
    assert r.json()["params"]["name"] == "default"


async def test_invoke_in_a_package_records_the_package_path(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    pkg, name = unique("pkg"), unique("inpkg")
    await client.put(f"{NS}/packages/{pkg}", json={})
    await create(client, f"{pkg}/{name}", node_action())
    record = (await invoke(client, f"{pkg}/{name}", {"name": "p"}, blocking="true")).json()
    assert record["name"] == name
    assert annotation(record, "path") == f"{GUEST}/{pkg}/{name}"


@pytest.mark.parametrize("timeout", ["0", "-1", "60001", "abc", "1.5"])
async def test_timeout_out_of_range_is_400(
    client: httpx.AsyncClient, unique: Unique, timeout: str
) -> None:
    # Given an action
    name = unique("timeout")
    await create(client, name, node_action())
    # When it is invoked with a timeout outside 1..60000 ms
    r = await invoke(client, name, blocking="true", timeout=timeout)
    # Then 400 with OpenWhisk's message, and nothing ran
    assert_error(r, 400, BAD_TIMEOUT)
    count = await client.get(f"{NS}/activations", params={"name": name, "count": "true"})
    assert count.json() == {"activations": 0}


async def test_timeout_at_the_maximum_is_accepted(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("maxwait")
    await create(client, name, node_action())
    r = await invoke(client, name, {"name": "t"}, blocking="true", timeout="60000")
    assert r.status_code == 200, r.text


async def test_invoking_a_missing_action_is_404(client: httpx.AsyncClient, unique: Unique) -> None:
    assert_error(await invoke(client, unique("missing"), blocking="true"), 404, NOT_FOUND)
    assert_error(await invoke(client, f"{unique('nopkg')}/a"), 404, NOT_FOUND)


async def test_oversize_payload_is_413(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given an action
    name = unique("big")
    await create(client, name, node_action())
    # When it is invoked with a payload over 1 MB
    body = orjson.dumps({"name": "x" * (1024 * 1024)})
    r = await client.post(
        f"{NS}/actions/{name}",
        content=body,
        params={"blocking": "true"},
        headers={"Content-Type": "application/json"},
    )
    # Then 413 with the sizes, and nothing ran
    assert_error(r, 413, f"Request larger than allowed: {len(body)} > 1048576 bytes.")
    count = await client.get(f"{NS}/activations", params={"name": name, "count": "true"})
    assert count.json() == {"activations": 0}


async def test_payload_just_under_the_limit_is_accepted(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("almost")
    await create(client, name, node_action("function main(p) { return {n: p.s.length}; }"))
    overhead = len(orjson.dumps({"s": ""}))
    body = orjson.dumps({"s": "y" * (1024 * 1024 - overhead)})
    assert len(body) == 1024 * 1024
    r = await client.post(
        f"{NS}/actions/{name}",
        content=body,
        params={"blocking": "true", "result": "true"},
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text[:300]
    assert r.json() == {"n": 1024 * 1024 - overhead}


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"text"', b"{broken"])
async def test_payload_that_is_not_an_object_is_400(
    client: httpx.AsyncClient, unique: Unique, payload: bytes
) -> None:
    name = unique("notobj")
    await create(client, name, node_action())
    r = await client.post(
        f"{NS}/actions/{name}",
        content=payload,
        params={"blocking": "true"},
        headers={"Content-Type": "application/json"},
    )
    assert assert_error(r, 400).startswith("The request content was malformed")


async def test_invoke_through_a_binding_merges_package_then_binding_parameters(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a package with parameters, an action in it, and a binding overriding one of them
    pkg, bound, name = unique("src"), unique("bnd"), unique("echo")
    await client.put(
        f"{NS}/packages/{pkg}",
        json={"parameters": [{"key": "a", "value": "pkg"}, {"key": "b", "value": "pkg"}]},
    )
    await create(
        client,
        f"{pkg}/{name}",
        node_action("function main(p) { return p; }", parameters=[{"key": "c", "value": "act"}]),
    )
    r = await client.put(
        f"{NS}/packages/{bound}",
        json={
            "binding": {"namespace": GUEST, "name": pkg},
            "parameters": [{"key": "b", "value": "binding"}, {"key": "c", "value": "binding"}],
        },
    )
    assert r.status_code == 200, r.text
    # When the action is invoked through the binding
    r = await invoke(client, f"{bound}/{name}", {"d": "payload"}, blocking="true", result="true")
    # Then it runs with package < binding < action < payload
    assert r.status_code == 200, r.text
    assert r.json() == {"a": "pkg", "b": "binding", "c": "act", "d": "payload"}
    # And the action can be read through the binding too
    got = await client.get(f"{NS}/actions/{bound}/{name}")
    assert got.status_code == 200, got.text
    assert got.json()["name"] == name


async def test_action_over_its_time_limit_is_a_developer_error(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given an action limited to 1 s that takes much longer, already initialized (its
    # /init counts against the same limit: on a loaded machine a cold one may be cut there)
    name = unique("overtime")
    await create(client, name, node_action(NODE_SLOW, limits={"timeout": 1000}))
    for _ in range(3):
        if (await invoke(client, name, {"ms": 0}, blocking="true")).status_code == 200:
            break
    # When it is invoked blocking
    r = await invoke(client, name, {"ms": 5000}, blocking="true")
    # Then 502: developer error with OpenWhisk's message, and the timeout annotation is true
    assert r.status_code == 502, r.text
    record = r.json()
    assert record["response"]["status"] == "action developer error"
    assert record["response"]["result"] == {
        "error": "The action exceeded its time limits of 1000 milliseconds."
    }
    assert annotation(record, "timeout") is True
    assert annotation(record, "limits")["timeout"] == 1000
    # (its own answer, {"slept": 5000}, never came: the result is the platform's error)


async def test_result_without_blocking_is_still_202(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    name = unique("resnb")
    await create(client, name, node_action())
    r = await invoke(client, name, {"name": "n"}, result="true")
    assert r.status_code == 202, r.text
    record = await get_activation(client, r.json()["activationId"])
    assert record["response"]["result"]["greeting"] == "Hello n"
