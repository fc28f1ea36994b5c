"""Actions calling the platform: ``__OW_API_HOST`` and ``__OW_API_KEY`` in a real
``squall standalone`` with real sandboxes.

Each test works in a namespace of its own (created with ``squall admin``), so each has
its own action key. A Node.js action drives the real ``openwhisk`` npm client (the one its
runtime ships, as OpenWhisk's images do); a Python action calls
the REST API with ``urllib``. The key is derived in the test from the server's secret file
(``HOME/action-key.secret``) and the uuid in its store, and looked for where it must
never appear: activation records, the server's log (at debug level) and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _apikey import NODE_ECHO, PY_CALLER, PY_HAS_KEY, PY_WHO_AM_I, REAL_ACTIONS
from _standalone import Standalone, admin, clean_env, poll, start
from netsupport import HTTP_PORT, NAME, OutsideHost

from squall.invoker.apikeys import SECRET_FILE
from squall.store import keys
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, outside: OutsideHost) -> Iterator[Standalone]:
    # Sandboxes resolve names with the outside host's resolver: no query leaves.
    squall = start(
        tmp_path_factory.mktemp("apikey-squall"),
        keep_warm_s=60,
        env={"SQUALL_LOG_LEVEL": "debug", "SQUALL_SANDBOX_DNS": outside.resolver or ""},
    )
    try:
        yield squall
    finally:
        squall.stop_cleanly()


def namespace_client(server: Standalone) -> tuple[str, httpx.Client]:
    """A fresh namespace (so a fresh action key) and a client authenticated as it."""
    namespace = f"ns-{uuid.uuid4().hex[:10]}"
    uid, _, key = admin(server.home, "user", "create", namespace).partition(":")
    return namespace, server.client(auth=(uid, key), timeout=90)


def put_action(client: httpx.Client, name: str, kind: str, code: str, **extra: Any) -> None:
    body = {"exec": {"kind": kind, "code": code}, **extra}
    r = client.put(f"/namespaces/_/actions/{name}?overwrite=true", json=body)
    assert r.status_code == 200, r.text


def wants_key(value: Any = True) -> dict[str, Any]:
    return {"annotations": [{"key": "provide-api-key", "value": value}]}


def invoke(client: httpx.Client, name: str, params: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/namespaces/_/actions/{name}?blocking=true", json=params)
    assert r.status_code == 200, r.text
    record: dict[str, Any] = r.json()
    return record


def action_key(server: Standalone, namespace: str) -> tuple[str, str]:
    """The namespace's current action key (uuid, key), as the invoker derives it."""

    async def stored_uuid() -> str | None:
        store = await SqliteStore.open(server.home / "squall.db")
        try:
            return await store.auth.get_action_key(namespace)
        finally:
            await store.close()

    found = asyncio.run(stored_uuid())
    assert found is not None, f"{namespace} has no action key"
    secret = (server.home / SECRET_FILE).read_text().strip().encode()
    return found, keys.derive_key(secret, found)


def test_python_action_calls_the_rest_api_with_its_key(server: Standalone) -> None:
    # Given a namespace with an echo action and a Python action that asks for the key
    namespace, client = namespace_client(server)
    with client:
        put_action(client, "echo", "nodejs:20", NODE_ECHO)
        put_action(client, "caller", "python:3.11", PY_CALLER, **wants_key())
        # When the caller runs
        record = invoke(client, "caller", {"target": "echo"})
    # Then it reached the API at __OW_API_HOST as its namespace and invoked the action
    assert record["response"]["status"] == "success", record
    assert record["response"]["result"] == {
        "called": {"hello": "python", "namespace": namespace},
        "namespaces": [namespace],
    }
    # (the API's port at the sandbox's gateway: the one platform port a sandbox may reach)
    port = server.api_host.rsplit(":", 1)[1]
    assert re.search(rf"through http://[\d.]+:{port}$", record["logs"][0]), record["logs"]


