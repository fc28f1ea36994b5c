"""An alarm: the configuration of one trigger's ``alarms`` feed, and its ticks.

The three feeds of ``/whisk.system/alarms`` and their parameters, checked with the
messages of OpenWhisk's alarms provider (``openwhisk-package-alarms``):

- ``alarm``: ``cron`` (5 or 6 fields, see :mod:`squall.feeds.cron`), optional
  ``timezone`` (an IANA name; the cron is matched on that zone's wall clock, UTC
  otherwise), ``startDate``, ``stopDate``;
- ``interval``: ``minutes`` (a whole number > 0), optional ``startDate`` (default: 30
  seconds after the feed was created, as OpenWhisk does) and ``stopDate``; ticks are
  ``startDate + k * minutes``;
- ``once``: ``date``, optional ``deleteAfterFire`` (``false``, ``true`` — delete the
  trigger — or ``rules`` — delete the trigger and its rules).

Every feed takes ``trigger_payload``: the payload of each fire (a string becomes
``{"payload": string}``). Dates are epoch milliseconds or ISO 8601 strings (without an
offset they are UTC) and must lie in the future; ``stopDate`` must follow ``startDate``.
A tick at or before ``stopDate`` fires; the first one after it does not.

Sub-minute intervals: OpenWhisk allows whole minutes only. An operator may lower the
shortest interval (setting ``alarms_min_interval_s``); below 60 s, ``minutes`` may be
fractional as long as the interval is at least that long. The default (60) keeps
OpenWhisk's rule.

Pure data and arithmetic: no I/O, and the time is always passed in (epoch ms), so the
schedule math is tested with any clock.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from squall.feeds.cron import CronExpression

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

ALARM, INTERVAL, ONCE = "alarm", "interval", "once"
FEEDS = (ALARM, INTERVAL, ONCE)
DELETE_AFTER_FIRE = ("false", "true", "rules")
# OpenWhisk starts an interval without a startDate 30 seconds after its creation.
DEFAULT_INTERVAL_START_MS = 30_000


class FeedError(Exception):
    """A feed action's refusal: its result is ``{"error": message}``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _missing(value: Any) -> bool:
    # The alarms provider tests parameters for JavaScript truthiness.
    return value is None or value is False or value == "" or value == 0


