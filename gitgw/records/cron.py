"""Five-field cron expressions, for workflow `schedule` triggers.

The fields are minute (0-59), hour (0-23), day of month (1-31), month (1-12 or
`jan`-`dec`) and day of week (0-7 or `sun`-`sat`; 0 and 7 are both Sunday). Each field
is `*`, a value, a range `a-b`, any of those with a step (`*/15`, `1-30/2`, `5/10`
meaning `5-max/10`), or a comma-separated list of them. Names are case-insensitive.

When both the day of month and the day of week are restricted (neither starts with
`*`), a day matches if either matches, as in every common cron; when one of them starts
with `*` (`*` itself, or `*/2`), a day must match both. `@hourly`, `@daily`
(`@midnight`), `@weekly`, `@monthly` and `@yearly` (`@annually`) stand for their usual
expressions.

Times are UTC: `matches` and `next_after` convert an aware datetime to UTC and take a
naive one as UTC already.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["Cron"]

_SHORTHANDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = {name.lower(): n for n, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day of month", 1, 31, {}),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 7, _DAYS),
)
# How far ahead `next_after` looks: any valid expression matches within 8 years
# (February 29th skips at most one leap year, around a century not divisible by 400).
_HORIZON_YEARS = 9


def _value(text: str, spec: _Field) -> int:
    word = text.lower()
    if word in spec.names:
        return spec.names[word]
    if not word.isdigit():
        names = f" or a name ({', '.join(spec.names)})" if spec.names else ""
        raise ValueError(f"{spec.name}: {text!r} is not a number{names}")
    number = int(word)
    if not spec.low <= number <= spec.high:
        raise ValueError(f"{spec.name}: {number} is out of range {spec.low}-{spec.high}")
    return number


def _field(text: str, spec: _Field) -> frozenset[int]:
    found: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ValueError(f"{spec.name}: empty item in {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{spec.name}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            low, high = spec.low, spec.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(first, spec), _value(last, spec)
            if low > high:
                raise ValueError(f"{spec.name}: range {base!r} runs backwards")
        else:
            low = _value(base, spec)
            high = spec.high if slash else low
        found.update(range(low, high + 1, step))
    return frozenset(found)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression (see the module docs)."""

    expr: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # the day of month field starts with `*`
    any_weekday: bool  # the day of week field starts with `*`

    @classmethod
    def parse(cls, expr: str) -> Cron:
        """Parse `expr`; a `ValueError` saying what is wrong with it otherwise."""
        text = " ".join(expr.split())
        expanded = _SHORTHANDS.get(text.lower(), text)
        if expanded.startswith("@"):
            raise ValueError(
                f"cron expression {expr!r}: unknown shorthand; use one of {', '.join(_SHORTHANDS)}"
            )
        parts = expanded.split(" ")
        if len(parts) != 5:
            raise ValueError(
                f"cron expression {expr!r} has {len(parts) if text else 0} fields; it needs "
                "five: minute hour day-of-month month day-of-week (e.g. `*/15 9-17 * * mon-fri`)"
            )
        try:
            fields = [_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
        except ValueError as exc:
            raise ValueError(f"cron expression {expr!r}: {exc}") from None
        minutes, hours, days, months, weekdays = fields
        cron = cls(
            expr=text,
            minutes=minutes,
            hours=hours,
            days=days,
            months=months,
            weekdays=frozenset(d % 7 for d in weekdays),
            any_day=parts[2].startswith("*"),
            any_weekday=parts[4].startswith("*"),
        )
        if cron.any_weekday and not any(
            day <= calendar.monthrange(2000, month)[1] for day in days for month in months
        ):  # 2000 is a leap year: February has 29 days
            raise ValueError(f"cron expression {expr!r} never matches: no such day in its months")
        return cron

    def __str__(self) -> str:
        return self.expr

    def _day_matches(self, moment: datetime) -> bool:
        by_day = moment.day in self.days
        by_weekday = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday  # a plain `*` holds every day
        return by_day or by_weekday

    def matches(self, moment: datetime) -> bool:
        """Whether the minute of `moment` (UTC) is one this expression names."""
        moment = _utc(moment)
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._day_matches(moment)
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first minute strictly after `moment` that matches (aware, UTC)."""
        moment = _utc(moment).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = moment.year + _HORIZON_YEARS
        while moment.year <= limit:
            if moment.month not in self.months:
                year, month = divmod(moment.month, 12)  # the first of the next month
                moment = moment.replace(year=moment.year + year, month=month + 1, day=1)
                moment = moment.replace(hour=0, minute=0)
            elif not self._day_matches(moment):
                moment = (moment + timedelta(days=1)).replace(hour=0, minute=0)
            elif moment.hour not in self.hours:
                moment = (moment + timedelta(hours=1)).replace(minute=0)
            elif moment.minute not in self.minutes:
                moment += timedelta(minutes=1)
            else:
                return moment
        raise ValueError(f"cron expression {self.expr!r} matches no time before {limit}")
