"""Conductor actions through the API: OpenWhisk's composition protocol, its records,
errors and limits (after OpenWhisk's ConductorsApiTests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from apisupport import BASE_URL, GUEST, NS, annotation, get_activation, node_action

from squall.cli.standalone import Standalone
from squall.errors import Conflict

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
CONDUCTOR = [{"key": "conductor", "value": True}]
# Like OpenWhisk's tests/dat/actions/conductor.js: errors come back as they are; else
# `action` and `state` pass through and everything else becomes `params`.
CONDUCTOR_JS = """
function main(args) {
  if (args.error !== undefined) return args;
  const out = { params: Object.assign({}, args.params || {}) };
  for (const key of Object.keys(args)) {
    if (key !== 'action' && key !== 'state' && key !== 'params') out.params[key] = args[key];
  }
  if (args.action !== undefined) out.action = args.action;
  if (args.state !== undefined) out.state = args.state;
  return out;
}
"""
STEP_JS = (
    "function main(p) { return p.n === undefined ? {error: 'missing parameter'} : {n: p.n + 1}; }"
)
ECHO_JS = "function main(p) { return p; }"
TOO_LONG = "Too many actions in the composition."


async def create(client: httpx.AsyncClient, name: str, body: dict[str, Any]) -> str:
    r = await client.put(f"{NS}/actions/{name}", json=body, params={"overwrite": "true"})
    assert r.status_code == 200, r.text
    return name


async def run(client: httpx.AsyncClient, name: str, payload: dict[str, Any]) -> httpx.Response:
    return await client.post(f"{NS}/actions/{name}", json=payload, params={"blocking": "true"})


async def durations(client: httpx.AsyncClient, record: dict[str, Any]) -> int:
    """The summed durations of the runs a composition lists."""
    total = 0
    for activation_id in record["logs"]:
        total += (await get_activation(client, activation_id))["duration"]
    return total


@pytest.fixture
async def names(client: httpx.AsyncClient, unique: Unique) -> dict[str, str]:
    """A conductor, an echo conductor and a step action."""
    return {
        "conductor": await create(
            client, unique("conductor"), node_action(CONDUCTOR_JS, annotations=CONDUCTOR)
        ),
        "echo": await create(client, unique("echo"), node_action(ECHO_JS, annotations=CONDUCTOR)),
        "step": await create(client, unique("step"), node_action(STEP_JS)),
    }


@pytest.fixture
async def stranger(system: Standalone) -> AsyncIterator[httpx.AsyncClient]:
    try:
        subject = await system.store.auth.create_subject("stranger")
    except Conflict:
        subject = await system.store.auth.create_subject("stranger", rotate=True)
    uuid, key = subject.auth.split(":", 1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, auth=(uuid, key)
    ) as c:
        yield c


async def test_no_dynamic_steps(client: httpx.AsyncClient, names: dict[str, str]) -> None:
    echo = names["echo"]
    # When a conductor returns no action / Then its result is the composition's
    r = await run(client, echo, {"payload": "hi"})
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["response"]["result"] == {"payload": "hi"}
    assert len(record["logs"]) == 1
    assert record["duration"] == await durations(client, record)
    assert annotation(record, "conductor") is True
    assert annotation(record, "kind") == "sequence"
    assert annotation(record, "topmost") is True
    assert annotation(record, "limits")["memory"] == 256
    # And its one run names the composition as its cause
    [conductor_run] = [await get_activation(client, i) for i in record["logs"]]
    assert conductor_run["cause"] == record["activationId"]
    assert annotation(conductor_run, "causedBy") == "sequence"
    # When it returns an error / Then that ends it as an application error
    r = await run(client, echo, {"error": "bad"})
    assert r.status_code == 502
    assert r.json()["response"]["status"] == "application error"
    assert r.json()["response"]["result"] == {"error": "bad"}
    # When it wraps its result in params / Then the composition unwraps it
    r = await run(client, echo, {"params": {"payload": "hi"}})
    assert r.json()["response"]["result"] == {"payload": "hi"}
    # And a non-object params is boxed as {value}
    r = await run(client, echo, {"params": 42})
    assert r.json()["response"]["result"] == {"value": 42}


async def test_unusable_next_actions(
    client: httpx.AsyncClient, names: dict[str, str], stranger: httpx.AsyncClient, unique: Unique
) -> None:
    echo = names["echo"]
    # Given a private action of another namespace
    private = unique("private")
    await create(stranger, private, node_action(STEP_JS))
    cases = [
        ("invalid#Action", 'Failed to parse action name from json value "invalid#Action" during'),
        (unique("missing"), f"Failed to resolve action with name '{GUEST}/"),
        (f"/stranger/{private}", "Failed entitlement check for action with name 'stranger/"),
    ]
    for action, message in cases:
        # When the conductor names it / Then the conductor runs again on the error
        r = await run(client, echo, {"payload": "x", "action": action})
        assert r.status_code == 502, r.text
        assert r.json()["response"]["status"] == "application error"
        error = r.json()["response"]["result"]["error"]
        assert error.startswith(message) and error.endswith(" during composition."), error
        assert len(r.json()["logs"]) == 2


async def test_dynamic_steps(client: httpx.AsyncClient, names: dict[str, str]) -> None:
    conductor, step = names["conductor"], names["step"]
    # When the conductor runs step once / Then conductor, step, conductor
    r = await run(client, conductor, {"action": step, "params": {"n": 1}})
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["response"]["result"] == {"n": 2}
    assert len(record["logs"]) == 3
    assert record["duration"] == await durations(client, record)
    runs = [await get_activation(client, i) for i in record["logs"]]
    assert [a["name"] for a in runs] == [conductor, step, conductor]
    assert all(a["cause"] == record["activationId"] for a in runs)
    assert all(annotation(a, "causedBy") == "sequence" for a in runs)
    # When the step fails / Then the conductor gets the error and ends with it
    r = await run(client, conductor, {"action": step})
    assert r.status_code == 502
    assert r.json()["response"]["result"] == {"error": "missing parameter"}
    assert len(r.json()["logs"]) == 3
    # When state is given / Then it comes back to the conductor merged into the result
    r = await run(client, conductor, {"action": step, "state": {"witness": 42}, "n": 1})
    assert r.json()["response"]["result"] == {"n": 2, "witness": 42}
    # When the state names the step again / Then it runs twice
    r = await run(client, conductor, {"action": step, "state": {"action": step}, "n": 1})
    assert r.json()["response"]["result"] == {"n": 3}
    assert len(r.json()["logs"]) == 5


async def test_nested_compositions(client: httpx.AsyncClient, names: dict[str, str]) -> None:
    conductor, step = names["conductor"], names["step"]
    # When the conductor runs itself with one step / Then the inner composition is one entry
    r = await run(client, conductor, {"action": conductor, "params": {"action": step}, "n": 1})
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["response"]["result"] == {"n": 2}
    assert len(record["logs"]) == 3
    inner = await get_activation(client, record["logs"][1])
    assert annotation(inner, "conductor") is True
    assert annotation(inner, "topmost") is False
    assert annotation(inner, "causedBy") == "sequence"
    assert inner["cause"] == record["activationId"]
    assert len(inner["logs"]) == 3
    # And durations add up across the levels
    assert record["duration"] == await durations(client, record)
    # When there are two levels and three steps / Then n goes from 1 to 4
    payload = {
        "action": conductor,
        "state": {"action": step},
        "params": {"action": conductor, "state": {"action": step}, "params": {"action": step}},
        "n": 1,
    }
    r = await run(client, conductor, payload)
    assert r.json()["response"]["result"] == {"n": 4}
    assert len(r.json()["logs"]) == 5


async def test_the_step_limit(client: httpx.AsyncClient, names: dict[str, str]) -> None:
    conductor, step = names["conductor"], names["step"]
    # Given a state that names the step 50 times (the limit), nested
    state: dict[str, Any] = {}
    for _ in range(50):
        state = {"action": step, "state": state}
    # When it runs / Then 50 steps and 51 conductor runs are fine
    r = await run(client, conductor, {**state, "n": 0})
    assert r.status_code == 200, r.text
    assert r.json()["response"]["result"] == {"n": 50}
    assert len(r.json()["logs"]) == 101
    # When one more step is asked for / Then OpenWhisk's message ends it
    r = await run(client, conductor, {"action": step, "state": state, "n": 0})
    assert r.status_code == 502
    assert r.json()["response"]["result"] == {"error": TOO_LONG}
    # And the limit is shared with a nested composition
    r = await run(
        client,
        conductor,
        {"action": conductor, "params": {"action": step, "state": state}, "n": 0},
    )
    assert r.json()["response"]["result"] == {"error": TOO_LONG}


async def test_non_blocking_composition(client: httpx.AsyncClient, names: dict[str, str]) -> None:
    r = await client.post(
        f"{NS}/actions/{names['conductor']}", json={"action": names["step"], "n": 7}
    )
    assert r.status_code == 202, r.text
    final = await get_activation(client, r.json()["activationId"])
    assert final["response"]["result"] == {"n": 8}
    assert len(final["logs"]) == 3


async def test_conductors_and_sequences_nest(
    client: httpx.AsyncClient, names: dict[str, str], unique: Unique
) -> None:
    conductor, step = names["conductor"], names["step"]
    # Given a plain echo action and a sequence [echo, conductor]
    plain = await create(client, unique("plain"), node_action(ECHO_JS))
    seq = unique("seq")
    body = {
        "exec": {"kind": "sequence", "components": [f"/_/{plain}", f"/_/{conductor}"]},
    }
    await create(client, seq, body)
    # When the sequence hands the conductor a step / Then echo, composition(step)
    r = await run(client, seq, {"n": 1, "action": step})
    assert r.status_code == 200, r.text
    assert r.json()["response"]["result"] == {"n": 2}
    assert len(r.json()["logs"]) == 2
    composition = await get_activation(client, r.json()["logs"][1])
    assert annotation(composition, "conductor") is True
    assert annotation(composition, "topmost") is False
    assert composition["cause"] == r.json()["activationId"]
    assert len(composition["logs"]) == 3
    # When a composition runs the sequence / Then the sequence is one component
    r = await run(client, conductor, {"action": seq, "n": 1})
    assert r.status_code == 200, r.text
    assert r.json()["response"]["result"] == {"n": 1}
    assert len(r.json()["logs"]) == 3
    inner = await get_activation(client, r.json()["logs"][1])
    assert inner["name"] == seq and annotation(inner, "conductor") is None
