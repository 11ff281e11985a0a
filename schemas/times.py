"""Times in statements: one rule for every normalizer. A time is a real calendar moment or the row is rejected."""

from __future__ import annotations

import datetime as dt
import re

STANDARD_FORMAT = "%Y-%m-%d %H:%M:%S"  # DESIGN: txn_time is YYYY-MM-DD HH:MM:SS
_STANDARD = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")  # ASCII digits only
_COMPACT = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})")
_EXACT = {STANDARD_FORMAT: _STANDARD, "%Y%m%d%H%M%S": _COMPACT}  # matched exactly, built field by field
_HUMAN = {STANDARD_FORMAT: "yyyy-MM-dd HH:mm:ss", "%Y%m%d%H%M%S": "yyyyMMddhhmmss",
          "%Y/%m/%d %H:%M:%S %z": "yyyy/mm/dd hh:mm:ss ±hhmm"}


class TimeError(ValueError):
    """Text that is not a valid time: a wrong shape, or a date or clock reading that does not exist."""


def parse_time(text: str, formats: str | tuple[str, ...] = STANDARD_FORMAT, *, what: str = "time") -> dt.datetime:
    """``text`` as a datetime, or ``TimeError`` naming ``what``, the value and why.

    Why one function: each normalizer used to check the shape of a time with its own regular expression, and a
    shape check lets ``2026-02-30`` or ``24:00:00`` through (such rows became carried PENDING_CUTOFF items). Here
    the standard format is matched exactly (two digits each, no spaces around) and then built as a datetime, so
    the calendar decides; any other format goes through ``strptime``, which builds a datetime too. Leap seconds
    (``:60``) are refused: no channel clock stamps them and the standard time cannot hold them.
    """
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    problems = []
    for fmt in formats:
        try:
            return _parse_one(text, fmt)
        except ValueError as exc:
            problems.append(str(exc))
    shapes = " or ".join(_HUMAN.get(f, f) for f in formats)
    raise TimeError(f"{what} {text!r} is not a valid time ({shapes}): {problems[0]}")


def _parse_one(text: str, fmt: str) -> dt.datetime:
    if fmt in _EXACT:  # the calendar's own reason ("hour must be in 0..23"), not strptime's "does not match"
        m = _EXACT[fmt].fullmatch(text)
        if m is None:
            raise ValueError("wrong shape")
        return dt.datetime(*map(int, m.groups()))  # ValueError: "day is out of range for month", "hour must be…"
    try:
        return dt.datetime.strptime(text, fmt)
    except ValueError as exc:
        raise ValueError("wrong shape" if "does not match" in str(exc) else str(exc)) from None


def standard_time(text: str, *, what: str = "time") -> str:
    """A time already in the standard format, validated (``parse_time``) and returned as it was."""
    parse_time(text, STANDARD_FORMAT, what=what)
    return text


def format_time(moment: dt.datetime) -> str:
    """The standard text of a time."""
    return moment.strftime(STANDARD_FORMAT)


def arrow_times_valid(values, mask=None) -> bool:
    """Whether ``parse_time`` accepts every one of ``values`` (Arrow strings; only where ``mask`` is true, if
    given) in the standard format.

    For bulk paths only, as a fast filter: the exact shape by regular expression, then Arrow's cast to a
    timestamp, which refuses 2026-02-30, 24:00 and :60 but takes year 0000 (refused explicitly). False sends
    the block row by row, where ``parse_time`` decides; a property test checks that both agree.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if mask is not None:
        values = pc.filter(values, mask)
    if len(values) == 0:
        return True
    if not pc.all(pc.match_substring_regex(values, "^" + _STANDARD.pattern + "$")).as_py():
        return False
    if pc.any(pc.starts_with(values, "0000")).as_py():
        return False
    try:
        values.cast(pa.timestamp("s"))
    except pa.ArrowInvalid:
        return False
    return True
