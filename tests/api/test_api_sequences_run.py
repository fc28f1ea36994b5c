"""Running sequences through the API: results, records, errors, nesting, limits, waiting,
and what the composer does when the controller closes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from apisupport import (
    GUEST,
    NODE_REJECT,
    NODE_THROW,
    NS,
    annotation,
    get_activation,
    node_action,
    poll,
)

from squall.cli.standalone import Standalone
from squall.controller.auth import Identity
from squall.controller.composition import Composer
from squall.controller.invocation import InvocationRequest
from squall.entities.action import Action
from squall.entities.names import EntityPath
from squall.errors import ServiceUnavailable

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
ACTIVATION_ID = re.compile(r"\A[0-9a-f]{32}\Z")
INC = "function main(p) { return {n: (p.n || 0) + 1, seen: (p.seen || []).concat([p.n])}; }"
DOUBLE = "function main(p) { return {n: p.n * 2}; }"
INC_PACKAGED = "function main(p) { return {n: p.n + 1, p: p.p}; }"
SLOW = (
    "function main(p) {\n"
    "  return new Promise(r => setTimeout(() => r({n: p.n, slept: p.ms}), p.ms));\n"
    "}\n"
)
# Like SLOW, but passes its delay on, so every step of a sequence of it sleeps.
RELAY = "function main(p) { return new Promise(r => setTimeout(() => r(p), p.ms)); }"


async def create(client: httpx.AsyncClient, name: str, body: dict[str, Any]) -> str:
    r = await client.put(f"{NS}/actions/{name}", json=body, params={"overwrite": "true"})
    assert r.status_code == 200, r.text
    return f"/{GUEST}/{name}"


def sequence(*components: str) -> dict[str, Any]:
    return {"exec": {"kind": "sequence", "components": list(components)}}


async def invoke(
    client: httpx.AsyncClient, name: str, payload: Any = None, **params: str
) -> httpx.Response:
    return await client.post(
        f"{NS}/actions/{name}", json={} if payload is None else payload, params=params
    )


async def records(client: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    return [await get_activation(client, i) for i in ids]


async def test_each_result_is_the_next_input(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given inc, inc, double (the second inc inside a package, with a package parameter)
    pkg, seq = unique("pkg"), unique("seq")
    await client.put(f"{NS}/packages/{pkg}", json={"parameters": [{"key": "p", "value": 1}]})
    inc = await create(client, unique("inc"), node_action(INC))
    inc2 = await create(client, f"{pkg}/inc", node_action(INC_PACKAGED))
    double = await create(client, unique("double"), node_action(DOUBLE, limits={"memory": 512}))
    await create(client, seq, sequence(inc, inc2, double))
    # When it is invoked blocking with n = 1
    r = await invoke(client, seq, {"n": 1}, blocking="true")
    # Then the result is ((1 + 1) + 1) * 2 and the answer is the sequence's whole record
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["response"] == {
        "status": "success",
        "success": True,
        "result": {"n": 6},
        "size": len('{"n":6}'),  # the last component's response, as OpenWhisk passes it on
    }
    assert r.headers["x-openwhisk-activation-id"] == record["activationId"]
    assert record["name"] == seq and record["namespace"] == GUEST and record["subject"] == GUEST
    assert "cause" not in record
    # And its logs are its components' activation ids, its duration their sum
    assert len(record["logs"]) == 3 and all(ACTIVATION_ID.match(i) for i in record["logs"])
    steps = await records(client, record["logs"])
    assert [s["name"] for s in steps] == [inc.rsplit("/", 1)[1], "inc", double.rsplit("/", 1)[1]]
    assert record["duration"] == sum(s["duration"] for s in steps)
    assert steps[1]["response"]["result"] == {"n": 3, "p": 1}
    # And it is annotated like OpenWhisk's, memory being the largest component's
    assert annotation(record, "topmost") is True
    assert annotation(record, "kind") == "sequence"
    assert annotation(record, "path") == f"{GUEST}/{seq}"
    assert annotation(record, "limits")["memory"] == 512
    assert annotation(record, "causedBy") is None
    # And every component names the sequence as its cause
    for step in steps:
        assert step["cause"] == record["activationId"]
        assert annotation(step, "causedBy") == "sequence"
    # And result=true answers the result only
    r = await invoke(client, seq, {"n": 0}, blocking="true", result="true")
    assert (r.status_code, r.json()) == (200, {"n": 4})


async def test_the_first_error_stops_the_sequence(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given [inc, reject, inc] and [inc, throw, inc]
    inc = await create(client, unique("inc"), node_action(INC))
    reject = await create(client, unique("reject"), node_action(NODE_REJECT))
    throw = await create(client, unique("throw"), node_action(NODE_THROW))
    app, dev = unique("app"), unique("dev")
    await create(client, app, sequence(inc, reject, inc))
    await create(client, dev, sequence(inc, throw, inc))
    # When the first is invoked / Then 502 with the application error; two steps ran
    r = await invoke(client, app, blocking="true")
    assert r.status_code == 502, r.text
    assert r.json()["response"]["status"] == "application error"
    assert len(r.json()["logs"]) == 2
    _, failed = await records(client, r.json()["logs"])
    assert r.json()["response"]["result"] == failed["response"]["result"]
    assert "error" in failed["response"]["result"]
    # When the second is invoked / Then 502 with the developer error
    r = await invoke(client, dev, blocking="true")
    assert r.status_code == 502, r.text
    assert r.json()["response"]["status"] == "action developer error"
    assert "boom" in str(r.json()["response"]["result"]["error"])
    assert len(r.json()["logs"]) == 2
    r = await invoke(client, dev, blocking="true", result="true")
    assert r.status_code == 502 and "error" in r.json()


async def test_nested_sequences(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given inner = [inc, inc] and outer = [double, inner, double]
    inc = await create(client, unique("inc"), node_action(INC))
    double = await create(client, unique("double"), node_action(DOUBLE))
    inner, outer = unique("inner"), unique("outer")
    fq_inner = await create(client, inner, sequence(inc, inc))
    await create(client, outer, sequence(double, fq_inner, double))
    # When outer is invoked with n = 1 / Then ((1 * 2) + 2) * 2
    r = await invoke(client, outer, {"n": 1}, blocking="true")
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["response"]["result"] == {"n": 8}
    # And its logs hold three ids: the inner sequence's own record in the middle
    first, middle, last = await records(client, record["logs"])
    assert middle["name"] == inner
    assert middle["cause"] == record["activationId"]
    assert annotation(middle, "topmost") is False
    assert annotation(middle, "causedBy") == "sequence"
    assert annotation(middle, "kind") == "sequence"
    assert first["cause"] == last["cause"] == record["activationId"]
    # And the inner sequence's components name it as their cause
    for step in await records(client, middle["logs"]):
        assert step["cause"] == middle["activationId"]
    assert record["duration"] == first["duration"] + middle["duration"] + last["duration"]


async def test_non_blocking_is_202_with_a_pending_record(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a sequence whose component takes 300 ms
    slow = await create(client, unique("slow"), node_action(SLOW))
    seq = unique("seq")
    await create(client, seq, sequence(slow))
    # When it is invoked without blocking / Then 202 with the id at once
    r = await invoke(client, seq, {"n": 1, "ms": 300})
    assert r.status_code == 202, r.text
    activation_id = r.json()["activationId"]
    assert r.headers["x-openwhisk-activation-id"] == activation_id
    # And the id is known while it runs: a pending record
    pending = (await client.get(f"{NS}/activations/{activation_id}")).json()
    assert pending["response"]["status"] == "pending"
    assert annotation(pending, "kind") == "sequence"
    # And it ends with the component's result
    final = await get_activation(client, activation_id)
    assert final["response"]["result"] == {"n": 1, "slept": 300}
    assert len(final["logs"]) == 1


async def test_blocking_past_the_wait_is_202_and_runs_on(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a sequence of a 200 ms component and a quick one
    slow = await create(client, unique("slow"), node_action(SLOW))
    inc = await create(client, unique("inc"), node_action(INC))
    seq = unique("seq")
    await create(client, seq, sequence(slow, inc))
    # When the caller waits only 50 ms / Then 202 with the id
    r = await invoke(client, seq, {"n": 1, "ms": 200}, blocking="true", timeout="50")
    assert r.status_code == 202, r.text
    # And the sequence still runs to its end
    final = await get_activation(client, r.json()["activationId"])
    assert final["response"]["result"] == {"n": 2, "seen": [1]}
    assert len(final["logs"]) == 2


async def test_a_deleted_component_ends_it(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given [inc, gone] where gone is deleted after the sequence was stored
    inc = await create(client, unique("inc"), node_action(INC))
    gone = unique("gone")
    await create(client, gone, node_action(INC))
    seq = unique("seq")
    await create(client, seq, sequence(inc, f"/{GUEST}/{gone}"))
    assert (await client.delete(f"{NS}/actions/{gone}")).status_code == 200
    # When it is invoked / Then 502 with OpenWhisk's message, after one step
    r = await invoke(client, seq, blocking="true")
    assert r.status_code == 502, r.text
    assert r.json()["response"]["status"] == "application error"
    assert r.json()["response"]["result"] == {"error": "Sequence component does not exist."}
    assert len(r.json()["logs"]) == 1


async def test_the_length_limit_holds_at_run_time(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given outer = [inner, inner] with inner = [noop], then inner grown to 50 actions
    noop = await create(client, unique("noop"), node_action("function main() { return {}; }"))
    inner, outer = unique("inner"), unique("outer")
    fq_inner = await create(client, inner, sequence(noop))
    await create(client, outer, sequence(fq_inner, fq_inner))
    await create(client, inner, sequence(*[noop] * 50))
    # When outer is invoked / Then the second inner stops before its first action
    r = await invoke(client, outer, blocking="true")
    assert r.status_code == 502, r.text
    assert r.json()["response"]["result"] == {"error": "Too many actions in the sequence."}
    first, second = await records(client, r.json()["logs"])
    assert len(first["logs"]) == 50 and first["response"]["status"] == "success"
    assert second["logs"] == [] and second["response"]["status"] == "application error"


async def test_close_lets_running_sequences_finish_or_records_them(
    system: Standalone, client: httpx.AsyncClient, unique: Unique
) -> None:
    relay = await create(client, unique("relay"), node_action(RELAY))
    seq = unique("seq")
    await create(client, seq, sequence(relay, relay))
    action = await system.controller.catalog.get(Action, EntityPath(GUEST, "", seq))
    identity = Identity(GUEST, (await system.store.auth.get_subject(GUEST)).uuid)
    # Given a running sequence of two 150 ms steps, on a composer of the platform's
    # controller with a long grace (its steps go through the platform's activator)
    composer = Composer(system.controller, grace_s=30)
    run = await composer.invoke(
        InvocationRequest(
            identity=identity, action=action, payload={"n": 1, "ms": 150}, blocking=False,
            wait_ms=0, txid="t1",
        )
    )  # fmt: skip
    # When the composer closes / Then the sequence has finished first
    await composer.close()
    record = (await client.get(f"{NS}/activations/{run.activation_id}")).json()
    assert record["response"]["status"] == "success" and len(record["logs"]) == 2
    # Given one with steps of 300 ms and a composer with a grace of 50 ms, closed
    # once the first step has ended (a step's record exists only once it has)
    composer = Composer(system.controller, grace_s=0.05)
    run = await composer.invoke(
        InvocationRequest(
            identity=identity, action=action, payload={"n": 1, "ms": 300}, blocking=False,
            wait_ms=0, txid="t2",
        )
    )  # fmt: skip
    await poll(lambda: _step_started(client, run.activation_id), what="the first step")
    # When the composer closes / Then the sequence is recorded as a whisk error
    await composer.close()
    record = (await client.get(f"{NS}/activations/{run.activation_id}")).json()
    assert record["response"]["status"] == "whisk internal error", record
    assert record["response"]["result"] == {
        "error": "The controller was shut down before the sequence completed."
    }
    # And a closed composer takes no more work
    with pytest.raises(ServiceUnavailable):
        await composer.invoke(
            InvocationRequest(
                identity=identity, action=action, payload={}, blocking=False, wait_ms=1,
                txid="t",
            )
        )  # fmt: skip


async def _step_started(client: httpx.AsyncClient, cause: str) -> bool | None:
    """A :func:`poll` probe: True once an activation caused by ``cause`` exists."""
    listed = (await client.get(f"{NS}/activations", params={"limit": "50"})).json()
    return True if any(a.get("cause") == cause for a in listed) else None
