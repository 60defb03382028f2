"""stream.model.time: instants as integer microseconds, and their RFC 3339 text."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.model.time import AFTER_TIME, BEFORE_TIME, DAY, format_rfc3339, from_datetime

UTC = dt.UTC
FIRST = from_datetime(dt.datetime(1, 1, 1, tzinfo=UTC))
LAST = from_datetime(dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))


def isoformat(micros: int) -> str:
    """What format_rfc3339 computes in integers, the way datetime writes it."""
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)).isoformat() + "Z"


@given(st.integers(FIRST, LAST))
def test_format_is_what_datetime_writes(micros):
    assert format_rfc3339(micros) == isoformat(micros)


@pytest.mark.parametrize("micros", [
    FIRST, LAST, 0, -1, 1, DAY - 1, -DAY, 951782400 * 10**6,        # 2000-02-29 (a leap day of a century)
    -2208988800 * 10**6, 4107542400 * 10**6 - 1,                     # 1900-01-01, 2100-02-28T23:59:59.999999
    *(from_datetime(dt.datetime(year, month, day, tzinfo=UTC)) + shift
      for year in (1, 4, 100, 400, 1600, 1969, 1970, 2024, 9999) for month, day in ((1, 1), (2, 28), (3, 1), (12, 31))
      for shift in (0, -1, 1)
      if FIRST <= from_datetime(dt.datetime(year, month, day, tzinfo=UTC)) + shift <= LAST),
])
def test_format_at_calendar_edges(micros):
    assert format_rfc3339(micros) == isoformat(micros)


@pytest.mark.parametrize("micros", [FIRST - 1, LAST + 1, BEFORE_TIME, AFTER_TIME])
def test_instants_no_datetime_holds_cannot_be_written(micros):
    with pytest.raises(OverflowError):
        format_rfc3339(micros)


@given(st.datetimes(timezones=st.just(UTC)))
def test_from_datetime_counts_microseconds_since_the_epoch(value):
    assert from_datetime(value) == (value - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)
