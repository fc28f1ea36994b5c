"""The lifecycle events of an alarms feed action, against the schedule store.

A feed action is invoked with ``lifecycleEvent``, ``triggerName`` (``/ns/trigger``),
``authKey`` (the caller's ``uuid:key``) and the feed's parameters, by the ``wsk`` CLI or
the ``openwhisk`` client's ``feeds`` API. Each event answers ``{"status": "success"}``
(READ: the configuration and status) or raises :class:`~squall.feeds.alarm.FeedError`
with the message of OpenWhisk's alarms provider:

- ``CREATE`` checks the parameters and schedules the first tick; creating again replaces
  the schedule (OpenWhisk refuses: its key also holds the API key, ours does not);
- ``READ`` → ``{"config": {name, namespace, payload, ...}, "status": {active,
  dateChanged, dateChangedISO, reason?}}``;
- ``UPDATE`` changes the given parameters and re-activates (as OpenWhisk does);
- ``DELETE`` removes the schedule; deleting one that is gone succeeds (OpenWhisk answers
  "could not find trigger ..."), so a client may delete trigger and feed in any order;
- ``PAUSE`` stops the ticks, keeping the configuration; ``UNPAUSE`` resumes from the next
  tick after now (ticks missed while paused never fire).

Like OpenWhisk's provider, the trigger is the caller's own (``triggerName``'s namespace
is ignored for the invoker's) and ``authKey`` must be a valid key of that namespace for
which the trigger exists ("Trigger authentication request failed."; DELETE tolerates a
missing trigger). The key is checked, never stored: ticks fire as the namespace.

Every change is a compare-and-set on the schedule's revision, retried on a conflict, so
it composes with a provider advancing the same schedule at the same time.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from squall.controller.auth import Identity
from squall.controller.core import Controller
from squall.entities.names import EntityPath, check_name
from squall.entities.trigger import Trigger
from squall.errors import BadRequest, Conflict, NotFound
from squall.feeds.alarm import ONCE, Alarm, FeedError
from squall.store.contracts import Schedule, ScheduleStore

CREATE, READ, UPDATE, DELETE, PAUSE, UNPAUSE = (
    "CREATE",
    "READ",
    "UPDATE",
    "DELETE",
    "PAUSE",
    "UNPAUSE",
)
EVENTS = (CREATE, READ, UPDATE, DELETE, PAUSE, UNPAUSE)
SUCCESS_RESULT = {"status": "success"}
AUTH_FAILED = "Trigger authentication request failed."
PAUSED = "Paused with the PAUSE lifecycle event"
CAS_ATTEMPTS = 5


def not_found(namespace: str, trigger: str) -> FeedError:
    return FeedError(f"could not find trigger /{namespace}/{trigger} in the database")


def no_tick_left(alarm: Alarm) -> FeedError:
    if alarm.feed == ONCE:
        return FeedError("the fire once date has expired")
    return FeedError("the next scheduled trigger fire is after the stop date")


@dataclass(frozen=True, slots=True)
class AlarmState:
    """What a schedule's body holds: the alarm, an id that changes with every CREATE (it
    is part of each tick's claim key, so a re-created alarm may fire at a time an earlier
    one already did), and OpenWhisk's status object."""

    alarm: Alarm
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> AlarmState:
        return cls(Alarm.from_json(body["alarm"]), str(body["id"]), dict(body["status"]))

    def to_body(self) -> dict[str, Any]:
        return {"alarm": self.alarm.to_json(), "id": self.id, "status": self.status}

    def with_status(
        self, active: bool, now_ms: int, reason: dict[str, Any] | None = None
    ) -> AlarmState:
        status: dict[str, Any] = {"active": active, "dateChanged": now_ms}
        if reason is not None:
            status["reason"] = reason
        return replace(self, status=status)

    def status_json(self) -> dict[str, Any]:
        changed = int(self.status.get("dateChanged", 0))
        iso = datetime.fromtimestamp(changed / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out: dict[str, Any] = {
            "active": bool(self.status.get("active")),
            "dateChanged": changed,
            "dateChangedISO": iso,
        }
        if "reason" in self.status:
            out["reason"] = self.status["reason"]
        return out


@dataclass
class Lifecycle:
    """Runs lifecycle events; ``clock`` gives epoch ms (a fake one in tests), and
    ``changed`` is called after every write (the provider then recomputes its sleep)."""

    ctl: Controller
    schedules: ScheduleStore
    min_interval_s: float
    clock: Callable[[], int]
    changed: Callable[[], None] = lambda: None

    async def handle(self, identity: Identity, feed: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run the event in ``args`` for feed ``feed`` (``alarm``, ``interval``, ``once``)."""
        event = args.get("lifecycleEvent")
        if event not in EVENTS:
            raise FeedError("unsupported lifecycleEvent")
        if not args.get("authKey"):
            raise FeedError("no authKey parameter was provided")
        if not args.get("triggerName"):
            raise FeedError("no trigger name parameter was provided")
        namespace = identity.namespace
        trigger = await self._authorized_trigger(identity, args, missing_ok=event == DELETE)
        now = self.clock()
        if event == CREATE:
            state = AlarmState(Alarm.create(feed, args, now, self.min_interval_s))
            due = state.alarm.next_tick(now)
            if due is None:
                raise no_tick_left(state.alarm)
            await self._upsert(namespace, trigger, state.with_status(True, now), due)
            self.changed()
            return SUCCESS_RESULT
        if event == DELETE:
            with contextlib.suppress(NotFound):
                await self.schedules.delete(namespace, trigger)
            self.changed()
            return SUCCESS_RESULT
        if event == READ:
            current = await self._get(namespace, trigger)
            state = AlarmState.from_body(current.body)
            config = {"name": trigger, "namespace": namespace, **state.alarm.config_json()}
            return {"config": config, "status": state.status_json()}

        def change(state: AlarmState) -> tuple[AlarmState, int | None]:
            if event == PAUSE:
                return state.with_status(False, now, {"kind": "USER", "message": PAUSED}), None
            if event == UPDATE:
                state = replace(state, alarm=state.alarm.update(args, now, self.min_interval_s))
            due = state.alarm.next_tick(now)
            if due is None:
                raise no_tick_left(state.alarm)
            return state.with_status(True, now), due

        await self._change(namespace, trigger, change)
        self.changed()
        return SUCCESS_RESULT

    async def _authorized_trigger(
        self, identity: Identity, args: dict[str, Any], *, missing_ok: bool
    ) -> str:
        """The trigger's name, if ``authKey`` is a key of the caller's namespace and the
        trigger exists there (or may be missing)."""
        raw = str(args["triggerName"])
        # "/ns/name" or "name"; the namespace part is the caller's whatever it says.
        name = raw.split("/", 2)[2] if raw.startswith("/") and raw.count("/") >= 2 else raw
        uuid_, _, key = str(args["authKey"]).partition(":")
        subject = await self.ctl.auth_store.authenticate(uuid_, key) if key else None
        if subject is None or subject.namespace != identity.namespace:
            raise FeedError(AUTH_FAILED)
        try:
            path = EntityPath(identity.namespace, "", check_name(name))
            await self.ctl.catalog.get(Trigger, path)
        except (BadRequest, NotFound):
            if not missing_ok:
                raise FeedError(AUTH_FAILED) from None
        return name

    async def _get(self, namespace: str, trigger: str) -> Schedule:
        try:
            return await self.schedules.get(namespace, trigger)
        except NotFound:
            raise not_found(namespace, trigger) from None

    async def _upsert(self, namespace: str, trigger: str, state: AlarmState, due: int) -> None:
        for _ in range(CAS_ATTEMPTS):
            try:
                current = await self.schedules.get(namespace, trigger)
            except NotFound:
                current = None
            try:
                rev = None if current is None else current.rev
                await self.schedules.put(namespace, trigger, state.to_body(), due, rev)
                return
            except Conflict:
                continue  # written in between (a tick advanced it): read again
        raise FeedError("error creating alarm trigger.")

    async def _change(
        self,
        namespace: str,
        trigger: str,
        change: Callable[[AlarmState], tuple[AlarmState, int | None]],
    ) -> None:
        for _ in range(CAS_ATTEMPTS):
            current = await self._get(namespace, trigger)
            state, due = change(AlarmState.from_body(current.body))
            try:
                await self.schedules.put(namespace, trigger, state.to_body(), due, current.rev)
                return
            except Conflict:
                continue
        raise FeedError("there was an error while updating the trigger in the database.")
