"""Time parsing and rendering.

Storage keeps every instant as integer milliseconds since the Unix epoch (UTC): compact, fast to
index and compare on both databases. The API renders instants as ISO 8601 with exactly three
fractional digits (``2021-07-16T16:02:50.037Z``), the shape data-pipeline clients parse.

Accepted instants (``MIN_MS`` to ``MAX_MS``) are those whose UTC date has a four-digit year,
``0001-01-01T00:00:00.000Z`` to ``9999-12-31T23:59:59.999Z``: every path that stores a client's
time checks it here (``parse_instant``, ``check_range``). Rendering is total: an instant that
cannot be written in the requested offset (the first or last hours of the range) is written in
UTC, and a stored value outside the range (written before it was enforced, or by another tool)
in ECMAScript's expanded-year form (``+010000-01-01T00:00:00.000Z``) — a read never fails.
"""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

from opencues.errors import bad_request

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# ASCII digits only: ``\d`` would also take ``٣٠`` (Arabic-Indic digits) as 30.
_OFFSET_RE = re.compile(r"^([+-]?)([0-9]{1,2}):?([0-9]{2})$")
_MINUTES_RE = re.compile(r"[+-]?[0-9]{1,3}")
MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
OUT_OF_RANGE = "is out of range: it must be from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z (in UTC)"
MIN_OFFSET_MINUTES = -12 * 60
MAX_OFFSET_MINUTES = 14 * 60


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_iso(value: object, *, field: str, default_tz: timezone = timezone.utc) -> int:
    """ISO 8601 string → epoch ms. An offset-less time (or a bare date) is read in ``default_tz``."""
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"`{field}` must be an ISO 8601 date-time string")
    text = value.strip()
    try:
        if len(text) == 10 and text[4] == "-":
            d = date.fromisoformat(text)
            parsed = datetime(d.year, d.month, d.day, tzinfo=default_tz)
        else:
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise bad_request(f"`{field}` is not a valid ISO 8601 date-time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_tz)
    return datetime_to_ms(parsed)


def check_range(ms: int, *, field: str) -> int:
    """``ms`` when it is an accepted instant, else a 400 naming ``field``."""
    if MIN_MS <= ms <= MAX_MS:
        return ms
    raise bad_request(f"`{field}` {OUT_OF_RANGE}")


def parse_instant(value: object, *, field: str, default_tz: timezone = timezone.utc) -> int:
    """``parse_iso`` for a time that will be stored: also within ``MIN_MS``..``MAX_MS``."""
    ms = parse_iso(value, field=field, default_tz=default_tz)
    if MIN_MS <= ms <= MAX_MS:  # ``check_range``, inlined: this is on the track hot path
        return ms
    raise bad_request(f"`{field}` {OUT_OF_RANGE}")


def parse_time(value: object, *, field: str, default_tz: timezone = timezone.utc) -> int:
    """ISO 8601 string or epoch milliseconds (a JSON number) → epoch ms."""
    if isinstance(value, bool):
        raise bad_request(f"`{field}` must be an ISO 8601 string or milliseconds since 1970")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):  # int() would raise
            raise bad_request(f"`{field}` must be a finite number of milliseconds")
        return int(value)
    return parse_iso(value, field=field, default_tz=default_tz)


def datetime_to_ms(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@lru_cache(maxsize=4096)
def day_prefix(day: int) -> str:
    """``YYYY-MM-DDT`` of the day ``day`` days after 1970-01-01 (ValueError or OverflowError
    outside years 0001-9999)."""
    return date.fromordinal(_EPOCH_ORDINAL + day).isoformat() + "T"


@lru_cache(maxsize=64)
def offset_suffix(offset_minutes: int) -> str:
    """How ``render`` ends an instant in ``offset_minutes``: ``Z``, or ``+HH:MM`` / ``-HH:MM``."""
    if offset_minutes == 0:
        return "Z"
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# ``render``'s pieces after the day's prefix: the minute of the day's ``HH:MM:``, the second's
# ``SS``, the millisecond's ``.mmm``. Public for a loop that writes many instants inline, as
# ``render`` does (``events.json_page``: a call per instant was a tenth of a history page's cost).
CLOCK_MINUTES = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
CLOCK_SECONDS = [f"{i:02d}" for i in range(60)]
CLOCK_MILLIS = [f".{i:03d}" for i in range(1000)]


def render(ms: int | None, offset_minutes: int = 0) -> str | None:
    """Epoch ms → ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (or a ``±HH:MM`` suffix in another offset).

    Built from cached day prefixes and digit tables rather than ``strftime``: a history page or
    an export renders thousands of these, and this is ten times cheaper.
    """
    if ms is None:
        return None
    day, rest = divmod(ms + offset_minutes * 60_000, 86_400_000)
    try:
        prefix = day_prefix(day)
    except (ValueError, OverflowError):  # not a year 0001-9999 in this offset
        return _render_beyond(ms, offset_minutes)
    minute, rest = divmod(rest, 60_000)
    second, milli = divmod(rest, 1000)
    # One f-string builds one string; a chain of ``+`` built one per piece (~10 % of this call).
    return f"{prefix}{CLOCK_MINUTES[minute]}{CLOCK_SECONDS[second]}{CLOCK_MILLIS[milli]}{offset_suffix(offset_minutes)}"


_DAYS_PER_400_YEARS = 146_097  # the Gregorian calendar repeats every 400 years


def _render_beyond(ms: int, offset_minutes: int) -> str:
    """An instant whose date in ``offset_minutes`` has no four-digit year: in UTC when it is in
    the accepted range, else with an expanded year (a sign and at least six digits; year 0 and
    years beyond 9999 as ECMAScript's ``Date.prototype.toISOString`` writes them)."""
    if offset_minutes and MIN_MS <= ms <= MAX_MS:
        return render(ms, 0)
    day, rest = divmod(ms, 86_400_000)
    # Shift the day by whole 400-year cycles into ``date``'s range, then shift the year back.
    cycles = (day + _EPOCH_ORDINAL - 1) // _DAYS_PER_400_YEARS - 1
    moment = date.fromordinal(day + _EPOCH_ORDINAL - cycles * _DAYS_PER_400_YEARS)
    year = moment.year + 400 * cycles
    if 0 <= year <= 9999:
        head = f"{year:04d}"
    else:
        head = f"{'-' if year < 0 else '+'}{abs(year):06d}"
    seconds, millis = divmod(rest, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{head}-{moment.month:02d}-{moment.day:02d}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def parse_offset(value: object, *, field: str = "time_zone") -> int:
    """``-04:00``, ``+0530``, ``04:00`` or minutes (``-240``, as a number or a string) → minutes east of UTC."""
    minutes: int | None = None
    if isinstance(value, bool):
        minutes = None
    elif isinstance(value, int):
        minutes = value
    elif isinstance(value, float) and value.is_integer():
        minutes = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if _MINUTES_RE.fullmatch(text):
            minutes = int(text)
        else:
            match = _OFFSET_RE.match(text)
            if match:
                sign, hours, mins = match.groups()
                if int(mins) < 60:
                    minutes = int(hours) * 60 + int(mins)
                    if sign == "-":
                        minutes = -minutes
    if minutes is None:
        raise bad_request(f"`{field}` must be an offset like -04:00 or a number of minutes like -240")
    if not MIN_OFFSET_MINUTES <= minutes <= MAX_OFFSET_MINUTES:
        raise bad_request(f"`{field}` must be between -12:00 and +14:00")
    return minutes


def offset_tz(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))
