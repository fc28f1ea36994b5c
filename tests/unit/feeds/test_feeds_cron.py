"""Cron expressions: syntax, the next instant, day-of-month/day-of-week, time zones."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from squall.feeds.cron import CronExpression

BERLIN = ZoneInfo("Europe/Berlin")


def at(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    *,
    tz: ZoneInfo | None = None,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=tz or UTC)


def nexts(text: str, start: datetime, n: int, zone: ZoneInfo | None = None) -> list[datetime]:
    expr, out, t = CronExpression.parse(text), [], start
    for _ in range(n):
        found = expr.next_after(t, zone or UTC)
        assert found is not None
        out.append(found)
        t = found
    return out


def test_five_fields_fire_at_second_zero() -> None:
    assert nexts("* * * * *", at(2024, 1, 1, 10, 0, 30), 2) == [
        at(2024, 1, 1, 10, 1),
        at(2024, 1, 1, 10, 2),
    ]


def test_six_fields_have_seconds() -> None:
    assert nexts("*/20 * * * * *", at(2024, 1, 1, 10, 0, 5), 4) == [
        at(2024, 1, 1, 10, 0, 20),
        at(2024, 1, 1, 10, 0, 40),
        at(2024, 1, 1, 10, 1, 0),
        at(2024, 1, 1, 10, 1, 20),
    ]


def test_next_is_strictly_after() -> None:
    # An instant that matches is not its own next instant
    assert nexts("0 * * * *", at(2024, 1, 1, 10), 1) == [at(2024, 1, 1, 11)]
    # But a fraction of a second before it is
    expr = CronExpression.parse("0 * * * *")
    assert expr.next_after(datetime(2024, 1, 1, 9, 59, 59, 999000, UTC), UTC) == at(2024, 1, 1, 10)


def test_lists_ranges_steps_and_names() -> None:
    # 9:15 and 9:45 on weekdays, every other hour from 9 to 13, in March to May
    text = "15,45 9-13/2 * mar-may mon-fri"
    found = nexts(text, at(2024, 2, 27), 4)
    # March 1st 2024 is a Friday
    assert found == [
        at(2024, 3, 1, 9, 15),
        at(2024, 3, 1, 9, 45),
        at(2024, 3, 1, 11, 15),
        at(2024, 3, 1, 11, 45),
    ]
    # After Friday 13:45 comes Monday 9:15
    assert nexts(text, at(2024, 3, 1, 13, 45), 1) == [at(2024, 3, 4, 9, 15)]
    # "n/step" runs from n to the end of the range; 7 is Sunday like 0
    assert nexts("0 0 5/10 * *", at(2024, 1, 1), 3) == [
        at(2024, 1, 5),
        at(2024, 1, 15),
        at(2024, 1, 25),
    ]
    assert nexts("0 12 * * 7", at(2024, 1, 1), 1) == [at(2024, 1, 7, 12)]  # a Sunday


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    # The 13th, or any Friday (Vixie cron): Jan 2024 Fridays are 5, 12, 19, 26
    assert nexts("0 0 13 * fri", at(2024, 1, 1), 4) == [
        at(2024, 1, 5),
        at(2024, 1, 12),
        at(2024, 1, 13),
        at(2024, 1, 19),
    ]
    # With the day of week unrestricted, only the day of month counts
    assert nexts("0 0 13 * *", at(2024, 1, 1), 1) == [at(2024, 1, 13)]


def test_rare_dates_are_found() -> None:
    assert nexts("0 0 29 2 *", at(2024, 3, 1), 1) == [at(2028, 2, 29)]
    assert nexts("0 0 31 * *", at(2024, 4, 1), 1) == [at(2024, 5, 31)]


def test_time_zone_wall_clock() -> None:
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer
    assert nexts("0 9 * * *", at(2024, 1, 1), 1, BERLIN) == [at(2024, 1, 1, 8)]
    assert nexts("0 9 * * *", at(2024, 7, 1), 1, BERLIN) == [at(2024, 7, 1, 7)]


def test_daylight_saving_gap_and_repeat() -> None:
    # 02:30 does not exist on 2024-03-31 in Berlin: it fires at 03:30 CEST (01:30 UTC)
    assert nexts("30 2 * * *", at(2024, 3, 30, 12), 2, BERLIN) == [
        at(2024, 3, 31, 1, 30),
        at(2024, 4, 1, 0, 30),
    ]
    # 02:30 happens twice on 2024-10-27: it fires once, at the first (00:30 UTC)
    assert nexts("30 2 * * *", at(2024, 10, 26, 12), 2, BERLIN) == [
        at(2024, 10, 27, 0, 30),
        at(2024, 10, 28, 1, 30),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "* * * *",
        "* * * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "a * * * *",
        "* * * foo *",
        "0 0 30 2 *",  # never matches
    ],
)
def test_invalid_expressions(text: str) -> None:
    with pytest.raises(ValueError):
        CronExpression.parse(text)
