"""Triggers and rules: CRUD, references, status changes, and the trigger's rules map."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from apisupport import EXISTS, GUEST, NOT_FOUND, NS, annotation, assert_error, node_action

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]


async def put_trigger(
    client: httpx.AsyncClient, name: str, body: Any = None, **params: str
) -> httpx.Response:
    return await client.put(
        f"{NS}/triggers/{name}", json={} if body is None else body, params=params
    )


async def put_rule(
    client: httpx.AsyncClient, name: str, body: Any, **params: str
) -> httpx.Response:
    return await client.put(f"{NS}/rules/{name}", json=body, params=params)


async def trigger_and_action(client: httpx.AsyncClient, unique: Unique) -> tuple[str, str]:
    t, a = unique("t"), unique("a")
    assert (await put_trigger(client, t)).status_code == 200
    assert (await client.put(f"{NS}/actions/{a}", json=node_action())).status_code == 200
    return t, a


# -- triggers -----------------------------------------------------------------------------


async def test_trigger_crud(client: httpx.AsyncClient, unique: Unique) -> None:
    # When a trigger is created with a parameter
    name = unique("trig")
    r = await put_trigger(client, name, {"parameters": [{"key": "p", "value": "v"}]})
    # Then it has OpenWhisk's shape
    assert r.status_code == 200, r.text
    trigger = r.json()
    assert trigger["namespace"] == GUEST
    assert trigger["name"] == name
    assert trigger["version"] == "0.0.1"
    assert trigger["publish"] is False
    assert trigger["limits"] == {}
    assert trigger["parameters"] == [{"key": "p", "value": "v"}]
    assert (await client.get(f"{NS}/triggers/{name}")).json()["parameters"] == trigger["parameters"]
    # When created again / Then 409
    assert_error(await put_trigger(client, name), 409, EXISTS)
    # When updated / Then version bumped, annotations merged, parameters kept
    r = await put_trigger(
        client, name, {"annotations": [{"key": "x", "value": 1}]}, overwrite="true"
    )
    assert r.json()["version"] == "0.0.2"
    assert annotation(r.json(), "x") == 1
    assert r.json()["parameters"] == [{"key": "p", "value": "v"}]
    # And listed and counted
    listed = (await client.get(f"{NS}/triggers", params={"limit": "0"})).json()
    assert name in {t["name"] for t in listed}
    count = (await client.get(f"{NS}/triggers", params={"count": "true"})).json()
    assert set(count) == {"triggers"}
    assert count["triggers"] >= 1
    # When deleted / Then the answer is the trigger and it is gone
    r = await client.delete(f"{NS}/triggers/{name}")
    assert r.status_code == 200
    assert r.json()["name"] == name
    assert_error(await client.get(f"{NS}/triggers/{name}"), 404, NOT_FOUND)


async def test_trigger_validation(client: httpx.AsyncClient, unique: Unique) -> None:
    assert_error(
        await put_trigger(client, "bad$name"),
        400,
        "The name of the entity contains illegal characters.",
    )
    name = unique("badtrig")
    r = await put_trigger(client, name, {"parameters": "nope"})
    assert assert_error(r, 400).startswith("The request content was malformed")
    assert_error(await client.get(f"{NS}/triggers/{name}"), 404, NOT_FOUND)


# -- rules --------------------------------------------------------------------------------


async def test_rule_needs_an_existing_trigger_and_action(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given only an action, and only a trigger
    t, a = unique("t"), unique("a")
    await client.put(f"{NS}/actions/{a}", json=node_action())
    rule = unique("r")
    # When a rule names a missing trigger / Then 400 with its full name
    r = await put_rule(client, rule, {"trigger": f"/_/{t}", "action": f"/_/{a}"})
    assert_error(r, 400, f"trigger /{GUEST}/{t} does not exist")
    # When it names a missing action / Then 400 likewise
    await put_trigger(client, t)
    r = await put_rule(client, rule, {"trigger": f"/_/{t}", "action": f"/_/{unique('none')}"})
    assert_error(r, 400, f"action /{GUEST}/{unique('none')} does not exist")
    # And no rule was written, the trigger has no rules
    assert_error(await client.get(f"{NS}/rules/{rule}"), 404, NOT_FOUND)
    assert not (await client.get(f"{NS}/triggers/{t}")).json().get("rules")


async def test_rule_lifecycle(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a trigger and an action
    t, a = await trigger_and_action(client, unique)
    rule = unique("rule")
    # When a rule connects them
    r = await put_rule(client, rule, {"trigger": f"/_/{t}", "action": f"/_/{a}"})
    # Then it is created active, with reduced paths
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["namespace"] == GUEST
    assert created["name"] == rule
    assert created["status"] == "active"
    assert created["trigger"] == {"name": t, "path": GUEST}
    assert created["action"] == {"name": a, "path": GUEST}
    assert created["version"] == "0.0.1"
    # And GET shows it active
    got = (await client.get(f"{NS}/rules/{rule}")).json()
    assert got["status"] == "active"
    # And the trigger lists it in its rules map
    trigger = (await client.get(f"{NS}/triggers/{t}")).json()
    assert trigger["rules"] == {
        f"{GUEST}/{rule}": {"action": {"name": a, "path": GUEST}, "status": "active"}
    }
    # When created again without overwrite / Then 409
    assert_error(
        await put_rule(client, rule, {"trigger": f"/_/{t}", "action": f"/_/{a}"}), 409, EXISTS
    )

    # When it is disabled / Then 200 with OpenWhisk's plain-text body "OK" (what pekko-http
    # sends for a bare status), and that is idempotent
    for _ in range(2):
        r = await client.post(f"{NS}/rules/{rule}", json={"status": "inactive"})
        assert r.status_code == 200
        assert r.content == b"OK"
        assert r.headers["content-type"] == "text/plain; charset=UTF-8"
        assert (await client.get(f"{NS}/rules/{rule}")).json()["status"] == "inactive"
        rules = (await client.get(f"{NS}/triggers/{t}")).json()["rules"]
        assert rules[f"{GUEST}/{rule}"]["status"] == "inactive"
    # When it is enabled again / Then active
    r = await client.post(f"{NS}/rules/{rule}", json={"status": "active"})
    assert r.status_code == 200 and r.text == "OK"
    assert (await client.get(f"{NS}/rules/{rule}")).json()["status"] == "active"

    # And it is listed and counted
    listed = (await client.get(f"{NS}/rules", params={"limit": "0"})).json()
    entry = next(x for x in listed if x["name"] == rule)
    assert entry["status"] == "active"
    count = (await client.get(f"{NS}/rules", params={"count": "true"})).json()
    assert set(count) == {"rules"}

    # When it is deleted / Then the answer names it, and the trigger no longer has it
    r = await client.delete(f"{NS}/rules/{rule}")
    assert r.status_code == 200
    assert r.json()["name"] == rule
    assert_error(await client.get(f"{NS}/rules/{rule}"), 404, NOT_FOUND)
    assert f"{GUEST}/{rule}" not in (
        (await client.get(f"{NS}/triggers/{t}")).json().get("rules") or {}
    )


async def test_rule_to_an_action_in_a_package(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a trigger and an action inside a package
    t, pkg, rule = unique("t"), unique("pkg"), unique("r")
    await put_trigger(client, t)
    await client.put(f"{NS}/packages/{pkg}", json={})
    await client.put(f"{NS}/actions/{pkg}/a", json=node_action())
    # When a rule names the action by its full name / Then the path includes the package
    r = await put_rule(client, rule, {"trigger": f"/{GUEST}/{t}", "action": f"/{GUEST}/{pkg}/a"})
    assert r.status_code == 200, r.text
    assert r.json()["action"] == {"name": "a", "path": f"{GUEST}/{pkg}"}
    rules = (await client.get(f"{NS}/triggers/{t}")).json()["rules"]
    assert rules[f"{GUEST}/{rule}"]["action"] == {"name": "a", "path": f"{GUEST}/{pkg}"}


async def test_rule_status_validation(client: httpx.AsyncClient, unique: Unique) -> None:
    t, a = await trigger_and_action(client, unique)
    rule = unique("r")
    await put_rule(client, rule, {"trigger": f"/_/{t}", "action": f"/_/{a}"})
    # When the status is neither active nor inactive / Then 400 and the rule stays active
    r = await client.post(f"{NS}/rules/{rule}", json={"status": "paused"})
    assert_error(r, 400)
    assert (await client.get(f"{NS}/rules/{rule}")).json()["status"] == "active"
    # When the rule does not exist / Then 404
    r = await client.post(f"{NS}/rules/{unique('none')}", json={"status": "inactive"})
    assert_error(r, 404)
