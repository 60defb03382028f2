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
    return (days * 86400 + seconds) * 1_000_000 + micros


def to_datetime(micros: int) -> _dt.datetime:
    return _EPOCH + _dt.timedelta(microseconds=micros)


def format_rfc3339(micros: int, _epoch: _dt.datetime = _NAIVE_EPOCH,
                   _delta: type[_dt.timedelta] = _dt.timedelta) -> str:
    """RFC 3339 in UTC with a Z; fractional seconds (6 digits) only when there are any.
    isoformat of a naive datetime is several times faster than strftime."""
    return (_epoch + _delta(microseconds=micros)).isoformat() + "Z"


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
