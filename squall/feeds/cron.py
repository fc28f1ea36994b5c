"""Cron expressions for the ``alarms/alarm`` feed: parsing and the next matching instant.

Syntax, as the ``cron`` npm package that OpenWhisk's alarms provider uses accepts it:

- five fields ``minute hour day-of-month month day-of-week``, or six with a leading
  ``second`` field (a five-field expression fires at second 0);
- each field is a comma-separated list of ``*`` (or ``?``), ``n``, ``a-b``, and any of
  those followed by ``/step`` (``n/step`` means from ``n`` to the field's maximum);
- months accept ``jan``..``dec``, days of the week ``sun``..``sat`` (any case); day of
  the week 7 is Sunday like 0.

Day of month and day of week combine as in Vixie cron: when both are restricted (neither
starts with ``*``), a day matches if either matches; otherwise the restricted one decides.

Times are matched on the wall clock of a time zone (UTC by default). A wall-clock time
skipped by a daylight-saving change fires at the instant the zone maps it to (02:30 on a
spring-forward night fires at 03:30); a repeated wall-clock time fires once, at its first
occurrence. A pure module: no I/O, no clock; callers pass the instant to search from.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

# How far ahead a match is searched for; an expression with no match in that window
# (``0 0 30 2 *``, February 30th) never fires and is refused when parsed.
SEARCH_YEARS = 8

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


@dataclass(frozen=True, slots=True)
class _Field:
    low: int
    high: int
    names: dict[str, int] | None = None


_SECOND = _Field(0, 59)
_MINUTE = _Field(0, 59)
_HOUR = _Field(0, 23)
_DOM = _Field(1, 31)
_MONTH = _Field(1, 12, _MONTHS)
_DOW = _Field(0, 7, _DAYS)


def _value(text: str, field: _Field) -> int:
    lowered = text.lower()
    if field.names is not None and lowered in field.names:
        return field.names[lowered]
    if not text.isdigit():
        raise ValueError(f"not a number: {text!r}")
    value = int(text)
    if not field.low <= value <= field.high:
        raise ValueError(f"{value} is outside {field.low}-{field.high}")
    return value


def _parse_field(text: str, field: _Field) -> tuple[int, ...]:
    values: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"bad step in {item!r}")
            step = int(step_text)
        if base in ("*", "?"):
            low, high = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(first, field), _value(last, field)
            if low > high:
                raise ValueError(f"backwards range {item!r}")
        else:
            low = _value(base, field)
            high = field.high if slash else low
        values.update(range(low, high + 1, step))
    return tuple(sorted(values))


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed expression; :meth:`next_after` finds its next instant."""

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month unrestricted
    any_weekday: bool  # day of week unrestricted

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Parse ``text``; ``ValueError`` if it is malformed or never matches."""
        parts = text.split()
        if len(parts) == 5:
            parts = ["0", *parts]
        if len(parts) != 6:
            raise ValueError(f"expected 5 or 6 fields, got {len(parts)}")
        second, minute, hour, dom, month, dow = parts
        expression = cls(
            text=text,
            seconds=_parse_field(second, _SECOND),
            minutes=_parse_field(minute, _MINUTE),
            hours=_parse_field(hour, _HOUR),
            days=_parse_field(dom, _DOM),
            months=_parse_field(month, _MONTH),
            weekdays=frozenset(d % 7 for d in _parse_field(dow, _DOW)),
            any_day=dom[0] in "*?",
            any_weekday=dow[0] in "*?",
        )
        # An expression that cannot match (February 30th) is no schedule at all.
        if expression.next_after(datetime(2000, 1, 1, tzinfo=UTC), UTC) is None:
            raise ValueError("the expression never matches")
        return expression

    def _day_matches(self, day: datetime) -> bool:
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow

    def next_after(self, after: datetime, zone: tzinfo) -> datetime | None:
        """The first matching instant strictly after ``after`` (aware), in ``zone``'s wall
        clock; None if there is none within :data:`SEARCH_YEARS`."""
        # Compared in UTC: aware datetimes sharing a tzinfo compare by wall clock, which
        # is wrong across a daylight-saving change.
        after = after.astimezone(UTC)
        local = after.astimezone(zone).replace(tzinfo=None, microsecond=0)
        t = local + timedelta(seconds=1)
        last_year = t.year + SEARCH_YEARS
        # Each step moves t forward to the next value a field allows (resetting the
        # smaller fields), so the loop runs a few times per matching day at most.
        while t.year <= last_year:
            if t.month not in self.months:
                i = bisect.bisect_right(self.months, t.month)
                year, month = (
                    (t.year, self.months[i])
                    if i < len(self.months)
                    else (
                        t.year + 1,
                        self.months[0],
                    )
                )
                t = datetime(year, month, 1)
                continue
            if not self._day_matches(t):
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = self._forward(t, self.hours, t.hour, "hour")
                continue
            if t.minute not in self.minutes:
                t = self._forward(t, self.minutes, t.minute, "minute")
                continue
            if t.second not in self.seconds:
                t = self._forward(t, self.seconds, t.second, "second")
                continue
            instant = t.replace(tzinfo=zone).astimezone(UTC)
            if instant > after:
                return instant
            # Only in a repeated wall-clock hour: this match is the first occurrence,
            # which lies before ``after``.
            t += timedelta(seconds=1)
        return None

    @staticmethod
    def _forward(t: datetime, allowed: tuple[int, ...], current: int, unit: str) -> datetime:
        """``t`` moved to the next allowed value of ``unit`` (smaller units zeroed), or to
        the start of the next larger unit when none is left."""
        i = bisect.bisect_right(allowed, current)
        if unit == "hour":
            start = datetime(t.year, t.month, t.day)
            if i < len(allowed):
                return start + timedelta(hours=allowed[i])
            return start + timedelta(days=1)
        if unit == "minute":
            start = datetime(t.year, t.month, t.day, t.hour)
            if i < len(allowed):
                return start + timedelta(minutes=allowed[i])
            return start + timedelta(hours=1)
        start = datetime(t.year, t.month, t.day, t.hour, t.minute)
        if i < len(allowed):
            return start + timedelta(seconds=allowed[i])
        return start + timedelta(minutes=1)
