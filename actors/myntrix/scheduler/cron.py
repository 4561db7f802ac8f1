"""Cron expressions: parsed and checked at the door, fire times in the task's time zone.

croniter parses (imported on first use: a runtime without tasks never pays for it). An
expression is the classic five fields ``minute hour day-of-month month day-of-week`` or one of
the macros ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``,
``@hourly``. A syntax error is an :class:`~actors.myntrix.scheduler.errors.InvalidCronError`
(422) saying what is wrong; so is an expression that never fires (``0 0 30 2 *``: "never fires
(February has no 30th)").

Fire times are computed in the task's zone and handed out as aware UTC datetimes. Daylight
saving time (docs/decisions/0016-cron-scheduler.md), as Vixie cron and cronie do it:

- **Autumn, the repeated hour.** A *fixed-time* job (its minute and hour fields do not start
  with ``*``: ``30 2 * * *``) runs once, at the first pass of the wall time. croniter returns both
  passes (02:30 CEST and 02:30 CET); the second is dropped here. A *wildcard* job (``*/15 * * *
  *``, ``0 * * * *``) keeps running by the clock in real time, so it fires in both passes.
- **Spring, the missing hour.** A fire time that does not exist that day (02:30 in Berlin on the
  last Sunday of March) fires at the next valid instant, 03:00 local time, once. croniter
  already does that; it is kept.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .errors import InvalidCronError

if TYPE_CHECKING:
    from croniter import croniter as Croniter

__all__ = ["CronSchedule", "next_fire_times", "parse_cron", "parse_timezone"]

MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
NEVER_HORIZON_YEARS = 5
"""An expression with no fire time within this many years counts as one that never fires."""

_MONTH_NAMES = list(calendar.month_name)
_MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
_EPSILON = timedelta(seconds=1)


def parse_timezone(name: str) -> tzinfo:
    """The IANA zone ``name``.

    Raises:
        InvalidCronError: not a zone name this host knows.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidCronError(
            f"timezone {name!r} is not an IANA time zone name (such as UTC or Europe/Berlin)",
            details={"field": "timezone", "value": name},
        ) from None


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _never_reason(fields: list[list[Any]]) -> str | None:
    """Why a day-of-month/month combination never happens, when that is the reason."""
    days, months, weekdays = fields[2], fields[3], fields[4]
    if "*" in days or "*" in months or weekdays != ["*"]:
        return None
    numbers = [d for d in days if isinstance(d, int)]
    if not numbers or len(numbers) != len(days):
        return None
    first = min(numbers)
    chosen = sorted(m for m in months if isinstance(m, int))
    if not chosen or any(_MONTH_DAYS[m] >= first for m in chosen):
        return None
    names = [_MONTH_NAMES[m] for m in chosen]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"{listed} {'has' if len(names) == 1 else 'have'} no {_ordinal(first)}"


@dataclass(frozen=True)
class CronSchedule:
    """A valid cron expression in a time zone; computes its fire times.

    Attributes:
        expression: as given (whitespace normalised).
        timezone: the IANA zone name.
        fixed_time: minute and hour are fixed (autumn's repeated hour fires once).
    """

    expression: str
    timezone: str
    zone: tzinfo
    fixed_time: bool
    # The last next_after question and its answer: ten thousand tasks sharing one expression
    # all ask it about the same fire time, and croniter costs about 0.1 ms an answer.
    _memo: list[datetime] = field(default_factory=list, init=False, repr=False, compare=False)

    def _iterator(self, start: datetime) -> Croniter:
        iterator = _iterator(self.expression, self.timezone)
        iterator.set_current(start.astimezone(self.zone), force=True)
        return iterator

    def _dropped(self, local: datetime) -> bool:
        """Whether croniter's ``local`` is the second pass of a repeated wall time (fixed-time jobs)."""
        if not self.fixed_time or not local.fold:
            return False
        return local.replace(fold=0).utcoffset() != local.utcoffset()

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (aware), as aware UTC."""
        memo = self._memo
        if memo and memo[0] == moment:
            return memo[1]
        iterator = self._iterator(moment)
        while True:
            local = iterator.get_next(datetime).astimezone(self.zone)
            if not self._dropped(local):
                answer = local.astimezone(timezone.utc)
                memo[:] = (moment, answer)
                return answer

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last fire time at or before ``moment``, as aware UTC (None: none within reach).

        Steps back with croniter, then forward with :meth:`next_after`, so the answer is always
        one of the times ``next_after`` hands out (DST corrections included).
        """
        iterator = self._iterator(moment + _EPSILON)
        try:
            earlier = iterator.get_prev(datetime)
            earlier = iterator.get_prev(datetime)
        except Exception:  # croniter's own errors: nothing earlier within its search window
            return None
        found: datetime | None = None
        cursor = earlier.astimezone(timezone.utc) - _EPSILON
        while True:
            candidate = self.next_after(cursor)
            if candidate > moment:
                return found
            found = cursor = candidate

    def next_times(self, after: datetime, n: int) -> list[datetime]:
        """The next ``n`` fire times after ``after``, as aware UTC."""
        times: list[datetime] = []
        cursor = after
        for _ in range(n):
            cursor = self.next_after(cursor)
            times.append(cursor)
        return times


