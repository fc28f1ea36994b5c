"""The standard catalog as other namespaces see it: ``/whisk.system`` lists ``utils``,
``samples`` and ``alarms``, readable and invocable by everyone, writable by no one; its
actions in a user's sequence and behind a user's rule; and ``/whisk.system/samples``
with the parameters and results of OpenWhisk's catalog."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from _required import unavailable
from apisupport import BASE_URL, FORBIDDEN, GUEST, NS, annotation, assert_error, get_activation
from test_api_catalog_utils import SYSTEM, invoke, result

from squall.cli.standalone import Standalone
from squall.errors import Conflict

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
UTILS = {"echo", "cat", "sort", "split", "head", "date", "namespace", "smash", "hosturl"}
SAMPLES = {
    "cat",
    "countdown",
    "curl",
    "greeting",
    "head",
    "helloPromises",
    "helloWorld",
    "invoke",
    "printParams",
    "wordCount",
    "wordCountAsync",
}
#: The actions that call the platform (tests/integration/test_catalog_samples.py runs them).
CALLERS = {"samples/countdown", "samples/helloPromises", "samples/invoke"}


@pytest.fixture
async def other(system: Standalone) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a second namespace, ``reader``, on the same platform."""
    try:
        subject = await system.store.auth.create_subject("reader")
    except Conflict:  # the module's platform already has it
        subject = await system.store.auth.create_subject("reader", rotate=True)
    uuid, key = subject.auth.split(":", 1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, auth=(uuid, key)
    ) as client:
        yield client


async def test_whisk_system_lists_the_published_catalog(other: httpx.AsyncClient) -> None:
    # When another namespace lists /whisk.system's packages (`wsk package list /whisk.system`)
    r = await other.get(f"{SYSTEM}/packages")
    assert r.status_code == 200, r.text
    packages = {p["name"]: p for p in r.json()}
    # Then utils, samples and alarms are there, published
    assert {"utils", "samples", "alarms"} <= set(packages)
    for name in ("utils", "samples", "alarms"):
        assert packages[name]["publish"] is True
        assert packages[name]["namespace"] == "whisk.system"
    # And each package lists its actions, documented, of a Node.js kind
    for name, actions in (("utils", UTILS), ("samples", SAMPLES)):
        got = (await other.get(f"{SYSTEM}/packages/{name}")).json()
        assert annotation(got, "description")
        assert {a["name"] for a in got["actions"]} == actions
    # And only the actions that call the platform are given the caller's action key
    for name, actions in (("utils", UTILS), ("samples", SAMPLES)):
        for action in actions:
            got = (await other.get(f"{SYSTEM}/actions/{name}/{action}")).json()
            wanted = f"{name}/{action}" in CALLERS
            assert annotation(got, "provide-api-key") is wanted, got["annotations"]
    echo = (await other.get(f"{SYSTEM}/actions/utils/echo")).json()
    assert echo["exec"]["kind"].startswith("nodejs:")
    assert "function main" in echo["exec"]["code"]
    assert annotation(echo, "sampleInput") == {"payload": "Five fuzzy felines"}


