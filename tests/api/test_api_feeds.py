"""The built-in ``/whisk.system/alarms`` package and its feed actions' lifecycle events
through the invoke API, as ``wsk`` and the npm client call them (the provider's ticks are
in ``test_api_alarms.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from apisupport import (
    BASE_URL,
    FORBIDDEN,
    GUEST,
    NS,
    annotation,
    assert_error,
    get_activation,
    node_action,
)

from squall.cli.standalone import Standalone
from squall.errors import Conflict

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
SYSTEM = "/api/v1/namespaces/whisk.system"
# OpenWhisk's alarms feed, word for word (not Squall's constant: a test comparing the
# message with itself would pass whatever it says).
AUTH_FAILED = "Trigger authentication request failed."
ECHO = "function main(p) { return p; }"


async def feed(
    client: httpx.AsyncClient,
    auth: str,
    feed_name: str,
    event: str,
    trigger: str,
    *,
    via: str = f"{SYSTEM}/actions/alarms",
    **params: Any,
) -> httpx.Response:
    """Invoke a feed action blocking, as the npm client's ``feeds`` API does."""
    body = {"lifecycleEvent": event, "triggerName": f"/_/{trigger}", "authKey": auth, **params}
    return await client.post(f"{via}/{feed_name}", params={"blocking": "true"}, json=body)


def result(r: httpx.Response) -> Any:
    return r.json()["response"]["result"]


async def feed_trigger(client: httpx.AsyncClient, name: str, feed_name: str = "interval") -> None:
    body = {"annotations": [{"key": "feed", "value": f"/whisk.system/alarms/{feed_name}"}]}
    assert (await client.put(f"{NS}/triggers/{name}", json=body)).status_code == 200


async def test_the_alarms_package_is_published_with_three_feeds(
    client: httpx.AsyncClient,
) -> None:
    # When a user reads /whisk.system/alarms
    r = await client.get(f"{SYSTEM}/packages/alarms")
    # Then it is published and lists three feeds and no plain actions
    assert r.status_code == 200, r.text
    package = r.json()
    assert package["publish"] is True
    assert annotation(package, "description") == "Alarms and periodic utility"
    assert sorted(f["name"] for f in package["feeds"]) == ["alarm", "interval", "once"]
    assert package["actions"] == []
    # And each feed is a built-in action marked as a feed
    action = (await client.get(f"{SYSTEM}/actions/alarms/interval")).json()
    assert action["exec"]["kind"] == "builtin"
    assert annotation(action, "feed") is True
    # And nobody but the system may change it
    r = await client.put(f"{SYSTEM}/actions/alarms/interval", json=node_action(ECHO))
    assert_error(r, 403, FORBIDDEN)
    # And nobody may create an action of that kind
    r = await client.put(f"{NS}/actions/mine", json={"exec": {"kind": "builtin", "code": ""}})
    assert r.status_code == 400


async def test_interval_feed_lifecycle(
    client: httpx.AsyncClient, system: Standalone, unique: Unique
) -> None:
    auth = system.guest_auth
    t = unique("every")
    await feed_trigger(client, t)
    # When the feed is created
    r = await feed(client, auth, "interval", "CREATE", t, minutes=2, trigger_payload={"a": 1})
    # Then the blocking invoke answers a successful record of the feed action
    assert r.status_code == 200, r.text
    record = r.json()
    assert result(r) == {"status": "success"}
    assert record["name"] == "interval" and record["namespace"] == GUEST
    assert annotation(record, "path") == "whisk.system/alarms/interval"
    assert annotation(record, "kind") == "builtin"
    # And it is an activation of the caller like any other
    assert (await client.get(f"{NS}/activations/{record['activationId']}")).status_code == 200
    # When it is read / Then its configuration and status, OpenWhisk's shape
    r = await feed(client, auth, "interval", "READ", t)
    read = result(r)
    assert read["config"]["name"] == t and read["config"]["namespace"] == GUEST
    assert read["config"]["payload"] == {"a": 1}
    assert read["config"]["minutes"] == 2
    assert isinstance(read["config"]["startDate"], int)  # 30 s after creation
    assert read["status"]["active"] is True
    assert read["status"]["dateChangedISO"].endswith("Z")
    assert "reason" not in read["status"]
    # When updated / Then the new interval shows
    assert result(await feed(client, auth, "interval", "UPDATE", t, minutes=5)) == {
        "status": "success"
    }
    assert result(await feed(client, auth, "interval", "READ", t))["config"]["minutes"] == 5
    # When paused / Then inactive with a reason; when unpaused / Then active again
    assert result(await feed(client, auth, "interval", "PAUSE", t)) == {"status": "success"}
    status = result(await feed(client, auth, "interval", "READ", t))["status"]
    assert status["active"] is False and status["reason"]["kind"] == "USER"
    assert result(await feed(client, auth, "interval", "UNPAUSE", t)) == {"status": "success"}
    assert result(await feed(client, auth, "interval", "READ", t))["status"]["active"] is True
    # When deleted / Then reading is an error, and deleting again is fine
    assert result(await feed(client, auth, "interval", "DELETE", t)) == {"status": "success"}
    r = await feed(client, auth, "interval", "READ", t)
    assert r.status_code == 502
    assert result(r) == {"error": f"could not find trigger /{GUEST}/{t} in the database"}
    assert result(await feed(client, auth, "interval", "DELETE", t)) == {"status": "success"}