@functools.lru_cache(maxsize=1024)
def _cron(text: str) -> CronExpression:
    return CronExpression.parse(text)


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    # Imported on the first alarm with a timezone, not at start: zoneinfo reads
    # sysconfig's build variables (its TZPATH) when imported, ~0.75 MiB the server would
    # otherwise hold for its whole life (bench/README.md, memory_at_concurrency.py).
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def parse_date(value: Any) -> int | None:
    """Epoch ms of a date parameter (a number of ms, or an ISO 8601 string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if math.isfinite(value) else None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def check_date(value: Any, name: str, now_ms: int, after: Any = None) -> int:
    """``value`` as epoch ms, if it is a date in the future (and after ``after``)."""
    ms = parse_date(value)
    if ms is None:
        raise FeedError(f"{name} parameter '{value}' is not a valid Date")
    if ms <= now_ms:
        raise FeedError(f"{name} parameter '{value}' must be in the future")
    after_ms = parse_date(after)
    if after_ms is not None and ms <= after_ms:
        raise FeedError(
            f"{name} parameter '{value}' must be greater than the startDate parameter '{after}'"
        )
    return ms


def check_minutes(value: Any, min_interval_s: float) -> float | int:
    """The interval length; whole minutes unless the operator allows shorter intervals."""
    number: float | None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(str(value))
        except ValueError:
            number = None
    if min_interval_s < 60:
        if number is None or not math.isfinite(number) or number * 60 < min_interval_s:
            raise FeedError(
                f"the minutes parameter must be a number of at least {min_interval_s / 60:g}"
            )
        return int(number) if number.is_integer() else number
    if number is None or not number.is_integer():
        raise FeedError("the minutes parameter must be an integer")
    if number <= 0:
        raise FeedError("the minutes parameter must be an integer greater than zero")
    return int(number)


def payload_of(value: Any) -> dict[str, Any]:
    """A fire's payload from ``trigger_payload``: objects as they are, anything else
    under ``payload``, nothing → ``{}``."""
    if isinstance(value, dict):
        return value
    if value is None or value == "":
        return {}
    return {"payload": value}


@dataclass(frozen=True, slots=True)
class Alarm:
    """One trigger's alarm. Date fields keep the value the user gave (READ shows it)."""

    feed: str
    payload: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    timezone: str | None = None
    minutes: float | int | None = None
    date: Any = None
    delete_after_fire: str | None = None
    start_date: Any = None
    stop_date: Any = None

    # -- creation and update (OpenWhisk's checks, in its order) ---------------------------

    @classmethod
    def create(cls, feed: str, args: dict[str, Any], now_ms: int, min_interval_s: float) -> Alarm:
        """The alarm ``args`` (the feed action's arguments) describe; FeedError if not."""
        alarm = cls(feed=feed, payload=payload_of(args.get("trigger_payload")))
        if feed == ONCE:
            if _missing(args.get("date")):
                raise FeedError("alarms once trigger feed is missing the date parameter")
            check_date(args["date"], "date", now_ms)
            alarm = replace(alarm, date=args["date"])
            return alarm._with_delete_after_fire(args.get("deleteAfterFire"))
        if feed == INTERVAL:
            if _missing(args.get("minutes")):
                raise FeedError("interval trigger feed is missing the minutes parameter")
            alarm = replace(alarm, minutes=check_minutes(args["minutes"], min_interval_s))
        else:
            if _missing(args.get("cron")):
                raise FeedError("alarms trigger feed is missing the cron parameter")
            alarm = replace(alarm, cron=_check_cron(args["cron"]))
            alarm = replace(alarm, timezone=_check_timezone(args.get("timezone")))
        start = args.get("startDate")
        if not _missing(start):
            check_date(start, "startDate", now_ms)
        elif feed == INTERVAL:
            start = now_ms + DEFAULT_INTERVAL_START_MS
        else:
            start = None
        alarm = replace(alarm, start_date=start)
        stop = args.get("stopDate")
        if not _missing(stop):
            check_date(stop, "stopDate", now_ms, start)
            alarm = replace(alarm, stop_date=stop)
            if alarm.next_tick(now_ms) is None:
                raise FeedError("the first scheduled trigger fire is not until after the stop date")
        return alarm

    def update(self, args: dict[str, Any], now_ms: int, min_interval_s: float) -> Alarm:
        """This alarm with the updatable parameters of ``args``; FeedError when there are
        none, or one is wrong."""
        changes: dict[str, Any] = {}
        if not _missing(args.get("trigger_payload")):
            changes["payload"] = payload_of(args["trigger_payload"])
        if self.feed == ONCE:
            if not _missing(args.get("date")):
                check_date(args["date"], "date", now_ms)
                changes["date"] = args["date"]
            if not _missing(args.get("deleteAfterFire")):
                changes["delete_after_fire"] = _check_delete_after_fire(args["deleteAfterFire"])
        else:
            if self.feed == INTERVAL and not _missing(args.get("minutes")):
                changes["minutes"] = check_minutes(args["minutes"], min_interval_s)
            if self.feed == ALARM and not _missing(args.get("cron")):
                changes["cron"] = _check_cron(args["cron"])
            if self.feed == ALARM and not _missing(args.get("timezone")):
                changes["timezone"] = _check_timezone(args["timezone"])
            start, stop = args.get("startDate"), args.get("stopDate")
            if not _missing(start):
                check_date(start, "startDate", now_ms)
                changes["start_date"] = start
            if not _missing(stop):
                after = start if not _missing(start) else self.start_date
                check_date(stop, "stopDate", now_ms, after)
                changes["stop_date"] = stop
            elif not _missing(start) and self.stop_date is not None:
                start_ms, stop_ms = parse_date(start), parse_date(self.stop_date)
                if start_ms is not None and stop_ms is not None and start_ms >= stop_ms:
                    raise FeedError(
                        f"startDate parameter '{start}' must be less than the stopDate "
                        f"parameter '{self.stop_date}'"
                    )
        if not changes:
            raise FeedError("no updatable parameters were specified")
        return replace(self, **changes)

    def _with_delete_after_fire(self, value: Any) -> Alarm:
        if _missing(value):
            return self
        return replace(self, delete_after_fire=_check_delete_after_fire(value))

    # -- ticks ----------------------------------------------------------------------------

    def next_tick(self, after_ms: int) -> int | None:
        """The first tick strictly after ``after_ms``, or None when no tick is left."""
        start, stop = parse_date(self.start_date), parse_date(self.stop_date)
        tick: int | None
        if self.feed == ONCE:
            date = parse_date(self.date)
            tick = date if date is not None and date > after_ms else None
        elif self.feed == INTERVAL:
            assert self.minutes is not None and start is not None
            every = max(1, round(self.minutes * 60_000))
            tick = start if after_ms < start else start + ((after_ms - start) // every + 1) * every
        else:
            assert self.cron is not None
            zone = _zone(self.timezone) if self.timezone else UTC
            # A tick may fall on startDate itself: search from just before it.
            begin = max(after_ms, start - 1) if start is not None else after_ms
            found = _cron(self.cron).next_after(datetime.fromtimestamp(begin / 1000, UTC), zone)
            tick = None if found is None else int(found.timestamp() * 1000)
        if tick is not None and stop is not None and tick > stop:
            return None
        return tick

    # -- JSON ------------------------------------------------------------------------------

    def config_json(self) -> dict[str, Any]:
        """The parameters as READ shows them (OpenWhisk's ``config`` minus name/namespace)."""
        out: dict[str, Any] = {"payload": self.payload}
        if self.feed == ONCE:
            out["date"] = self.date
            if self.delete_after_fire is not None:
                out["deleteAfterFire"] = self.delete_after_fire
            return out
        if self.start_date is not None:
            out["startDate"] = self.start_date
        if self.stop_date is not None:
            out["stopDate"] = self.stop_date
        if self.feed == INTERVAL:
            out["minutes"] = self.minutes
        else:
            out["cron"] = self.cron
            if self.timezone:
                out["timezone"] = self.timezone
        return out

    def to_json(self) -> dict[str, Any]:
        return {"feed": self.feed, **self.config_json()}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Alarm:
        return cls(
            feed=str(raw["feed"]),
            payload=dict(raw.get("payload") or {}),
            cron=raw.get("cron"),
            timezone=raw.get("timezone"),
            minutes=raw.get("minutes"),
            date=raw.get("date"),
            delete_after_fire=raw.get("deleteAfterFire"),
            start_date=raw.get("startDate"),
            stop_date=raw.get("stopDate"),
        )


def _check_cron(value: Any) -> str:
    text = str(value)
    try:
        _cron(text)
    except ValueError:
        raise FeedError(f"cron pattern '{text}' is not valid") from None
    return text


def _check_timezone(value: Any) -> str | None:
    if _missing(value):
        return None
    try:
        _zone(str(value))
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        raise FeedError(f"timezone parameter '{value}' is not a valid time zone") from None
    return str(value)


def _check_delete_after_fire(value: Any) -> str:
    text = str(value).strip().lower()  # True → "true", as JavaScript's '' + true
    if text not in DELETE_AFTER_FIRE:
        raise FeedError("deleteAfterFire parameter must be one of [false, true, rules].")
    return text
