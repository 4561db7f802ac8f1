"""Cron expressions at the door, and their fire times across daylight saving changes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from actors.myntrix.scheduler import InvalidCronError, next_fire_times, parse_cron
from vareon_runtime.errors import InvalidRequestError

UTC = timezone.utc


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 30 2 *", "cron expression '0 0 30 2 *' never fires (February has no 30th)"),
        ("0 0 31 4 *", "cron expression '0 0 31 4 *' never fires (April has no 31st)"),
        ("0 0 31 2,4 *", "cron expression '0 0 31 2,4 *' never fires (February and April have no 31st)"),
        ("* * * *", "has 4 field(s); it needs 5: minute hour day-of-month month day-of-week"),
        ("* * * * * *", "has 6 field(s); it needs 5"),
        ("61 * * * *", "cron expression '61 * * * *' is invalid"),
        ("*/0 * * * *", "is invalid"),
        ("@reboot", "is not a known macro"),
        ("", "schedule is empty"),
    ],
)
def test_a_bad_expression_is_a_422_saying_why(expression: str, message: str) -> None:
    with pytest.raises(InvalidCronError) as caught:
        parse_cron(expression)
    assert isinstance(caught.value, InvalidRequestError) and caught.value.status == 422
    assert message in caught.value.message
    assert caught.value.details["field"] == "schedule"


def test_an_unknown_zone_is_refused() -> None:
    with pytest.raises(InvalidCronError, match="'Mars/Olympus' is not an IANA time zone"):
        parse_cron("* * * * *", "Mars/Olympus")


def test_a_leap_day_job_is_valid_and_fires_on_leap_years() -> None:
    after = datetime(2025, 1, 1, tzinfo=UTC)
    assert next_fire_times("0 0 29 2 *", "UTC", after, 2) == [
        datetime(2028, 2, 29, tzinfo=UTC),
        datetime(2032, 2, 29, tzinfo=UTC),
    ]


def test_fire_times_are_computed_in_the_zone_and_handed_out_in_utc() -> None:
    after = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
    assert next_fire_times("0 9 * * 1-5", "America/New_York", after, 2) == [
        datetime(2024, 1, 10, 14, 0, tzinfo=UTC),  # 09:00 EST the same Wednesday
        datetime(2024, 1, 11, 14, 0, tzinfo=UTC),
    ]


def test_autumn_a_fixed_time_job_fires_once_a_wildcard_job_by_the_clock() -> None:
    after = datetime(2024, 10, 26, 22, 0, tzinfo=UTC)  # 00:00 CEST on the change day
    # croniter alone answers 02:30 CEST *and* 02:30 CET: the second is dropped.
    assert next_fire_times("30 2 * * *", "Europe/Berlin", after, 2) == [
        datetime(2024, 10, 27, 0, 30, tzinfo=UTC),
        datetime(2024, 10, 28, 1, 30, tzinfo=UTC),
    ]
    # Every 30 minutes keeps its real-time rhythm through the repeated hour.
    times = next_fire_times("*/30 * * * *", "Europe/Berlin", datetime(2024, 10, 26, 23, 45, tzinfo=UTC), 4)
    assert times == [
        datetime(2024, 10, 27, 0, 0, tzinfo=UTC),  # 02:00 CEST
        datetime(2024, 10, 27, 0, 30, tzinfo=UTC),  # 02:30 CEST
        datetime(2024, 10, 27, 1, 0, tzinfo=UTC),  # 02:00 CET
        datetime(2024, 10, 27, 1, 30, tzinfo=UTC),  # 02:30 CET
    ]


def test_spring_a_missing_time_fires_at_the_next_valid_instant_once() -> None:
    after = datetime(2024, 3, 30, 12, 0, tzinfo=UTC)
    assert next_fire_times("30 2 * * *", "Europe/Berlin", after, 2) == [
        datetime(2024, 3, 31, 1, 0, tzinfo=UTC),  # 03:00 CEST: 02:30 does not exist that day
        datetime(2024, 4, 1, 0, 30, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("expression", "zone"),
    [("30 2 * * *", "Europe/Berlin"), ("*/20 * * * *", "Europe/Berlin"), ("0 1 * * *", "America/New_York")],
)
@pytest.mark.parametrize("month", [3, 10, 11])
def test_the_latest_fire_time_agrees_with_the_next_ones(expression: str, zone: str, month: int) -> None:
    schedule = parse_cron(expression, zone)
    start = datetime(2024, month, 1, tzinfo=UTC)
    times = schedule.next_times(start, 200)
    for before, after in zip(times, times[1:]):
        assert schedule.latest_at_or_before(after) == after
        assert schedule.latest_at_or_before(after.replace(microsecond=1) - (after - before) / 2) == before
