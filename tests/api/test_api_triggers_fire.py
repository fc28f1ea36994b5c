"""Firing triggers: rules run their actions, the trigger's record with one log line per
rule, 204 without active rules, and who may connect what with a rule."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from apisupport import (
    BASE_URL,
    FORBIDDEN,
    GUEST,
    NOT_FOUND,
    NS,
    assert_error,
    get_activation,
    node_action,
)

from squall.cli.standalone import Standalone
from squall.config import Settings
from squall.errors import Conflict

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
ECHO = "function main(p) { return p; }"
ID = r"[0-9a-f]{32}"


@pytest.fixture
async def other(system: Standalone) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a second namespace, ``elsewhere``, on the same platform."""
    try:
        subject = await system.store.auth.create_subject("elsewhere")
    except Conflict:  # the module's platform already has it
        subject = await system.store.auth.create_subject("elsewhere", rotate=True)
    uuid, key = subject.auth.split(":", 1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, auth=(uuid, key)
    ) as client:
        yield client


async def put(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.put(f"{NS}/{path}", json=body)
    assert r.status_code == 200, r.text
    created: dict[str, Any] = r.json()
    return created


async def rule(client: httpx.AsyncClient, name: str, trigger: str, action: str) -> None:
    await put(client, f"rules/{name}", {"trigger": f"/_/{trigger}", "action": f"/_/{action}"})


async def fire(client: httpx.AsyncClient, trigger: str, payload: Any = None) -> httpx.Response:
    if payload is None:
        return await client.post(f"{NS}/triggers/{trigger}")
    return await client.post(f"{NS}/triggers/{trigger}", json=payload)


async def fired_record(client: httpx.AsyncClient, r: httpx.Response) -> dict[str, Any]:
    """The trigger's record of an accepted fire (final at once: it is stored before 202)."""
    assert r.status_code == 202, r.text
    activation_id = r.json()["activationId"]
    assert r.headers["x-openwhisk-activation-id"] == activation_id
    got = await client.get(f"{NS}/activations/{activation_id}")
    assert got.status_code == 200, got.text
    record: dict[str, Any] = got.json()
    return record


async def count(client: httpx.AsyncClient, name: str) -> int:
    r = await client.get(f"{NS}/activations", params={"name": name, "count": "true"})
    n: int = r.json()["activations"]
    return n


async def test_fire_without_rules_is_204_and_records_nothing(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a trigger without rules
    t = unique("lonely")
    await put(client, f"triggers/{t}", {})
    # When it is fired / Then 204 with no body and no activation
    r = await fire(client, t, {"x": 1})
    assert r.status_code == 204
    assert r.content == b""
    assert "x-openwhisk-activation-id" not in r.headers
    assert await count(client, t) == 0


async def test_fire_with_one_rule(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a trigger with parameters, an action with a default, and a rule between them
    t, a, r_ = unique("t"), unique("a"), unique("r")
    params = [{"key": "source", "value": "trigger"}, {"key": "level", "value": "trigger"}]
    trigger = await put(client, f"triggers/{t}", {"parameters": params})
    await put(
        client, f"actions/{a}", node_action(ECHO, parameters=[{"key": "dflt", "value": "action"}])
    )
    await rule(client, r_, t, a)
    # When it is fired with a payload that overrides one trigger parameter
    record = await fired_record(client, await fire(client, t, {"level": "payload", "n": 1}))
    # Then the trigger's record has OpenWhisk's shape: the payload as fired, one log line
    assert record["name"] == t
    assert record["namespace"] == GUEST and record["subject"] == GUEST
    assert record["version"] == trigger["version"]
    assert record["response"] == {
        "status": "success",
        "success": True,
        "result": {"level": "payload", "n": 1},
    }
    assert record["annotations"] == []
    # And as OpenWhisk's: a trigger does not run, so there is no end and no duration
    assert "end" not in record and "duration" not in record
    assert isinstance(record["start"], int)
    assert len(record["logs"]) == 1
    line = record["logs"][0]
    action_id = json.loads(line)["activationId"]
    # And the line is compact JSON in OpenWhisk's key order
    assert line == (
        f'{{"statusCode":0,"success":true,"activationId":"{action_id}",'
        f'"rule":"{GUEST}/{r_}","action":"{GUEST}/{a}"}}'
    )
    # And the action ran with action defaults < trigger parameters < payload, caused by it
    ran = await get_activation(client, action_id)
    assert ran["name"] == a
    assert ran["cause"] == record["activationId"]
    assert ran["response"]["result"] == {
        "dflt": "action",
        "source": "trigger",
        "level": "payload",
        "n": 1,
    }


async def test_trigger_records_are_listed_without_end_duration_or_status_code(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a trigger with a rule to an action, fired once, and the action's run ended
    t, a = unique("listed-t"), unique("listed-a")
    await put(client, f"triggers/{t}", {})
    await put(client, f"actions/{a}", node_action(ECHO))
    await rule(client, unique("listed-r"), t, a)
    record = await fired_record(client, await fire(client, t))
    action_id = json.loads(record["logs"][0])["activationId"]
    await get_activation(client, action_id)
    # When the activations are listed (summaries, as OpenWhisk's view gives them)
    r = await client.get(f"{NS}/activations", params={"limit": 200})
    assert r.status_code == 200, r.text
    listed = {a_["activationId"]: a_ for a_ in r.json()}
    # Then the trigger's has no end, duration or statusCode (aio shows it as a trigger)
    summary = listed[record["activationId"]]
    assert summary["name"] == t
    assert not {"end", "duration", "statusCode"} & set(summary), summary
    # And the action's has all three
    ran = listed[action_id]
    assert ran["statusCode"] == 0 and ran["end"] >= ran["start"]
    assert ran["duration"] == ran["end"] - ran["start"]
    # And the full records (docs=true) show neither end nor statusCode for the trigger
    r = await client.get(f"{NS}/activations", params={"name": t, "docs": "true"})
    (full,) = r.json()
    assert "end" not in full and "duration" not in full
    assert full["response"] == {"status": "success", "success": True, "result": {}}


async def test_fire_with_several_rules_skips_inactive_ones(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a trigger with three rules to three actions, the second one disabled
    t = unique("multi")
    await put(client, f"triggers/{t}", {})
    names = [(unique(f"r{i}"), unique(f"a{i}")) for i in range(3)]
    for r_, a in names:
        await put(client, f"actions/{a}", node_action(ECHO))
        await rule(client, r_, t, a)
    r = await client.post(f"{NS}/rules/{names[1][0]}", json={"status": "inactive"})
    assert r.status_code == 200
    # When it is fired (without a body)
    record = await fired_record(client, await fire(client, t))
    # Then the result is {} and each rule has its line, in the order of the rules map
    assert record["response"]["result"] == {}
    lines = [json.loads(x) for x in record["logs"]]
    assert [x["rule"] for x in lines] == [f"{GUEST}/{r_}" for r_, _ in names]
    assert [x["action"] for x in lines] == [f"{GUEST}/{a}" for _, a in names]
    # And the active ones ran, the inactive one did not, with OpenWhisk's message
    for i in (0, 2):
        assert lines[i]["statusCode"] == 0 and lines[i]["success"] is True
        ran = await get_activation(client, lines[i]["activationId"])
        assert ran["name"] == names[i][1] and ran["response"]["success"] is True
    inactive_rule, inactive_action = names[1]
    assert lines[1] == {
        "statusCode": 1,
        "success": False,
        "error": f"Rule '{GUEST}/{inactive_rule}' is inactive, action "
        f"'{GUEST}/{inactive_action}' was not activated.",
        "rule": f"{GUEST}/{inactive_rule}",
        "action": f"{GUEST}/{inactive_action}",
    }
    assert list(json.loads(record["logs"][1])) == [
        "statusCode",
        "success",
        "error",
        "rule",
        "action",
    ]
    assert await count(client, inactive_action) == 0


async def test_fire_with_only_inactive_rules_is_204(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    t, a, r_ = unique("t"), unique("a"), unique("r")
    await put(client, f"triggers/{t}", {})
    await put(client, f"actions/{a}", node_action(ECHO))
    await rule(client, r_, t, a)
    assert (await client.post(f"{NS}/rules/{r_}", json={"status": "inactive"})).status_code == 200
    assert (await fire(client, t)).status_code == 204
    assert await count(client, t) == 0
    # And when the rule is enabled again the fire runs it
    assert (await client.post(f"{NS}/rules/{r_}", json={"status": "active"})).status_code == 200
    record = await fired_record(client, await fire(client, t))
    assert json.loads(record["logs"][0])["statusCode"] == 0


async def test_deleting_a_rule_detaches_it(client: httpx.AsyncClient, unique: Unique) -> None:
    t, a, r_ = unique("t"), unique("a"), unique("r")
    await put(client, f"triggers/{t}", {})
    await put(client, f"actions/{a}", node_action(ECHO))
    await rule(client, r_, t, a)
    assert (await client.delete(f"{NS}/rules/{r_}")).status_code == 200
    assert (await fire(client, t)).status_code == 204


async def test_failing_rules_are_logged_not_fatal(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a trigger whose first rule's action was deleted, whose second action has a
    # final parameter the trigger overrides, and whose third action is fine
    t = unique("mixed")
    await put(client, f"triggers/{t}", {"parameters": [{"key": "region", "value": "us"}]})
    gone, final, fine = unique("gone"), unique("final"), unique("fine")
    await put(client, f"actions/{gone}", node_action(ECHO))
    await put(
        client,
        f"actions/{final}",
        node_action(
            ECHO,
            parameters=[{"key": "region", "value": "eu"}],
            annotations=[{"key": "final", "value": True}],
        ),
    )
    await put(client, f"actions/{fine}", node_action(ECHO))
    for a in (gone, final, fine):
        await rule(client, unique(f"r-{a}"), t, a)
    assert (await client.delete(f"{NS}/actions/{gone}")).status_code == 200
    # When it is fired
    record = await fired_record(client, await fire(client, t, {}))
    lines = [json.loads(x) for x in record["logs"]]
    # Then the failures carry the invoke API's messages as application errors
    assert lines[0] == {
        "statusCode": 1,
        "success": False,
        "error": NOT_FOUND,
        "rule": f"{GUEST}/{unique(f'r-{gone}')}",
        "action": f"{GUEST}/{gone}",
    }
    assert lines[1]["statusCode"] == 1 and lines[1]["success"] is False
    assert lines[1]["error"] == (
        "Request defines parameters that are not allowed (e.g., reserved properties)."
    )
    # And the healthy rule still ran
    assert lines[2]["statusCode"] == 0
    ran = await get_activation(client, lines[2]["activationId"])
    assert ran["response"]["result"] == {"region": "us"}


async def test_fire_errors(
    client: httpx.AsyncClient, other: httpx.AsyncClient, unique: Unique
) -> None:
    t = unique("t")
    await put(client, f"triggers/{t}", {})
    # A missing trigger is 404
    assert_error(await fire(client, unique("none")), 404, NOT_FOUND)
    # A payload that is not an object is 400
    r = await client.post(f"{NS}/triggers/{t}", content=b"[1, 2]")
    assert_error(r, 400, "The request content was malformed:\nexpected a JSON object.")
    # Another namespace's trigger is 403, existing or not
    for name in (t, unique("none")):
        assert_error(
            await other.post(f"/api/v1/namespaces/{GUEST}/triggers/{name}"), 403, FORBIDDEN
        )


async def test_rules_across_namespaces(
    client: httpx.AsyncClient, other: httpx.AsyncClient, unique: Unique
) -> None:
    # Given the guest's private action, and a published package with an action
    private, pkg = unique("private"), unique("shared")
    await put(client, f"actions/{private}", node_action(ECHO))
    await put(
        client, f"packages/{pkg}", {"publish": True, "parameters": [{"key": "p", "value": 1}]}
    )
    await put(client, f"actions/{pkg}/echo", node_action(ECHO))
    # And another namespace with a trigger of its own
    t = unique("their")
    assert (await other.put(f"{NS}/triggers/{t}", json={})).status_code == 200
    # When it makes a rule to the guest's private action, or to one that does not exist,
    # Then 403 alike: existence does not leak
    for action in (private, unique("missing")):
        r = await other.put(
            f"{NS}/rules/{unique('bad')}", json={"trigger": t, "action": f"/{GUEST}/{action}"}
        )
        assert_error(r, 403, FORBIDDEN)
    # And a rule on the guest's trigger is 403 too
    guest_trigger = unique("guest-t")
    await put(client, f"triggers/{guest_trigger}", {})
    r = await other.put(
        f"{NS}/rules/{unique('bad')}",
        json={"trigger": f"/{GUEST}/{guest_trigger}", "action": f"/{GUEST}/{pkg}/echo"},
    )
    assert_error(r, 403, FORBIDDEN)
    # When it makes a rule to the action of the published package
    r_ = unique("ok")
    r = await other.put(f"{NS}/rules/{r_}", json={"trigger": t, "action": f"/{GUEST}/{pkg}/echo"})
    assert r.status_code == 200, r.text
    assert r.json()["action"] == {"name": "echo", "path": f"{GUEST}/{pkg}"}
    # Then firing its trigger runs that action in its own namespace, with the package's
    # parameters
    record = await fired_record(other, await other.post(f"{NS}/triggers/{t}", json={"q": 2}))
    line = json.loads(record["logs"][0])
    assert line["action"] == f"{GUEST}/{pkg}/echo"
    assert line["rule"] == f"elsewhere/{r_}"
    ran = await get_activation(other, line["activationId"])
    assert ran["namespace"] == "elsewhere"
    assert ran["response"]["result"] == {"p": 1, "q": 2}
    # And the guest sees none of it
    assert (await client.get(f"{NS}/activations/{record['activationId']}")).status_code == 404


async def test_rule_through_a_binding(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a package with an action and a binding of it with its own parameter
    pkg, binding, t, r_ = unique("pkg"), unique("bnd"), unique("t"), unique("r")
    await put(client, f"packages/{pkg}", {"parameters": [{"key": "p", "value": "package"}]})
    await put(client, f"actions/{pkg}/echo", node_action(ECHO))
    await put(
        client,
        f"packages/{binding}",
        {"binding": {"namespace": GUEST, "name": pkg}, "parameters": [{"key": "b", "value": 1}]},
    )
    await put(client, f"triggers/{t}", {})
    # When a rule names the action through the binding and the trigger fires
    await put(client, f"rules/{r_}", {"trigger": f"/_/{t}", "action": f"/_/{binding}/echo"})
    record = await fired_record(client, await fire(client, t, {}))
    # Then the action ran with package < binding parameters
    ran = await get_activation(client, json.loads(record["logs"][0])["activationId"])
    assert ran["response"]["result"] == {"p": "package", "b": 1}


async def test_fires_per_minute_throttle(tmp_path: Path) -> None:
    # Given a platform that allows 2 fires a minute
    system = await Standalone.start(Settings(home=tmp_path, fires_per_minute=2))
    system.controller.throttles.clock = lambda: 600.0  # one minute for the whole test
    uuid, key = system.guest_auth.split(":", 1)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, auth=(uuid, key)
        ) as client:
            await put(client, "triggers/t", {})
            # When it is fired three times in a minute / Then the third is 429
            for _ in range(2):
                assert (await fire(client, "t")).status_code == 204
            assert_error(
                await fire(client, "t"),
                429,
                "Too many requests in the last minute (count: 3, allowed: 2).",
            )
    finally:
        await system.close()
