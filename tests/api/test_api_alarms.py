"""The built-in alarms provider firing triggers, driven by a fake clock: one fire per
tick (also with two controllers), missed ticks, ``once`` and ``stopDate`` endings, pause,
and alarms whose trigger is gone. Alarms are created through the provider's lifecycle
(the feed actions' own API tests are in ``test_api_feeds.py``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from _clock import FakeClock
from apisupport import GUEST, NOT_FOUND, NS, assert_error, get_activation, node_action

from squall.cli.standalone import Standalone
from squall.controller.auth import Identity
from squall.errors import NotFound
from squall.feeds.provider import MISFIRE_GRACE_MS, AlarmsProvider
from squall.store.contracts import Schedule

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
ECHO = "function main(p) { return p; }"
MINUTE = 60_000
T0 = 4_102_444_800_000  # 2100-01-01T00:00:00Z: far from the platform's own real-time ticks


async def feed_trigger(client: httpx.AsyncClient, name: str, feed_name: str) -> None:
    body = {"annotations": [{"key": "feed", "value": f"/whisk.system/alarms/{feed_name}"}]}
    assert (await client.put(f"{NS}/triggers/{name}", json=body)).status_code == 200


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock(T0)


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


@dataclass(frozen=True)
class Alarm:
    feed: str
    trigger: str
    rule: str
    action: str
    #: The CREATE arguments; the other lifecycle events take the same ones.
    args: dict[str, Any]


@dataclass(frozen=True)
class Alarms:
    """Feed triggers, each with a rule to an echo action, whose alarms are created and
    changed through ``provider``'s lifecycle, as the feed actions would."""

    client: httpx.AsyncClient
    system: Standalone
    provider: AlarmsProvider
    guest: Identity
    unique: Unique

    async def create(self, feed: str, *, qualified: bool = False, **params: Any) -> Alarm:
        """A wired trigger and its ``feed`` alarm with ``params``; ``qualified`` names the
        trigger ``/namespace/name`` in the arguments."""
        t, r_, a = self.unique("t"), self.unique("r"), self.unique("a")
        await feed_trigger(self.client, t, feed)
        put = await self.client.put(f"{NS}/actions/{a}", json=node_action(ECHO))
        assert put.status_code == 200
        rule = {"trigger": f"/_/{t}", "action": f"/_/{a}"}
        assert (await self.client.put(f"{NS}/rules/{r_}", json=rule)).status_code == 200
        args = {
            "lifecycleEvent": "CREATE",
            "triggerName": f"/{GUEST}/{t}" if qualified else t,
            "authKey": self.system.guest_auth,
            **params,
        }
        await self.provider.lifecycle.handle(self.guest, feed, args)
        return Alarm(feed, t, r_, a, args)

    async def event(self, alarm: Alarm, event: str, **params: Any) -> dict[str, Any]:
        """The provider's answer to lifecycle ``event`` for ``alarm`` (``params`` added)."""
        args = {**alarm.args, "lifecycleEvent": event, **params}
        return await self.provider.lifecycle.handle(self.guest, alarm.feed, args)

    async def schedule(self, alarm: Alarm) -> Schedule:
        return await self.system.store.schedules.get(GUEST, alarm.trigger)

    async def fires(self, alarm: Alarm) -> list[dict[str, Any]]:
        """The trigger's activations (one a fire), newest first."""
        r = await self.client.get(
            f"{NS}/activations", params={"name": alarm.trigger, "docs": "true"}
        )
        records: list[dict[str, Any]] = r.json()
        return records


@pytest.fixture
async def alarms(
    client: httpx.AsyncClient,
    system: Standalone,
    provider: AlarmsProvider,
    guest: Identity,
    unique: Unique,
) -> Alarms:
    return Alarms(client, system, provider, guest, unique)


async def test_interval_fires_once_per_tick(alarms: Alarms) -> None:
    # Given an interval of one minute from T0 + 1 min, with a payload
    alarm = await alarms.create(
        "interval",
        qualified=True,
        minutes=1,
        startDate=T0 + MINUTE,
        trigger_payload={"beat": True},
    )
    provider = alarms.provider
    # When the clock is before the first tick / Then nothing fires
    assert await provider.run_due(T0 + MINUTE - 1) == 0
    # When it reaches the tick / Then the trigger fires once, running the rule's action
    assert await provider.run_due(T0 + MINUTE) == 1
    assert await provider.run_due(T0 + MINUTE + 10) == 0
    [record] = await alarms.fires(alarm)
    assert record["response"]["result"] == {"beat": True}
    ran = await get_activation(alarms.client, json.loads(record["logs"][0])["activationId"])
    assert ran["name"] == alarm.action and ran["response"]["result"] == {"beat": True}
    # And the next tick is a minute later
    assert (await alarms.schedule(alarm)).due == T0 + 2 * MINUTE
    assert await provider.run_due(T0 + 2 * MINUTE + 5) == 1
    assert len(await alarms.fires(alarm)) == 2


