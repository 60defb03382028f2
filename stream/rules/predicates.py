"""The compiled conditions: each a function `(state, now) -> (holds, next_flip)`, whether it holds
at `now`, and the earliest instant after `now` at which it could change with no new event (None if
never). The engine keeps the smallest `next_flip` of a customer's segments as that customer's
timer, which is how "no order for 60 days" moves a customer on the day with no event arriving.

`next_flip` may be early (a composite reports the first instant any part could flip; the engine
re-evaluates then and finds nothing changed), but never late: every real flip is reported.
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Callable

import cython

from stream.model.state import CustomerState
from stream.model.time import DAY

Test = Callable[[CustomerState, int], "tuple[bool, int | None]"]
# What a condition compares: a literal of the definition (an instant as microseconds, a date as its
# ISO text), and an attribute's value, None when the customer has none.
Scalar = str | int | float | bool
Value = Scalar | None
Compare = Callable[[Scalar, Scalar], bool]
Getter = Callable[[CustomerState], Value]


def _same_kind(a: Scalar, b: Scalar) -> bool:
    # bool is an int in Python; a custom field holding true must not equal 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str)
    return True


def compare_untyped(compare: Compare, a: Value, b: Scalar) -> bool:
    """Custom fields hold any JSON scalar: a value of another kind satisfies no comparison."""
    return a is not None and _same_kind(a, b) and compare(a, b)


def member(value: Value, values: list[Scalar]) -> bool:
    return value is not None and any(_same_kind(value, v) and value == v for v in values)


def static(holds: Callable[[CustomerState], bool]) -> Test:
    """A condition time alone cannot change."""
    return lambda st, now: (holds(st), None)


def compare_literal(get: Getter, compare: Compare, value: Scalar) -> Test:
    """A typed attribute against a literal checked at load time; a missing value satisfies nothing."""
    def test(st: CustomerState, now: int) -> tuple[bool, None]:
        v = get(st)
        return (v is not None and compare(v, value)), None
    return test


def compare_attrs(get: Getter, compare: Compare, other: Getter) -> Test:
    def test(st: CustomerState, now: int) -> tuple[bool, None]:
        a, b = get(st), other(st)
        return (a is not None and b is not None and compare(a, b)), None
    return test


# within and ago mirror each other (the verdict before and after t + span). They stay two functions:
# one shared closure reads its verdicts from cells instead of constants, measured 5% slower a call,
# and these run for every customer an event or timer re-evaluates.

def within(get: Callable[[CustomerState], int | None], span: int) -> Test:
    """now - t < span: holds until t + span."""
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        t = get(st)
        if t is None:
            return False, None
        end = t + span
        return (True, end) if now < end else (False, None)
    return test


def ago(get: Callable[[CustomerState], int | None], span: int) -> Test:
    """now - t >= span: holds from t + span on."""
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        t = get(st)
        if t is None:
            return False, None
        start = t + span
        return (True, None) if now >= start else (False, start)
    return test


# Segment references (`segment: {name: ...}`): the referenced segment's membership as the engine
# holds it, which it updates before evaluating the dependants (stream.rules.catalog orders them).

def member_of(name: str) -> Test:
    """A member of segment `name`; time alone never changes it (its own moves re-evaluate this)."""
    def test(st: CustomerState, now: int) -> tuple[bool, None]:
        return name in st.member, None
    return test


def member_for(name: str, span: int) -> Test:
    """A member of `name` since span or longer: holds from since + span on (as ago)."""
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        since = st.member.get(name)
        if since is None:
            return False, None
        start = since + span
        return (True, None) if now >= start else (False, start)
    return test


def left_within(name: str, span: int) -> Test:
    """Not a member of `name`, and its last exit less than span ago: until exit + span (as within)."""
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        exits = st.left
        if exits is None or name in st.member:
            return False, None
        exit_at = exits.get(name)
        if exit_at is None:
            return False, None
        end = exit_at + span
        return (True, end) if now < end else (False, None)
    return test


def birthday_within(get: Callable[[CustomerState], str | None], days: int) -> Test:
    """The next birthday (today counts) is fewer than `days` days away, in UTC calendar days.
    People born on 29 February celebrate on 28 February in other years."""
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        born = get(st)
        if born is None:
            return False, None
        today = _dt.date(1970, 1, 1) + _dt.timedelta(days=now // DAY)
        birthday = _next_birthday(born, today)
        if (birthday - today).days < days:
            return True, _midnight(birthday + _dt.timedelta(days=1))
        return False, _midnight(birthday - _dt.timedelta(days=days - 1))
    return test


def _midnight(day: _dt.date) -> int:
    return (day - _dt.date(1970, 1, 1)).days * DAY


def _next_birthday(born: str, today: _dt.date) -> _dt.date:
    month, day = int(born[5:7]), int(born[8:10])
    for year in (today.year, today.year + 1):
        try:
            candidate = _dt.date(year, month, day)
        except ValueError:      # 29 February in a common year
            candidate = _dt.date(year, 2, 28)
        if candidate >= today:
            return candidate
    raise AssertionError("unreachable: a birthday recurs within a year")


def repeated(stream: str, at_least: int, window: int, orders: str, without: int | None) -> Test:
    """Some item has >= at_least events within `window`, and (with `without`) no order of that item
    within `without`. Per item, the condition holds from the order block's end until the
    at_least-th newest event leaves the window; the next flip is the nearest of those instants."""
    # C copies: the test loops over a customer's items on every evaluation.
    count: cython.Py_ssize_t = at_least
    span: cython.longlong = window
    block: cython.longlong = 0 if without is None else without      # read only with `without`
    blocked: cython.bint = without is not None

    @cython.locals(now=cython.longlong, end=cython.longlong, flip=cython.longlong, nxt=cython.longlong,
                   holds=cython.bint, found=cython.bint)
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        items = st.streams.get(stream)
        if not items:
            return False, None
        ordered = st.streams.get(orders) if blocked else None
        holds, found, nxt = False, False, 0
        for key, times in items.items():
            if len(times) < count:
                continue
            end = cython.cast(cython.longlong, times[-count]) + span
            if end <= now:
                continue
            flip = end
            if ordered:
                last = ordered.get(key)
                if last is not None and now < cython.cast(cython.longlong, last[-1]) + block:
                    flip = cython.cast(cython.longlong, last[-1]) + block
                    if flip >= end:
                        continue         # the order block outlasts the views: never holds
                else:
                    holds = True
            else:
                holds = True
            if not found or flip < nxt:
                nxt, found = flip, True
        return holds, (nxt if found else None)
    return test


# all_of and any_of mirror each other likewise, and are the loop every composite runs.

def all_of(tests: tuple[Test, ...]) -> Test:
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        holds, nxt = True, None
        for part in tests:
            value, flip = part(st, now)
            if not value:
                if flip is None:
                    return False, None   # a false part that time cannot turn: nothing to wait for
                holds = False
            if flip is not None and (nxt is None or flip < nxt):
                nxt = flip
        return holds, nxt
    return test


def any_of(tests: tuple[Test, ...]) -> Test:
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        holds, nxt = False, None
        for part in tests:
            value, flip = part(st, now)
            if value:
                if flip is None:
                    return True, None    # a true part that time cannot turn: nothing to wait for
                holds = True
            if flip is not None and (nxt is None or flip < nxt):
                nxt = flip
        return holds, nxt
    return test


def negation(inner: Test) -> Test:
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        value, flip = inner(st, now)
        return not value, flip
    return test

