"""Instants are integer microseconds since the Unix epoch (UTC).

Integers keep time arithmetic exact: "60 days after t" is t + 5_184_000_000_000 with no float
rounding, so a boundary lands on the same microsecond in every driver and on every machine.
"""
from __future__ import annotations

import datetime as _dt
import re

import cython

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
DAY_MS = 24 * 3600 * 1000       # a day in milliseconds: Kafka's and the wall clock's unit
# Instants outside any event's time: a clock that has seen no event yet, and "no upper bound".
# Far from the int64 ends so that adding a duration to them cannot overflow a C int64.
BEFORE_TIME = -(1 << 62)
AFTER_TIME = 1 << 62

# C copies for the compiled conversions; the instants a datetime can hold (years 1 to 9999), which
# format_rfc3339 writes itself.
_SECOND: int = cython.declare(cython.longlong, SECOND)
_DAY: int = cython.declare(cython.longlong, DAY)
_FIRST_INSTANT: int = cython.declare(cython.longlong, -62135596800 * SECOND)       # 0001-01-01T00:00:00Z
_PAST_LAST_INSTANT: int = cython.declare(cython.longlong, 253402300800 * SECOND)   # 10000-01-01T00:00:00Z

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_UTC = _dt.UTC
_NAIVE_EPOCH = _EPOCH.replace(tzinfo=None)
_DURATION = re.compile(r"^\s*(\d+)\s*(d|h|m|s)\s*$")
_UNITS = {"d": DAY, "h": HOUR, "m": MINUTE, "s": SECOND}


@cython.locals(days=cython.longlong, seconds=cython.longlong, micros=cython.longlong)
def from_datetime(value: _dt.datetime, _epoch: _dt.datetime = _EPOCH) -> int:
    """Aware datetime -> microseconds (exact; timedelta fields are integers)."""
    delta = value - _epoch
    days, seconds, micros = delta.days, delta.seconds, delta.microseconds
    return (days * 86400 + seconds) * _SECOND + micros


def to_datetime(micros: int) -> _dt.datetime:
    return _EPOCH + _dt.timedelta(microseconds=micros)


@cython.locals(days=cython.longlong, rest=cython.longlong, seconds=cython.longlong, fraction=cython.longlong,
               z=cython.longlong, era=cython.longlong, doe=cython.longlong, yoe=cython.longlong,
               doy=cython.longlong, mp=cython.longlong, year=cython.longlong, month=cython.longlong,
               day=cython.longlong)
def format_rfc3339(micros: cython.longlong) -> str:
    """RFC 3339 in UTC with a Z; fractional seconds (6 digits) only when there are any: what
    datetime.isoformat() writes, computed in integers (every segment change carries one)."""
    if micros < _FIRST_INSTANT or micros >= _PAST_LAST_INSTANT:
        # Outside what a datetime holds: the OverflowError datetime raises.
        return (_NAIVE_EPOCH + _dt.timedelta(microseconds=micros)).isoformat() + "Z"
    days = micros // _DAY                # floor division: instants before 1970 count back
    rest = micros - days * _DAY
    seconds, fraction = rest // _SECOND, rest % _SECOND
    # The proleptic Gregorian date of a day number (H. Hinnant's days_from_civil, inverted): 400-year
    # eras from 0000-03-01, so the leap day ends a year.
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    text = (f"{year:04d}-{month:02d}-{day:02d}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:"
            f"{seconds % 60:02d}")
    return f"{text}.{fraction:06d}Z" if fraction else f"{text}Z"


def parse_rfc3339(text: str) -> int:
    """Parse a timestamp given on a command line; a missing offset is an error, not UTC."""
    try:
        dt = _dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from exc
    if dt.tzinfo is None:
        raise ValueError(f"an RFC 3339 timestamp needs a UTC offset or Z: {text!r}")
    return from_datetime(dt.astimezone(_UTC))


# Accepted event times, and the longest duration a rule may use: together they keep every instant
# the engine computes (an event time plus a duration) inside what RFC 3339 can write (years 1-9999).
EARLIEST = -2208988800 * SECOND            # 1900-01-01T00:00:00Z
LATEST = 221845392000 * SECOND             # 9000-01-01T00:00:00Z (exclusive)
LONGEST = 36500 * DAY                      # 100 years


def parse_duration(text: object) -> int:
    """'30d', '24h', '90m', '45s' -> microseconds (positive, at most 100 years)."""
    if not isinstance(text, str):
        raise ValueError(f"a duration is a string like 30d, 24h, 90m or 45s, got {text!r}")
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"a duration is a positive whole number with d, h, m or s, like 30d; got {text!r}")
    micros = int(match.group(1)) * _UNITS[match.group(2)]
    if micros > LONGEST:
        raise ValueError(f"a duration is at most 36500d (100 years); got {text!r}")
    return micros