@lru_cache(maxsize=256)
def _iterator(expression: str, timezone_name: str) -> Croniter:
    # One parsed iterator per (expression, zone), reused with set_current: building one costs
    # about a tenth of a millisecond, which 10,000 tasks sharing "*/5 * * * *" need not pay.
    from croniter import croniter

    return croniter(expression, datetime.now(parse_timezone(timezone_name)))


def parse_cron(expression: str, timezone_name: str = "UTC", *, now: datetime | None = None) -> CronSchedule:
    """Parse and check ``expression`` in the IANA zone ``timezone_name``.

    Args:
        now: where the "does it ever fire" search starts (now by default).

    Raises:
        InvalidCronError: a syntax error, a field out of range, an expression that never fires,
            or an unknown time zone; the message says which and how to fix it.
    """
    from croniter import CroniterBadDateError, CroniterError, croniter

    zone = parse_timezone(timezone_name)
    text = " ".join(str(expression).split())
    details = {"field": "schedule", "value": text}
    if not text:
        raise InvalidCronError(
            "schedule is empty; give a cron expression of five fields such as '*/5 * * * *'", details=details
        )
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise InvalidCronError(
                f"cron expression {text!r} is not a known macro; use one of {', '.join(sorted(MACROS))} "
                "or five fields such as '0 3 * * *'",
                details=details,
            )
        text = text.lower()
    else:
        fields = text.split(" ")
        if len(fields) != 5:
            raise InvalidCronError(
                f"cron expression {text!r} has {len(fields)} field(s); it needs 5: "
                f"{' '.join(FIELDS)} (such as '30 2 * * *')",
                details=details,
            )
    try:
        expanded, _ = croniter.expand(text)
    except CroniterError as exc:
        raise InvalidCronError(f"cron expression {text!r} is invalid: {exc}", details=details) from None
    reason = _never_reason(expanded)
    if reason is not None:
        raise InvalidCronError(f"cron expression {text!r} never fires ({reason})", details=details)
    start = (now or datetime.now(timezone.utc)).astimezone(zone)
    try:
        croniter(text, start, max_years_between_matches=NEVER_HORIZON_YEARS).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidCronError(
            f"cron expression {text!r} never fires (no matching date within {NEVER_HORIZON_YEARS} years)",
            details=details,
        ) from None
    except CroniterError as exc:
        raise InvalidCronError(f"cron expression {text!r} is invalid: {exc}", details=details) from None
    if text.startswith("@"):
        fixed = text != "@hourly"
    else:
        minute, hour = text.split(" ")[:2]
        fixed = not (minute.startswith("*") or hour.startswith("*"))
    return CronSchedule(expression=text, timezone=timezone_name, zone=zone, fixed_time=fixed)


def next_fire_times(expression: str, timezone_name: str, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` fire times of ``expression`` in ``timezone_name`` after ``after``, as aware UTC.

    Raises:
        InvalidCronError: the expression or the zone is invalid (see :func:`parse_cron`).
    """
    return parse_cron(expression, timezone_name, now=after).next_times(after, n)
