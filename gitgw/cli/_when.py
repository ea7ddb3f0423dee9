"""Times on the command line: `--since 7d`, `--since 2026-11-10`, `--until 2026-11-10T12:00Z`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

__all__ = ["WHEN", "WHEN_HELP", "parse_when", "show_time"]

WHEN_HELP = (
    "a date (2026-11-10), a time (2026-11-10T09:00Z; UTC unless it says) "
    "or an age (30m, 12h, 7d, 2w)"
)
_AGE = re.compile(r"^(\d+)\s*(m|min|h|d|w)$")
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """The moment `text` names; raises ValueError saying what it accepts."""
    now = now or datetime.now(tz=UTC)
    text = text.strip()
    age = _AGE.match(text.lower())
    if age:
        try:
            return now - timedelta(**{_UNITS[age[2]]: int(age[1])})
        except OverflowError:  # before the year 1
            raise ValueError(f"{text!r} reaches back before the year 1") from None
    if text.lower() == "now":
        return now
    if text.lower() in ("today", "yesterday"):
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - timedelta(days=1 if text.lower() == "yesterday" else 0)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time: use {WHEN_HELP}") from None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in the year 0 in UTC
        raise ValueError(f"{text!r} lies outside the years 1 to 9999 in UTC") from None


class _When(click.ParamType[datetime, Any]):
    name = "WHEN"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


WHEN = _When()


def show_time(moment: datetime | None) -> str:
    """A time as people read it in a table: UTC, to the second."""
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