async def test_two_controllers_fire_a_tick_once(alarms: Alarms, clock: FakeClock) -> None:
    # Given an alarm due, and a second controller's provider on the same store
    alarm = await alarms.create("alarm", cron="*/10 * * * * *")
    schedules = alarms.system.store.schedules
    second = AlarmsProvider(alarms.system.controller, schedules, clock=clock)
    # When both handle the same tick at the same time / Then exactly one fires it
    fired = await asyncio.gather(alarms.provider.run_due(T0 + 10_000), second.run_due(T0 + 10_000))
    assert sorted(fired) == [0, 1]
    assert (await alarms.schedule(alarm)).due == T0 + 20_000
    assert len(await alarms.fires(alarm)) == 1
    # And a tick claimed by a controller that then died is not fired again
    state_id = (await alarms.schedule(alarm)).body["id"]
    assert await schedules.claim(f"{GUEST}/{alarm.trigger}/{state_id}/{T0 + 20_000}", T0)
    assert await second.run_due(T0 + 20_000) == 0
    assert len(await alarms.fires(alarm)) == 1
    assert (await alarms.schedule(alarm)).due == T0 + 30_000


async def test_missed_ticks_are_skipped_not_fired(alarms: Alarms) -> None:
    # Given an alarm every minute whose tick passed long ago (the platform was down)
    alarm = await alarms.create("alarm", cron="* * * * *")
    late = T0 + MINUTE + MISFIRE_GRACE_MS + 30_000
    # When the provider runs / Then nothing fires and the next tick is the next minute
    assert await alarms.provider.run_due(late) == 0
    assert await alarms.fires(alarm) == []
    assert (await alarms.schedule(alarm)).due == T0 + 3 * MINUTE
    # But a tick a little late still fires, once, without a burst of catch-ups
    assert await alarms.provider.run_due(T0 + 3 * MINUTE + 20_000) == 1
    assert (await alarms.schedule(alarm)).due == T0 + 4 * MINUTE


async def test_once_deletes_trigger_and_rules_after_firing(alarms: Alarms) -> None:
    # Given a one-off alarm that deletes its trigger and rules after firing
    alarm = await alarms.create("once", date=T0 + 5000, deleteAfterFire="rules")
    # When it fires
    assert await alarms.provider.run_due(T0 + 5000) == 1
    assert len(await alarms.fires(alarm)) == 1
    # Then the trigger, its rule and the schedule are gone
    assert_error(await alarms.client.get(f"{NS}/triggers/{alarm.trigger}"), 404, NOT_FOUND)
    assert_error(await alarms.client.get(f"{NS}/rules/{alarm.rule}"), 404, NOT_FOUND)
    with pytest.raises(NotFound):
        await alarms.schedule(alarm)


async def test_once_without_delete_is_disabled_after_firing(alarms: Alarms) -> None:
    # Given a one-off alarm / When it fires
    alarm = await alarms.create("once", date=T0 + 5000)
    assert await alarms.provider.run_due(T0 + 6000) == 1
    # Then it reads as disabled, its trigger stays, and it never fires again
    read = await alarms.event(alarm, "READ")
    assert read["status"]["active"] is False
    assert read["status"]["reason"] == {
        "kind": "AUTO",
        "message": "Automatically disabled after firing once",
    }
    assert (await alarms.client.get(f"{NS}/triggers/{alarm.trigger}")).status_code == 200
    assert await alarms.provider.run_due(T0 + 10**8) == 0


async def test_stop_date_disables_after_the_last_tick(alarms: Alarms) -> None:
    # Given an interval that stops after its second tick
    alarm = await alarms.create(
        "interval", minutes=1, startDate=T0 + MINUTE, stopDate=T0 + 2 * MINUTE
    )
    # When both ticks fire / Then it reads as disabled and fires no more
    assert await alarms.provider.run_due(T0 + MINUTE) == 1
    assert await alarms.provider.run_due(T0 + 2 * MINUTE) == 1
    read = await alarms.event(alarm, "READ")
    assert read["status"]["active"] is False
    assert read["status"]["reason"]["message"] == (
        "Automatically disabled after firing last scheduled interval trigger"
    )
    assert await alarms.provider.run_due(T0 + 3 * MINUTE) == 0
    assert len(await alarms.fires(alarm)) == 2


async def test_paused_alarms_do_not_fire_and_deleted_triggers_lose_their_alarm(
    alarms: Alarms,
) -> None:
    alarm = await alarms.create("alarm", cron="* * * * *")
    # When paused / Then its tick does not fire
    await alarms.event(alarm, "PAUSE")
    assert await alarms.provider.run_due(T0 + MINUTE) == 0
    # When unpaused / Then it resumes from the next tick
    await alarms.event(alarm, "UNPAUSE")
    assert (await alarms.schedule(alarm)).due == T0 + MINUTE
    # When the trigger is deleted without the feed / Then the tick removes the alarm
    assert (await alarms.client.delete(f"{NS}/triggers/{alarm.trigger}")).status_code == 200
    assert await alarms.provider.run_due(T0 + MINUTE) == 0
    with pytest.raises(NotFound):
        await alarms.schedule(alarm)


async def test_recreating_a_feed_replaces_its_alarm(alarms: Alarms) -> None:
    # Given an interval alarm
    alarm = await alarms.create("interval", minutes=1)
    first = await alarms.schedule(alarm)
    # When its feed is created again with other arguments
    await alarms.event(alarm, "CREATE", minutes=7)
    # Then the alarm is replaced (a new state id), not updated in place
    second = await alarms.schedule(alarm)
    assert second.body["alarm"]["minutes"] == 7
    assert second.body["id"] != first.body["id"]