async def test_the_catalog_is_read_only_to_users(
    client: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    for c in (client, other):
        body = {"exec": {"kind": "nodejs:default", "code": "function main() {}"}}
        r = await c.put(f"{SYSTEM}/actions/utils/echo", json=body, params={"overwrite": "true"})
        assert_error(r, 403, FORBIDDEN)
        assert_error(await c.delete(f"{SYSTEM}/actions/utils/sort"), 403, FORBIDDEN)
        assert_error(await c.delete(f"{SYSTEM}/packages/samples"), 403, FORBIDDEN)


async def test_actions_run_in_the_callers_namespace(other: httpx.AsyncClient) -> None:
    record = await invoke(other, "utils/namespace")
    assert record["response"]["result"] == {"namespace": "reader"}
    assert record["namespace"] == "reader"
    assert annotation(record, "path") == "whisk.system/utils/namespace"


async def test_a_sequence_of_utils_in_a_users_namespace(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given the guest's sequences of /whisk.system/utils actions
    echo, lines = unique("echo-seq"), unique("sorted-lines")
    components = ["/whisk.system/utils/echo"]
    body = {"exec": {"kind": "sequence", "components": components}}
    r = await client.put(f"{NS}/actions/{echo}", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["exec"]["components"] == components
    pipeline = [f"/whisk.system/utils/{a}" for a in ("split", "sort", "cat")]
    body = {"exec": {"kind": "sequence", "components": pipeline}}
    assert (await client.put(f"{NS}/actions/{lines}", json=body)).status_code == 200
    # When they are invoked
    r = await client.post(
        f"{NS}/actions/{echo}", params={"blocking": "true"}, json={"hello": "world"}
    )
    # Then echo's result is the input, and its step is a record of echo in the guest's
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["response"]["result"] == {"hello": "world"}
    step = await get_activation(client, record["logs"][0])
    assert (step["name"], step["namespace"]) == ("echo", GUEST)
    # And split | sort | cat sorts the lines of a text
    r = await client.post(
        f"{NS}/actions/{lines}",
        params={"blocking": "true", "result": "true"},
        json={"payload": "pear\napple\nfig"},
    )
    assert r.json() == {"lines": ["apple", "fig", "pear"], "payload": "apple\nfig\npear"}


async def test_a_rule_fires_utils_echo(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a trigger of the guest and a rule from it to /whisk.system/utils/echo
    trigger, rule = unique("fire-echo"), unique("echo-rule")
    assert (await client.put(f"{NS}/triggers/{trigger}", json={})).status_code == 200
    body = {"trigger": f"/_/{trigger}", "action": "/whisk.system/utils/echo"}
    r = await client.put(f"{NS}/rules/{rule}", json=body)
    assert r.status_code == 200, r.text
    # When the trigger fires
    r = await client.post(f"{NS}/triggers/{trigger}", json={"hello": "world"})
    assert r.status_code == 202, r.text
    fired = (await client.get(f"{NS}/activations/{r.json()['activationId']}")).json()
    # Then the rule ran echo with the payload, in the guest's namespace
    line = json.loads(fired["logs"][0])
    assert line["action"] == "whisk.system/utils/echo" and line["success"] is True
    ran = await get_activation(client, line["activationId"])
    assert ran["name"] == "echo" and ran["namespace"] == GUEST
    assert ran["response"]["result"] == {"hello": "world"}


async def test_a_binding_of_samples_supplies_parameters(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a binding of /whisk.system/samples with a place (`wsk package bind`)
    binding = unique("valhalla")
    body = {
        "binding": {"namespace": "whisk.system", "name": "samples"},
        "parameters": [{"key": "place", "value": "Valhalla"}],
    }
    assert (await client.put(f"{NS}/packages/{binding}", json=body)).status_code == 200
    # When greeting is invoked through it / Then the bound place is used
    r = await client.post(
        f"{NS}/actions/{binding}/greeting",
        params={"blocking": "true", "result": "true"},
        json={"name": "Odin"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"payload": "Hello, Odin from Valhalla!"}


async def test_samples(client: httpx.AsyncClient) -> None:
    greeting = {"payload": "Cat", "place": "Narrowsburg"}
    assert await result(client, "samples/greeting", greeting) == {
        "payload": "Hello, Cat from Narrowsburg!"
    }
    assert await result(client, "samples/greeting") == {
        "payload": "Hello, stranger from somewhere!"
    }
    for name in ("wordCount", "wordCountAsync"):
        record = await invoke(client, f"samples/{name}", {"payload": "Five fuzzy felines"})
        assert record["response"]["result"] == {"count": 3}
        assert any("The message 'Five fuzzy felines' has 3 words" in x for x in record["logs"])
    printed = await result(client, "samples/printParams", {"x": 1, "b": 5, "z": 2})
    assert printed == {"params": {"b": 5, "x": 1, "z": 2}}
    assert list(printed["params"]) == ["b", "x", "z"]
    hello = await invoke(client, "samples/helloWorld", {"payload": "Cat"})
    assert hello["response"]["result"] == {}
    assert any(x.endswith("stdout: hello Cat!") for x in hello["logs"]), hello["logs"]
    assert await result(client, "samples/cat", {"lines": [1, 2, 3]}) == {
        "lines": [1, 2, 3],
        "payload": "1\n2\n3\n",
    }
    assert await result(client, "samples/head", {"lines": [1, 2, 3, 4], "num": 2}) == {
        "lines": [1, 2],
        "num": 2,
    }
    assert await result(client, "samples/head", {"lines": [1, 2]}) == {"lines": [1], "num": 1}
    for name in ("cat", "head"):
        record = await invoke(client, f"samples/{name}")
        assert record["response"]["status"] == "application error"
        assert record["response"]["result"] == {"error": "You must specify a lines parameter!"}


async def test_samples_curl_answers_with_curls_output(client: httpx.AsyncClient) -> None:
    if shutil.which("curl") is None:
        unavailable("curl is not installed (apt-get install curl)")
    # Given a URL where nothing listens (port 1 of the action's loopback)
    record: dict[str, Any] = await invoke(client, "samples/curl", {"payload": "127.0.0.1:1"})
    # Then the action succeeds with curl's error text, as OpenWhisk's does
    assert record["response"]["status"] == "success"
    assert "curl: (7)" in record["response"]["result"]["msg"]
    assert any("Curl to 127.0.0.1:1" in x for x in record["logs"])
