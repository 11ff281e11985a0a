"""Business dates: D, the cut-off window and ranges."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from core.errors import ConfigError


def parse_date(text: str) -> dt.date:
    """A ``YYYY-MM-DD`` argument, or a ConfigError saying so."""
    try:
        return dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ConfigError(f"not a date: {text!r}; use YYYY-MM-DD, e.g. 2026-11-20") from None


def yesterday(timezone: str, now: dt.datetime | None = None) -> dt.date:
    """Yesterday in the business time zone (the default --date)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return (now.astimezone(ZoneInfo(timezone)) - dt.timedelta(days=1)).date()


def date_range(first: dt.date, last: dt.date) -> list[dt.date]:
    if last < first:
        raise ConfigError(f"--to {last} is before --from {first}")
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def window_start(day: dt.date, cutoff_minutes: int) -> str:
    """First timestamp (``YYYY-MM-DD HH:MM:SS``) inside the cut-off window before the end of ``day``.

    Times are compared as fixed-width strings in the business time zone, which
    orders them exactly as instants.
    """
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    return (end - dt.timedelta(minutes=cutoff_minutes)).strftime("%Y-%m-%d %H:%M:%S")
