"""The extra columns of a members export (`segments members --fields`, `?fields=` on the HTTP route
and the console's CSV export): a comma-separated list of names, each resolved once to a getter
(state, now) -> value, appended after stream.inspect.members.FIELDS.

A name is one of
- GETTERS: every attribute the definitions language reads (stream.rules.attributes.ATTRS), an
  instant as RFC 3339 in UTC, a set as a list; a new family of fixed names (rfm.* ...) is one entry
  each there;
- `custom.<field>`: the customer's custom field, as the events set it;
- `trait.<name>`: a computed trait's value at the partition's stream time, as the engine computes
  it (Trait.value), for a trait of the definitions the partition runs (stream.inspect.running) or
  of the segments file;
- `rfm.r`, `rfm.f`, `rfm.m`, `rfm.cell`: the customer's RFM scores at the partition's stream time
  (stream.rules.rfm.rfm_scores), under the rfm section with cut points the partition runs, else
  the segments file's.

Every unknown name is reported, with a did-you-mean, before a row is written.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stream.errors import Problems
from stream.inspect.running import stored_catalog
from stream.model.state import CustomerState
from stream.model.time import format_rfc3339
from stream.rules.attributes import ATTRS, Attr
from stream.rules.bounded_yaml import brief, clip
from stream.rules.catalog import TRAIT_PREFIX, Catalog
from stream.rules.rfm import CONDITIONS as RFM_FIELDS, Rfm, rfm_scores
from stream.rules.traits import Trait
from stream.storage.committed import Partition

# (state, the stream time of the state's partition) -> the column's value: None (empty in CSV, null
# in JSON), a number, a string, a bool or a list of strings.
Getter = Callable[[CustomerState, int], Any]
CUSTOM_PREFIX = "custom."
_EXAMPLE = {CUSTOM_PREFIX: "tier", TRAIT_PREFIX: "orders_90d"}
MAX_FIELDS = 100                 # a request names at most this many (each costs a getter per member)


def _attribute(attr: Attr) -> Getter:
    get = attr.get
    if attr.kind == "time":
        def instant(st: CustomerState, now: int) -> str | None:
            t = get(st)
            return None if t is None else format_rfc3339(t)
        return instant
    if attr.kind == "set":
        return lambda st, now: list(get(st))
    return lambda st, now: get(st)


# Every fixed column name: a family added later (rfm.r, rfm.f, ...) is one entry each, name -> getter.
GETTERS: dict[str, Getter] = {name: _attribute(attr) for name, attr in ATTRS.items()}


def _custom(key: str) -> Getter:
    return lambda st, now: st.custom.get(key)


def _trait(trait: Trait) -> Getter:
    value = trait.value
    return lambda st, now: value(st, now)[0]


def _rfm(rfm: Rfm, index: int) -> Getter:
    def score(st: CustomerState, now: int) -> int | str | None:
        scores = rfm_scores(rfm, st, now)
        return None if scores is None else scores[index]
    return score


def getter(name: str, traits: Mapping[str, Trait], rfm: Rfm | None = None) -> Getter | None:
    """The getter of column `name`, with `traits` the traits known by name and `rfm` the rfm section
    with cut points, if any; None: no such column."""
    if name in GETTERS:
        return GETTERS[name]
    if name in RFM_FIELDS and rfm is not None:
        return _rfm(rfm, RFM_FIELDS[name])
    if name.startswith(CUSTOM_PREFIX) and len(name) > len(CUSTOM_PREFIX):
        return _custom(name[len(CUSTOM_PREFIX):])
    if name.startswith(TRAIT_PREFIX) and name[len(TRAIT_PREFIX):] in traits:
        return _trait(traits[name[len(TRAIT_PREFIX):]])
    return None


class FieldError(Problems):
    """Names of --fields (or ?fields=) that are no column: every problem, each a sentence; its text
    is them on one line, as the HTTP routes answer it."""

    def __init__(self, problems: list[str]):
        super().__init__(problems, "; ".join(problems))


def requested(text: str) -> tuple[str, ...]:
    """The names of a comma-separated list, spaces around each ignored; none for an empty text."""
    return () if not text.strip() else tuple(name.strip() for name in text.split(","))


def check(names: tuple[str, ...], fixed: Iterable[str], traits: Mapping[str, Trait], rfm: Rfm | None = None) -> None:
    """Raise FieldError naming every name of `names` that is no column (or one of `fixed`, or given
    twice, or an RFM score without an rfm section with cut points), with the nearest known name
    when one is close."""
    if len(names) > MAX_FIELDS:
        raise FieldError([f"at most {MAX_FIELDS} fields, got {len(names):,}"])
    fixed = tuple(fixed)
    problems: list[str] = []
    seen: set[str] = set()
    for position, name in enumerate(names, 1):
        if not name:
            problems.append(f"field {position} is empty (a list of names separated by commas, like city,trait.x)")
        elif name in fixed:
            problems.append(f"field {brief(name)} is always a column")
        elif name in (CUSTOM_PREFIX, TRAIT_PREFIX):
            problems.append(f"field {name!r} needs a name after the prefix, like {name}{_EXAMPLE[name]}")
        elif name in seen:
            problems.append(f"field {brief(name)} is given twice")
        elif name in RFM_FIELDS and rfm is None:
            problems.append(f"field {name!r} needs an rfm section with cut points (docs/rfm.md: "
                            f"`segments rfm calibrate` computes them)")
        elif getter(name, traits, rfm) is None:
            problems.append(f"unknown field {brief(name)}{_hint(name, fixed, traits)}")
        seen.add(name)
    if problems:
        extra = ", ".join(n for n in GETTERS if n not in fixed)
        traits_known = ", ".join(sorted(traits)) or "none"
        problems.append(f"known fields: {extra}, {', '.join(RFM_FIELDS)}, {CUSTOM_PREFIX}<field>, {TRAIT_PREFIX}<name> "
                        f"(traits: {clip(traits_known, 2000)})")
        raise FieldError(problems)


def _hint(name: str, fixed: tuple[str, ...], traits: Mapping[str, Trait]) -> str:
    """` (did you mean ...?)` with the nearest extra column to `name`, or nothing when none is near."""
    prefix, _, rest = name[:200].partition(".")
    if prefix + "." == TRAIT_PREFIX:           # near another trait (the prefix alone would look near)
        candidates = {t: TRAIT_PREFIX + t for t in traits}
        name = rest
    else:                                      # near an attribute, a trait without its prefix, custom.x
        candidates = {**{a: a for a in GETTERS if a not in fixed}, **{r: r for r in RFM_FIELDS},
                      **{t: TRAIT_PREFIX + t for t in traits}}
        if rest:
            candidates[CUSTOM_PREFIX + rest] = CUSTOM_PREFIX + rest
        name = name[:200]
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {candidates[close[0]]!r}?)" if close else ""


Extra = Callable[[CustomerState], tuple[Any, ...]]


@dataclasses.dataclass(frozen=True)
class Columns:
    """Extra columns checked against the traits of some stores: their names, and per partition the
    traits it computes them by (those its definitions run, else the file's, else another
    partition's, for one it has not taken up yet) and the rfm section it scores by (its own with
    cut points, else the file's)."""
    names: tuple[str, ...]
    traits: Mapping[int, Mapping[str, Trait]]
    rfm: Mapping[int, Rfm | None] = dataclasses.field(default_factory=dict)

    def of(self, partition: Partition) -> Extra:
        """state -> the extra values of a member of `partition`, at its stream time."""
        traits = self.traits[partition.number]
        found = [getter(name, traits, self.rfm.get(partition.number)) for name in self.names]
        getters = tuple(get for get in found if get is not None)
        assert len(getters) == len(found), "the names were checked against these traits"
        now = partition.stream_time or 0
        return lambda st: tuple([get(st, now) for get in getters])


def columns(text: str, fixed: Iterable[str], partitions: list[Partition], catalog: Catalog) -> Columns:
    """The columns `text` names, over `partitions` run with `catalog` (the segments file's, or the
    worker's running definitions) as their default; FieldError when one is none. No names: no
    columns, and no store is read."""
    names = requested(text)
    if not names:
        return Columns((), {})
    own: dict[int, Mapping[str, Trait]] = {}
    scored: dict[int, Rfm | None] = {}
    for partition in partitions:
        stored = stored_catalog(partition, catalog)
        own[partition.number] = stored.traits if stored is not None else {}
        scored[partition.number] = _with_cuts(stored.rfm if stored is not None else None) or _with_cuts(catalog.rfm)
    known: dict[str, Trait] = dict(catalog.traits)
    for traits in own.values():
        known.update(traits)
    rfm = next((r for r in scored.values() if r is not None), _with_cuts(catalog.rfm))
    check(names, fixed, known, rfm)
    return Columns(names, {number: {**known, **catalog.traits, **traits} for number, traits in own.items()},
                   {number: scored[number] or rfm for number in own})


def _with_cuts(rfm: Rfm | None) -> Rfm | None:
    """The section if it scores (has cut points)."""
    return rfm if rfm is not None and rfm.cuts is not None else None