@pytest.mark.parametrize("language", sorted(REAL_ACTIONS))
def test_an_openwhisk_action_runs_unchanged(
    server: Standalone, outside: OutsideHost, language: str
) -> None:
    # Given an echo action, a trigger with a rule to it, and an action written for
    # OpenWhisk that fetches a URL (node-fetch / requests, as its runtime ships them) and
    # calls the platform (the openwhisk npm client / the REST API) with the key it is given
    namespace, client = namespace_client(server)
    kind, code = REAL_ACTIONS[language]
    with client:
        put_action(client, "echo", "nodejs:20", NODE_ECHO)
        assert client.put("/namespaces/_/triggers/ping", json={}).status_code == 200
        rule = {"trigger": "/_/ping", "action": "/_/echo"}
        assert client.put("/namespaces/_/rules/ping-echo", json=rule).status_code == 200
        put_action(client, "real", kind, code, **wants_key())
        # When it runs, fetching the test's outside host by name
        url = f"http://{NAME}:{HTTP_PORT}/"
        record = invoke(client, "real", {"url": url, "target": "echo", "trigger": "ping"})
        # Then it got the page, invoked the action as its namespace
        assert record["response"]["status"] == "success", record
        result = record["response"]["result"]
        assert result["page"]["outside"] is True
        assert result["called"] == {"hello": language, "namespace": namespace}
        # And it fired the trigger: the trigger's record exists and the rule ran echo
        fired = result["triggerActivationId"]
        trigger_record = client.get(f"/namespaces/_/activations/{fired}").json()
        assert trigger_record["name"] == "ping"

        def echo_by_rule() -> dict[str, Any] | None:
            # Its final record: the rule's activation is listed (pending) from its start
            listed = client.get("/namespaces/_/activations?name=echo&docs=true").json()
            found = (a for a in listed if a.get("cause") == fired)
            return next((a for a in found if a["response"]["status"] != "pending"), None)

        by_rule = poll(echo_by_rule, 30, 0.1, "the rule's activation of echo")
        assert by_rule["response"]["result"] == {"from": language, "namespace": namespace}


def test_a_key_only_when_provide_api_key_says_so(server: Standalone) -> None:
    # Given a new action without the annotation
    _, client = namespace_client(server)
    with client:
        put_action(client, "plain", "python:3.11", PY_HAS_KEY)
        created = client.get("/namespaces/_/actions/plain").json()
        # Then creation added provide-api-key: false, and the action gets no key
        assert {"key": "provide-api-key", "value": False} in created["annotations"]
        first = invoke(client, "plain", {})["response"]["result"]
        assert first["hasKey"] is False
        assert first["host"].endswith(":" + server.api_host.rsplit(":", 1)[1]), first
        # When the annotation is set to true by an update / Then the action gets the key
        put_action(client, "plain", "python:3.11", PY_HAS_KEY, **wants_key(True))
        assert invoke(client, "plain", {})["response"]["result"]["hasKey"] is True
        # And a falsy value ("" is falsy as in OpenWhisk) takes it away again
        put_action(client, "plain", "python:3.11", PY_HAS_KEY, **wants_key(""))
        assert invoke(client, "plain", {})["response"]["result"]["hasKey"] is False


def test_sequences_and_web_actions_get_the_key_too(server: Standalone) -> None:
    # Given a component that asks for the key, in a sequence, and as a web action
    namespace, client = namespace_client(server)
    with client:
        put_action(client, "who", "python:3.11", PY_WHO_AM_I, **wants_key())
        seq = {"exec": {"kind": "sequence", "components": [f"/{namespace}/who"]}}
        assert client.put("/namespaces/_/actions/seq", json=seq).status_code == 200
        web = {"annotations": [{"key": "provide-api-key", "value": True},
                               {"key": "web-export", "value": True}]}  # fmt: skip
        put_action(client, "webwho", "python:3.11", PY_WHO_AM_I, **web)
        # When the sequence runs / Then its step ran with the namespace's key
        step = invoke(client, "seq", {})["response"]["result"]
        assert step["status"] == 200 and step["namespaces"] == [namespace]
        # When the web action is called without credentials / Then it runs as its owner,
        # with the owner's key
        with httpx.Client(trust_env=False, timeout=90) as anonymous:
            r = anonymous.get(f"{server.api}/web/{namespace}/default/webwho.json")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == 200 and r.json()["namespaces"] == [namespace]
        assert r.json()["uuid"] == step["uuid"]


