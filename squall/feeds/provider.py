"""The built-in alarms provider: fires triggers when their alarm's tick is due.

One :class:`AlarmsProvider` runs in every controller (standalone has one). Its loop
sleeps until the earliest ``due`` in the schedule store — or at most ``poll_s``, so that
schedules written by another controller are seen — and then handles every due schedule:

1. A tick more than :data:`MISFIRE_GRACE_MS` late (the platform was down, or the alarm
   paused) is skipped, not fired: after downtime an alarm resumes with its next tick and
   at most one late tick, never a burst of missed ones.
2. Otherwise the tick is *claimed* in the store under ``ns/trigger/alarm-id/tick``; the
   claim is atomic across processes, so of several controllers exactly one fires it.
   A controller that dies between claim and fire loses that tick (at most once).
3. The winner fires the trigger through :func:`squall.controller.triggers.fire_trigger`
   as the trigger's namespace (its throttles apply), with the alarm's payload.
4. Whoever saw the tick advances the schedule to the next tick after both the tick and
   now, with a compare-and-set on its revision: a concurrent change (a lifecycle event,
   another controller) wins, and the next round re-reads. A ``once`` alarm then ends as
   ``deleteAfterFire`` says (delete the trigger, or the trigger and its rules) or is
   disabled; an alarm past its ``stopDate`` is disabled, with OpenWhisk's reasons.
5. A trigger or namespace that no longer exists takes its schedule with it.

Because the schedule (with its next ``due``) and the claims live in the store, a
restarted ``squall standalone`` carries on where it stopped, and no tick fires twice.
Concurrency: the loop is one task; lifecycle events run in request tasks and only wake
it (``Lifecycle.changed``). Everything stays on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from squall.controller.auth import Identity
from squall.controller.core import Controller
from squall.controller.http import new_transaction_id
from squall.controller.triggers import fire_trigger
from squall.entities.names import EntityPath
from squall.entities.rule import Rule
from squall.entities.trigger import Trigger
from squall.errors import Conflict, NotFound, SquallError
from squall.feeds.actions import FeedActions, install
from squall.feeds.alarm import INTERVAL, ONCE
from squall.feeds.lifecycle import AlarmState, Lifecycle
from squall.store.contracts import Schedule, ScheduleStore

log = logging.getLogger("squall.feeds.alarms")

# A tick later than this is skipped rather than fired late.
MISFIRE_GRACE_MS = 60_000
# Claims older than this are forgotten; a tick that old is never fired (it is skipped).
CLAIM_RETENTION_MS = 3_600_000
PRUNE_EVERY_MS = 600_000
BATCH = 100
DEFAULT_POLL_S = 1.0

# What became of a tick: fired here, fired by another controller (its claim was taken),
# skipped, or its trigger or namespace is gone.
FIRED, TAKEN, MISSED, GONE = "fired", "taken", "missed", "gone"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def auto_reason(message: str, status_code: int | None = None) -> dict[str, object]:
    reason: dict[str, object] = {"kind": "AUTO", "message": message}
    if status_code is not None:
        reason["statusCode"] = status_code
    return reason


class AlarmsProvider:
    """Installs ``/whisk.system/alarms``, runs its feed actions, and fires due ticks."""

    def __init__(
        self,
        ctl: Controller,
        schedules: ScheduleStore,
        *,
        min_interval_s: float = 60.0,
        clock: Callable[[], int] = wall_clock_ms,
        poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        self._ctl = ctl
        self._schedules = schedules
        self._clock = clock
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0
        self.lifecycle = Lifecycle(ctl, schedules, min_interval_s, clock, self._wake.set)
        self.actions = FeedActions(ctl, self.lifecycle)

    async def start(self) -> None:
        """Install the package and start ticking. (The composition root hands
        :attr:`actions` to the activator, as its built-in actions.)"""
        await install(self._ctl.catalog)
        self._task = asyncio.create_task(self._run(), name="squall-alarms")

    async def close(self) -> None:
        """Stop ticking; a round in progress finishes first. Idempotent."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._closing:
            # Cleared before reading the store: a change made from here on wakes us.
            self._wake.clear()
            delay = self._poll_s
            try:
                await self.run_due(self._clock())
                due = await self._schedules.next_due()
                if due is not None:
                    delay = min(delay, max(0.0, (due - self._clock()) / 1000))
            except Exception:
                log.exception("alarms: a round failed; retrying in %s s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def run_due(self, now: int) -> int:
        """Handle the schedules due at ``now`` (up to :data:`BATCH`, earliest first; the
        loop comes straight back for more); how many ticks this controller fired."""
        fired = 0
        for schedule in await self._schedules.due(now, BATCH):
            fired += await self._handle(schedule, now) == FIRED
        if now - self._pruned_at >= PRUNE_EVERY_MS:
            self._pruned_at = now
            await self._schedules.prune(now - CLAIM_RETENTION_MS)
        return fired

    async def _handle(self, schedule: Schedule, now: int) -> str:
        state = AlarmState.from_body(schedule.body)
        tick = schedule.due
        assert tick is not None
        ns, name = schedule.namespace, schedule.trigger
        outcome = MISSED
        if now - tick <= MISFIRE_GRACE_MS and state.status.get("active"):
            if await self._schedules.claim(f"{ns}/{name}/{state.id}/{tick}", tick):
                outcome = await self._fire(ns, name, state)
            else:
                outcome = TAKEN  # by another controller, or by us before a crash
        if outcome == GONE:
            with contextlib.suppress(NotFound, Conflict):
                await self._schedules.delete(ns, name, schedule.rev)
            return GONE
        alarm = state.alarm
        next_due = alarm.next_tick(max(tick, now))
        if alarm.feed == ONCE:
            next_due = None
            fired = outcome in (FIRED, TAKEN)
            if fired and alarm.delete_after_fire in ("true", "rules"):
                await self._delete_trigger(ns, name, alarm.delete_after_fire == "rules")
                with contextlib.suppress(NotFound, Conflict):
                    await self._schedules.delete(ns, name, schedule.rev)
                return outcome
            message = (
                "Automatically disabled after firing once"
                if fired
                else "Automatically disabled after receiving error on trigger "
                "initialization: the fire once date has expired"
            )
            state = state.with_status(False, now, auto_reason(message))
        elif next_due is None:
            kind = "interval" if alarm.feed == INTERVAL else "cron"
            message = f"Automatically disabled after firing last scheduled {kind} trigger"
            state = state.with_status(False, now, auto_reason(message))
        with contextlib.suppress(Conflict):  # changed meanwhile: the next round re-reads
            await self._schedules.put(ns, name, state.to_body(), next_due, schedule.rev)
        return outcome

    async def _fire(self, namespace: str, name: str, state: AlarmState) -> str:
        txid = new_transaction_id()
        try:
            subject = await self._ctl.auth_store.get_subject(namespace)
            identity = Identity(namespace, subject.uuid)
            path = EntityPath(namespace, "", name)
            activation_id = await fire_trigger(
                self._ctl, identity, path, dict(state.alarm.payload), txid=txid
            )
        except NotFound:
            log.info("alarms: /%s/%s no longer exists; its alarm is removed", namespace, name)
            return GONE
        except SquallError as exc:
            # Throttled or failing: this tick is lost, the next one is tried (OpenWhisk's
            # provider also keeps a trigger that answered 429 or 5xx).
            log.warning("alarms: firing /%s/%s failed [txid %s]: %s", namespace, name, txid, exc)
            return FIRED
        log.debug("alarms: fired /%s/%s: %s [txid %s]", namespace, name, activation_id, txid)
        return FIRED

    async def _delete_trigger(self, namespace: str, name: str, with_rules: bool) -> None:
        """``deleteAfterFire``: the trigger goes, and with ``rules`` its rules too."""
        catalog = self._ctl.catalog
        try:
            trigger = await catalog.get(Trigger, EntityPath(namespace, "", name))
        except NotFound:
            return
        if with_rules:
            for key in trigger.rules:
                rule_ns, _, rule_name = key.partition("/")
                if rule_ns != namespace:
                    continue
                with contextlib.suppress(NotFound, Conflict):
                    await catalog.delete(
                        await catalog.get(Rule, EntityPath(namespace, "", rule_name))
                    )
        with contextlib.suppress(NotFound, Conflict):
            await catalog.delete(trigger)
