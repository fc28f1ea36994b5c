"""Alarms: parameters checked with OpenWhisk's messages, and the ticks of each feed,
computed from an explicit clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from squall.feeds.alarm import (
    ALARM,
    DEFAULT_INTERVAL_START_MS,
    INTERVAL,
    ONCE,
    Alarm,
    FeedError,
    parse_date,
)

MINUTE = 60_000
NOW = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def create(feed: str, min_interval_s: float = 60.0, **args: Any) -> Alarm:
    return Alarm.create(feed, args, NOW, min_interval_s)


def error(feed: str, **args: Any) -> str:
    with pytest.raises(FeedError) as caught:
        create(feed, **args)
    return caught.value.message


def ticks(alarm: Alarm, after: int, n: int) -> list[int]:
    out: list[int] = []
    for _ in range(n):
        tick = alarm.next_tick(after)
        if tick is None:
            break
        out.append(tick)
        after = tick
    return out


def test_dates_are_epoch_ms_or_iso() -> None:
    assert parse_date(NOW) == NOW
    assert parse_date("2024-01-01T00:00:00Z") == NOW
    assert parse_date("2024-01-01T01:00:00+01:00") == NOW
    assert parse_date("2024-01-01T00:00:00") == NOW  # no offset: UTC
    for bad in ("tomorrow", "", None, True, [1], float("nan")):
        assert parse_date(bad) is None


def test_interval_ticks_from_its_start_date() -> None:
    start = NOW + 10 * MINUTE
    alarm = create(INTERVAL, minutes=2, startDate=start)
    # The first tick is the start date, then every two minutes
    assert ticks(alarm, NOW, 3) == [start, start + 2 * MINUTE, start + 4 * MINUTE]
    # From any later instant, the next multiple
    assert alarm.next_tick(start + 3 * MINUTE) == start + 4 * MINUTE
    assert alarm.next_tick(start + 4 * MINUTE) == start + 6 * MINUTE


def test_interval_without_start_date_starts_in_30_seconds() -> None:
    alarm = create(INTERVAL, minutes="3")
    assert alarm.minutes == 3
    assert alarm.start_date == NOW + DEFAULT_INTERVAL_START_MS
    assert ticks(alarm, NOW, 2) == [NOW + 30_000, NOW + 30_000 + 3 * MINUTE]


def test_interval_stops_at_its_stop_date() -> None:
    start = NOW + MINUTE
    alarm = create(INTERVAL, minutes=1, startDate=iso(start), stopDate=iso(start + 2 * MINUTE))
    # A tick at the stop date still fires; none after it
    assert ticks(alarm, NOW, 10) == [start, start + MINUTE, start + 2 * MINUTE]


def test_interval_minutes_rules() -> None:
    assert error(INTERVAL) == "interval trigger feed is missing the minutes parameter"
    assert error(INTERVAL, minutes=0) == "interval trigger feed is missing the minutes parameter"
    assert error(INTERVAL, minutes=1.5) == "the minutes parameter must be an integer"
    assert error(INTERVAL, minutes="x") == "the minutes parameter must be an integer"
    assert error(INTERVAL, minutes=-2) == (
        "the minutes parameter must be an integer greater than zero"
    )


def test_sub_minute_intervals_need_the_operator_setting() -> None:
    # With a shortest interval of 1 s, fractional minutes are accepted down to that
    alarm = create(INTERVAL, min_interval_s=1.0, minutes=0.05, startDate=NOW + 1000)
    assert alarm.minutes == 0.05
    assert ticks(alarm, NOW, 3) == [NOW + 1000, NOW + 4000, NOW + 7000]
    assert error(INTERVAL, minutes=0.001) == "the minutes parameter must be an integer"
    with pytest.raises(FeedError) as caught:
        create(INTERVAL, min_interval_s=1.0, minutes=0.001)
    assert caught.value.message == "the minutes parameter must be a number of at least 0.0166667"
    # Whole minutes stay integers
    assert create(INTERVAL, min_interval_s=1.0, minutes=2).minutes == 2


def test_cron_ticks_with_time_zone_and_start_date() -> None:
    # Every day at 09:00 in New York (14:00 UTC in winter), from January 3rd
    alarm = create(
        ALARM, cron="0 9 * * *", timezone="America/New_York", startDate="2024-01-03T00:00:00Z"
    )
    day = 24 * 60 * MINUTE
    first = NOW + 2 * day + 14 * 60 * MINUTE
    assert ticks(alarm, NOW, 2) == [first, first + day]
    # A start date that is itself a tick fires at it
    alarm = create(ALARM, cron="*/10 * * * * *", startDate=NOW + 20_000)
    assert ticks(alarm, NOW, 2) == [NOW + 20_000, NOW + 30_000]


def test_cron_rules() -> None:
    assert error(ALARM) == "alarms trigger feed is missing the cron parameter"
    assert error(ALARM, cron="61 * * * *") == "cron pattern '61 * * * *' is not valid"
    assert error(ALARM, cron="* * * * *", timezone="Mars/Olympus") == (
        "timezone parameter 'Mars/Olympus' is not a valid time zone"
    )
    # A stop date before the first tick
    assert error(ALARM, cron="0 0 1 1 *", stopDate=NOW + MINUTE) == (
        "the first scheduled trigger fire is not until after the stop date"
    )


def test_once_fires_once() -> None:
    alarm = create(ONCE, date=iso(NOW + 5000), deleteAfterFire="Rules ")
    assert alarm.delete_after_fire == "rules"
    assert ticks(alarm, NOW, 3) == [NOW + 5000]
    assert create(ONCE, date=NOW + 1, deleteAfterFire=True).delete_after_fire == "true"
    assert create(ONCE, date=NOW + 1).delete_after_fire is None


def test_once_rules() -> None:
    assert error(ONCE) == "alarms once trigger feed is missing the date parameter"
    assert error(ONCE, date="soon") == "date parameter 'soon' is not a valid Date"
    assert error(ONCE, date=NOW) == f"date parameter '{NOW}' must be in the future"
    assert error(ONCE, date=NOW + 1, deleteAfterFire="maybe") == (
        "deleteAfterFire parameter must be one of [false, true, rules]."
    )


def test_start_and_stop_dates_are_checked() -> None:
    past = "2023-01-01T00:00:00Z"
    assert error(INTERVAL, minutes=1, startDate=past) == (
        f"startDate parameter '{past}' must be in the future"
    )
    assert error(INTERVAL, minutes=1, startDate=NOW + 2000, stopDate=NOW + 1000) == (
        f"stopDate parameter '{NOW + 1000}' must be greater than the startDate parameter "
        f"'{NOW + 2000}'"
    )


def test_payload() -> None:
    assert create(INTERVAL, minutes=1).payload == {}
    assert create(INTERVAL, minutes=1, trigger_payload={"a": 1}).payload == {"a": 1}
    assert create(INTERVAL, minutes=1, trigger_payload="hi").payload == {"payload": "hi"}


def test_update_changes_only_what_is_given() -> None:
    alarm = create(INTERVAL, minutes=1, startDate=NOW + MINUTE, trigger_payload={"a": 1})
    updated = alarm.update({"minutes": 5}, NOW, 60.0)
    assert (updated.minutes, updated.payload, updated.start_date) == (5, {"a": 1}, NOW + MINUTE)
    with pytest.raises(FeedError, match="no updatable parameters were specified"):
        alarm.update({"cron": "* * * * *"}, NOW, 60.0)  # not a parameter of an interval
    stop = create(INTERVAL, minutes=1, startDate=NOW + MINUTE, stopDate=NOW + 9 * MINUTE)
    with pytest.raises(FeedError, match="must be less than the stopDate parameter"):
        stop.update({"startDate": NOW + 10 * MINUTE}, NOW, 60.0)


def test_json_round_trip_and_config() -> None:
    alarm = create(ALARM, cron="0 * * * *", timezone="UTC", stopDate=NOW + 90 * MINUTE)
    assert Alarm.from_json(alarm.to_json()) == alarm
    assert alarm.config_json() == {
        "payload": {},
        "stopDate": NOW + 90 * MINUTE,
        "cron": "0 * * * *",
        "timezone": "UTC",
    }
    once = create(ONCE, date=NOW + 1, deleteAfterFire="true")
    assert once.config_json() == {"payload": {}, "date": NOW + 1, "deleteAfterFire": "true"}