def test_rotate_action_key_replaces_the_key(server: Standalone) -> None:
    # Given an action that was given its namespace's action key
    namespace, client = namespace_client(server)
    with client:
        put_action(client, "who", "python:3.11", PY_WHO_AM_I, **wants_key())
        before = invoke(client, "who", {})["response"]["result"]
        assert before["status"] == 200 and before["namespaces"] == [namespace]
        old_uuid, old_secret_key = action_key(server, namespace)
        assert old_uuid == before["uuid"]
        old_key = f"{old_uuid}:{old_secret_key}"
        assert admin(server.home, "user", "whois", old_key).splitlines()[0] == (
            f"subject: {namespace}"
        )
        # When an operator rotates it
        said = admin(server.home, "user", "rotate-action-key", namespace)
        assert said.startswith(f"Action key of '{namespace}' revoked")
        # Then the store refuses the old key at once
        whois = subprocess.run(
            [sys.executable, "-m", "squall.cli.main", "admin", "--home", str(server.home),
             "user", "whois", old_key],
            capture_output=True, text=True, env=clean_env({"SQUALL_STORE_URL": ""}),
            timeout=60, check=False,
        )  # fmt: skip
        assert whois.returncode == 1

        # And once the caches have let go (10 s), runs get a new key that works
        def rotated() -> dict[str, Any] | None:
            result: dict[str, Any] = invoke(client, "who", {})["response"]["result"]
            return result if result["uuid"] != before["uuid"] else None

        after = poll(rotated, 60, 1.0, "a new action key")
        assert after["status"] == 200 and after["namespaces"] == [namespace]
        # And a namespace without an action key is told so
        again = admin(server.home, "user", "rotate-action-key", namespace)
        assert "revoked" in again
        assert "has no action key" in admin(server.home, "user", "rotate-action-key", namespace)
    # And an unknown namespace is refused with wskadmin's words
    unknown = subprocess.run(
        [sys.executable, "-m", "squall.cli.main", "admin", "--home", str(server.home),
         "user", "rotate-action-key", "no-such-ns"],
        capture_output=True, text=True, env=clean_env({"SQUALL_STORE_URL": ""}),
        timeout=60, check=False,
    )  # fmt: skip
    assert unknown.returncode == 1
    assert "no identities found for namespace 'no-such-ns'" in unknown.stderr


def test_the_key_never_appears_in_records_logs_or_metrics(server: Standalone) -> None:
    # Given an action that asks for the key, uses it, and prints nothing secret
    namespace, client = namespace_client(server)
    with client:
        put_action(client, "echo", "nodejs:20", NODE_ECHO)
        put_action(client, "caller", "python:3.11", PY_CALLER, **wants_key())
        # When it runs (blocking, and non-blocking through a stored record)
        record = invoke(client, "caller", {"target": "echo"})
        assert record["response"]["status"] == "success", record
        r = client.post("/namespaces/_/actions/caller", json={"target": "echo"})
        later = r.json()["activationId"]

        def stored() -> dict[str, Any] | None:
            got = client.get(f"/namespaces/_/activations/{later}")
            done = got.status_code == 200 and got.json()["response"]["status"] != "pending"
            return got.json() if done else None

        poll(stored, 60, 0.1, "the non-blocking activation's record")
        uid, key = action_key(server, namespace)
        basic = base64.b64encode(f"{uid}:{key}".encode()).decode()  # as in a header
        # Then the key is in no activation record of the namespace (the callers' and
        # the actions they invoked), neither as it is nor as a Basic token
        records = client.get("/namespaces/_/activations?docs=true&limit=200").json()
        assert len(records) >= 4
        text = json.dumps(records) + json.dumps(record)
        assert key not in text
        assert basic not in text
        # And not in /metrics
        with httpx.Client(trust_env=False, timeout=30) as plain:
            metrics = plain.get(f"{server.api_host}/metrics")
        assert metrics.status_code == 200
        assert key not in metrics.text and basic not in metrics.text
    # And not in the server's output (it logs at debug level here)
    log = server.log_path.read_text(errors="replace")
    assert "Uvicorn running on" in log  # the right file
    assert key not in log and basic not in log