async def test_feed_errors(client: httpx.AsyncClient, system: Standalone, unique: Unique) -> None:
    auth = system.guest_auth
    t = unique("bad")
    await feed_trigger(client, t, "alarm")

    async def error(r: httpx.Response) -> str:
        assert r.status_code == 502, r.text
        assert r.json()["response"]["status"] == "application error"
        message: str = result(r)["error"]
        return message

    assert (
        await error(await feed(client, auth, "alarm", "SHOUT", t)) == "unsupported lifecycleEvent"
    )
    r = await client.post(
        f"{SYSTEM}/actions/alarms/alarm",
        params={"blocking": "true"},
        json={"lifecycleEvent": "CREATE", "triggerName": f"/_/{t}"},
    )
    assert await error(r) == "no authKey parameter was provided"
    uuid_, _, _ = auth.partition(":")
    wrong = f"{uuid_}:{'0' * 64}"
    assert await error(await feed(client, wrong, "alarm", "CREATE", t, cron="* * * * *")) == (
        AUTH_FAILED
    )
    missing = unique("missing")
    assert await error(await feed(client, auth, "alarm", "CREATE", missing, cron="* * * * *")) == (
        AUTH_FAILED
    )
    assert await error(await feed(client, auth, "alarm", "CREATE", t, cron="nope")) == (
        "cron pattern 'nope' is not valid"
    )
    assert await error(await feed(client, auth, "alarm", "READ", t)) == (
        f"could not find trigger /{GUEST}/{t} in the database"
    )
    # A non-blocking invoke is accepted and recorded like any other
    r = await client.post(
        f"{SYSTEM}/actions/alarms/alarm",
        json={"lifecycleEvent": "CREATE", "triggerName": f"/_/{t}", "authKey": auth},
    )
    assert r.status_code == 202
    record = await get_activation(client, r.json()["activationId"])
    assert record["response"]["result"] == {
        "error": "alarms trigger feed is missing the cron parameter"
    }


async def test_feed_through_a_binding(
    client: httpx.AsyncClient, system: Standalone, unique: Unique
) -> None:
    # Given a binding of /whisk.system/alarms in the guest's namespace
    binding, t = unique("myalarms"), unique("once")
    body = {"binding": {"namespace": "whisk.system", "name": "alarms"}}
    assert (await client.put(f"{NS}/packages/{binding}", json=body)).status_code == 200
    listed = (await client.get(f"{NS}/packages/{binding}")).json()
    assert sorted(f["name"] for f in listed["feeds"]) == ["alarm", "interval", "once"]
    await feed_trigger(client, t, "once")
    # When a feed is created through it / Then it works like the original
    r = await feed(
        client,
        system.guest_auth,
        "once",
        "CREATE",
        t,
        via=f"{NS}/actions/{binding}",
        date="2199-01-01T00:00:00Z",
    )
    assert result(r) == {"status": "success"}, r.text
    config = result(await feed(client, system.guest_auth, "once", "READ", t))["config"]
    assert config["date"] == "2199-01-01T00:00:00Z"


async def test_other_namespaces_feed_keys_do_not_work(
    client: httpx.AsyncClient, system: Standalone, unique: Unique
) -> None:
    # Given another namespace's key
    try:
        subject = await system.store.auth.create_subject("feeder")
    except Conflict:
        subject = await system.store.auth.create_subject("feeder", rotate=True)
    t = unique("t")
    await feed_trigger(client, t)
    # When the guest creates a feed for its trigger with that key / Then refused
    r = await feed(client, subject.auth, "interval", "CREATE", t, minutes=1)
    assert result(r) == {"error": AUTH_FAILED}
    # And the other namespace cannot create a feed for the guest's trigger either
    uuid, key = subject.auth.split(":", 1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, auth=(uuid, key)
    ) as other:
        body = {
            "lifecycleEvent": "CREATE",
            "triggerName": f"/{GUEST}/{t}",
            "authKey": subject.auth,
            "minutes": 1,
        }
        r = await other.post(
            f"{SYSTEM}/actions/alarms/interval", params={"blocking": "true"}, json=body
        )
        assert result(r) == {"error": AUTH_FAILED}


async def test_a_feed_action_as_a_sequence_step(
    client: httpx.AsyncClient, system: Standalone, unique: Unique
) -> None:
    # Given a sequence whose only step is the interval feed action
    seq, t = unique("feedseq"), unique("t")
    body = {"exec": {"kind": "sequence", "components": ["/whisk.system/alarms/interval"]}}
    assert (await client.put(f"{NS}/actions/{seq}", json=body)).status_code == 200
    await feed_trigger(client, t)
    # When it is invoked with a lifecycle event
    payload = {
        "lifecycleEvent": "CREATE",
        "triggerName": f"/_/{t}",
        "authKey": system.guest_auth,
        "minutes": 3,
    }
    r = await client.post(f"{NS}/actions/{seq}", params={"blocking": "true"}, json=payload)
    # Then the step ran in the controller like a direct invoke, recorded as a step
    assert r.status_code == 200, r.text
    assert result(r) == {"status": "success"}
    step = await get_activation(client, r.json()["logs"][0])
    assert step["name"] == "interval"
    assert step["cause"] == r.json()["activationId"]
    assert annotation(step, "causedBy") == "sequence"
    read = await feed(client, system.guest_auth, "interval", "READ", t)
    assert result(read)["config"]["minutes"] == 3
