"""The built-in alarms provider firing triggers, driven by a fake clock: one fire per
tick (also with two controllers), missed ticks, ``once`` and ``stopDate`` endings, pause,
and alarms whose trigger is gone. Alarms are created through the provider's lifecycle
(the feed actions' own API tests are in ``test_api_feeds.py``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from apisupport import GUEST, NOT_FOUND, NS, assert_error, get_activation, node_action

from squall.cli.standalone import Standalone
from squall.controller.auth import Identity
from squall.errors import NotFound
from squall.feeds.provider import MISFIRE_GRACE_MS, AlarmsProvider

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
ECHO = "function main(p) { return p; }"
MINUTE = 60_000
T0 = 4_102_444_800_000  # 2100-01-01T00:00:00Z: far from the platform's own real-time ticks


class FakeClock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


async def feed_trigger(client: httpx.AsyncClient, name: str, feed_name: str) -> None:
    body = {"annotations": [{"key": "feed", "value": f"/whisk.system/alarms/{feed_name}"}]}
    assert (await client.put(f"{NS}/triggers/{name}", json=body)).status_code == 200


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def provider(system: Standalone, clock: FakeClock) -> AsyncIterator[AlarmsProvider]:
    """A second provider on the platform's controller and store, moved by ``clock``: its
    loop is not started, tests call ``run_due`` at the times they choose. (The platform's
    own provider never sees these ticks as due: they are in the year 2100.)

    Every alarm due by then is removed afterwards, so that the next test's ``run_due``
    counts its own ticks only."""
    yield AlarmsProvider(system.controller, system.store.schedules, clock=clock)
    for schedule in await system.store.schedules.due(T0 + 365 * 24 * 60 * MINUTE, 10_000):
        await system.store.schedules.delete(schedule.namespace, schedule.trigger)


@pytest.fixture
async def guest(system: Standalone) -> Identity:
    subject = await system.store.auth.get_subject(GUEST)
    return Identity(GUEST, subject.uuid)


async def wired(client: httpx.AsyncClient, unique: Unique, feed_name: str) -> tuple[str, str, str]:
    """A feed trigger with a rule to an echo action: (trigger, rule, action)."""
    t, r_, a = unique("t"), unique("r"), unique("a")
    await feed_trigger(client, t, feed_name)
    assert (await client.put(f"{NS}/actions/{a}", json=node_action(ECHO))).status_code == 200
    rule = {"trigger": f"/_/{t}", "action": f"/_/{a}"}
    assert (await client.put(f"{NS}/rules/{r_}", json=rule)).status_code == 200
    return t, r_, a


async def fires(client: httpx.AsyncClient, trigger: str) -> list[dict[str, Any]]:
    r = await client.get(f"{NS}/activations", params={"name": trigger, "docs": "true"})
    records: list[dict[str, Any]] = r.json()
    return records


async def test_interval_fires_once_per_tick(
    client: httpx.AsyncClient,
    system: Standalone,
    provider: AlarmsProvider,
    clock: FakeClock,
    guest: Identity,
    unique: Unique,
) -> None:
    # Given an interval of one minute from T0 + 1 min, with a payload
    t, _, a = await wired(client, unique, "interval")
    args = {
        "lifecycleEvent": "CREATE",
        "triggerName": f"/{GUEST}/{t}",
        "authKey": system.guest_auth,
        "minutes": 1,
        "startDate": T0 + MINUTE,
        "trigger_payload": {"beat": True},
    }
    await provider.lifecycle.handle(guest, "interval", args)
    # When the clock is before the first tick / Then nothing fires
    assert await provider.run_due(T0 + MINUTE - 1) == 0
    # When it reaches the tick / Then the trigger fires once, running the rule's action
    assert await provider.run_due(T0 + MINUTE) == 1
    assert await provider.run_due(T0 + MINUTE + 10) == 0
    [record] = await fires(client, t)
    assert record["response"]["result"] == {"beat": True}
    ran = await get_activation(client, json.loads(record["logs"][0])["activationId"])
    assert ran["name"] == a and ran["response"]["result"] == {"beat": True}
    # And the next tick is a minute later
    schedule = await system.store.schedules.get(GUEST, t)
    assert schedule.due == T0 + 2 * MINUTE
    assert await provider.run_due(T0 + 2 * MINUTE + 5) == 1
    assert len(await fires(client, t)) == 2


async def test_two_controllers_fire_a_tick_once(
    client: httpx.AsyncClient,
    system: Standalone,
    provider: AlarmsProvider,
    clock: FakeClock,
    guest: Identity,
    unique: Unique,
) -> None:
    # Given an alarm due, and a second controller's provider on the same store
    t, _, _ = await wired(client, unique, "alarm")
    args = {"lifecycleEvent": "CREATE", "triggerName": t, "authKey": system.guest_auth}
    await provider.lifecycle.handle(guest, "alarm", {**args, "cron": "*/10 * * * * *"})
    second = AlarmsProvider(system.controller, system.store.schedules, clock=clock)
    # When both handle the same tick at the same time / Then exactly one fires it
    fired = await asyncio.gather(provider.run_due(T0 + 10_000), second.run_due(T0 + 10_000))
    assert sorted(fired) == [0, 1]
    assert (await system.store.schedules.get(GUEST, t)).due == T0 + 20_000
    assert len(await fires(client, t)) == 1
    # And a tick claimed by a controller that then died is not fired again
    schedule = await system.store.schedules.get(GUEST, t)
    state_id = schedule.body["id"]
    assert await system.store.schedules.claim(f"{GUEST}/{t}/{state_id}/{T0 + 20_000}", T0)
    assert await second.run_due(T0 + 20_000) == 0
    assert len(await fires(client, t)) == 1
    assert (await system.store.schedules.get(GUEST, t)).due == T0 + 30_000


async def test_missed_ticks_are_skipped_not_fired(
    client: httpx.AsyncClient,
    system: Standalone,
    provider: AlarmsProvider,
    guest: Identity,
    unique: Unique,
) -> None:
    # Given an alarm every minute whose tick passed long ago (the platform was down)
    t, _, _ = await wired(client, unique, "alarm")
    args = {"lifecycleEvent": "CREATE", "triggerName": t, "authKey": system.guest_auth}
    await provider.lifecycle.handle(guest, "alarm", {**args, "cron": "* * * * *"})
    late = T0 + MINUTE + MISFIRE_GRACE_MS + 30_000
    # When the provider runs / Then nothing fires and the next tick is the next minute
    assert await provider.run_due(late) == 0
    assert await fires(client, t) == []
    assert (await system.store.schedules.get(GUEST, t)).due == T0 + 3 * MINUTE
    # But a tick a little late still fires, once, without a burst of catch-ups
    assert await provider.run_due(T0 + 3 * MINUTE + 20_000) == 1
    assert (await system.store.schedules.get(GUEST, t)).due == T0 + 4 * MINUTE


async def test_once_deletes_trigger_and_rules_after_firing(
    client: httpx.AsyncClient,
    system: Standalone,
    provider: AlarmsProvider,
    guest: Identity,
    unique: Unique,
) -> None:
    t, r_, _ = await wired(client, unique, "once")
    args = {"lifecycleEvent": "CREATE", "triggerName": t, "authKey": system.guest_auth}
    await provider.lifecycle.handle(
        guest, "once", {**args, "date": T0 + 5000, "deleteAfterFire": "rules"}
    )
    assert await provider.run_due(T0 + 5000) == 1
    assert len(await fires(client, t)) == 1
    # Then the trigger, its rule and the schedule are gone
    assert_error(await client.get(f"{NS}/triggers/{t}"), 404, NOT_FOUND)
    assert_error(await client.get(f"{NS}/rules/{r_}"), 404, NOT_FOUND)
    with pytest.raises(NotFound):
        await system.store.schedules.get(GUEST, t)


async def test_once_without_delete_is_disabled_after_firing(
    client: httpx.AsyncClient,
    system: Standalone,
    provider: AlarmsProvider,
    guest: Identity,
    unique: Unique,
) -> None:
    t, _, _ = await wired(client, unique, "once")
    args = {"lifecycleEvent": "CREATE", "triggerName": t, "authKey": system.guest_auth}
    await provider.lifecycle.handle(guest, "once", {**args, "date": T0 + 5000})
    assert await provider.run_due(T0 + 6000) == 1
    read = await provider.lifecycle.handle(guest, "once", {**args, "lifecycleEvent": "READ"})
    assert read["status"]["active"] is False
    assert read["status"]["reason"] == {
        "kind": "AUTO",
        "message": "Automatically disabled after firing once",
    }
    assert (await client.get(f"{NS}/triggers/{t}")).status_code == 200
    assert await provider.run_due(T0 + 10**8) == 0


async def test_stop_date_disables_after_the_last_tick(
    client: httpx.AsyncClient,
    system: Standalone,
    provider: AlarmsProvider,
    guest: Identity,
    unique: Unique,
) -> None:
    t, _, _ = await wired(client, unique, "interval")
    args = {
        "lifecycleEvent": "CREATE",
        "triggerName": t,
        "authKey": system.guest_auth,
        "minutes": 1,
        "startDate": T0 + MINUTE,
        "stopDate": T0 + 2 * MINUTE,
    }
    await provider.lifecycle.handle(guest, "interval", args)
    assert await provider.run_due(T0 + MINUTE) == 1
    assert await provider.run_due(T0 + 2 * MINUTE) == 1
    read = await provider.lifecycle.handle(guest, "interval", {**args, "lifecycleEvent": "READ"})
    assert read["status"]["active"] is False
    assert read["status"]["reason"]["message"] == (
        "Automatically disabled after firing last scheduled interval trigger"
    )
    assert await provider.run_due(T0 + 3 * MINUTE) == 0
    assert len(await fires(client, t)) == 2


async def test_paused_alarms_do_not_fire_and_deleted_triggers_lose_their_alarm(
    client: httpx.AsyncClient,
    system: Standalone,
    provider: AlarmsProvider,
    guest: Identity,
    unique: Unique,
) -> None:
    t, _, _ = await wired(client, unique, "alarm")
    args = {"lifecycleEvent": "CREATE", "triggerName": t, "authKey": system.guest_auth}
    await provider.lifecycle.handle(guest, "alarm", {**args, "cron": "* * * * *"})
    # When paused / Then its tick does not fire
    await provider.lifecycle.handle(guest, "alarm", {**args, "lifecycleEvent": "PAUSE"})
    assert await provider.run_due(T0 + MINUTE) == 0
    # When unpaused / Then it resumes from the next tick
    await provider.lifecycle.handle(guest, "alarm", {**args, "lifecycleEvent": "UNPAUSE"})
    assert (await system.store.schedules.get(GUEST, t)).due == T0 + MINUTE
    # When the trigger is deleted without the feed / Then the tick removes the alarm
    assert (await client.delete(f"{NS}/triggers/{t}")).status_code == 200
    assert await provider.run_due(T0 + MINUTE) == 0
    with pytest.raises(NotFound):
        await system.store.schedules.get(GUEST, t)


async def test_recreating_a_feed_replaces_its_alarm(
    client: httpx.AsyncClient,
    system: Standalone,
    provider: AlarmsProvider,
    guest: Identity,
    unique: Unique,
) -> None:
    t, _, _ = await wired(client, unique, "interval")
    args = {"lifecycleEvent": "CREATE", "triggerName": t, "authKey": system.guest_auth}
    await provider.lifecycle.handle(guest, "interval", {**args, "minutes": 1})
    first = await system.store.schedules.get(GUEST, t)
    await provider.lifecycle.handle(guest, "interval", {**args, "minutes": 7})
    second = await system.store.schedules.get(GUEST, t)
    assert second.body["alarm"]["minutes"] == 7
    assert second.body["id"] != first.body["id"]
