"""Live RFM: the `rfm:` section of a definitions file (which attribute or trait measures recency,
frequency and monetary value, the number of score levels and the cut points per dimension), the
scores it gives a customer at `now`, and the `rfm.r`, `rfm.f`, `rfm.m` and `rfm.cell` conditions
(stream.rules.compiler calls `condition`). Grammar, score and cell tables: docs/rfm.md.

The cut points are data: `segments rfm calibrate` (stream.cli.rfm) computes them from a
population and writes them as a new definitions version; nothing here looks at other customers,
so the engine stays deterministic. Recency is a time: the R score drops at the exact instant
now - last crosses a cut (as `ago` does, now - last >= cut), which is the conditions' next flip.

On the definitions topic the section travels as one versioned entry under RFM_KEY, a key no
segment name can take (segment names have no '.').
"""
from __future__ import annotations

import difflib
import hashlib
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field as dataclass_field
from typing import Any

import msgspec

from stream.model.state import CustomerState
from stream.model.time import DAY, HOUR, MINUTE, SECOND, parse_duration
from stream.rules.attributes import ATTRS
from stream.rules.bounded_yaml import brief, clip
from stream.rules.problems import DefinitionError, key_names
from stream.rules.traits import Trait

RFM_KEY = "rfm.scores"
DIMENSIONS = ("recency", "frequency", "monetary")
DEFAULTS = {"recency": "last_paid_at", "frequency": "paid_orders", "monetary": "paid_total"}
DEFAULT_LEVELS = 5
MIN_LEVELS, MAX_LEVELS = 2, 9
_KEYS = {*DIMENSIONS, "levels", "cuts", "version", "description"}
# What a condition reads: rfm.<name> -> the index in (r, f, m, cell)
CONDITIONS = {"rfm.r": 0, "rfm.f": 1, "rfm.m": 2, "rfm.cell": 3}

# The named cells on R and F, each scaled to 1..5 (cell_of): (name, R scores, F scores). They tile
# the 5 x 5 grid; M is not part of the cell (conditions read rfm.m for it).
CELL_TABLE: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = (
    ("champions", (5,), (4, 5)),
    ("loyal", (3, 4), (4, 5)),
    ("potential-loyalist", (4, 5), (2, 3)),
    ("new", (5,), (1,)),
    ("promising", (4,), (1,)),
    ("need-attention", (3,), (3,)),
    ("about-to-sleep", (3,), (1, 2)),
    ("at-risk", (1, 2), (3, 4)),
    ("cannot-lose", (1, 2), (5,)),
    ("hibernating", (1, 2), (1, 2)),       # but R 1, F 1: lost
    ("lost", (1,), (1,)),
)
CELLS = tuple(name for name, _, _ in CELL_TABLE)
_GRID: dict[tuple[int, int], str] = {(r, f): name for name, rs, fs in CELL_TABLE for r in rs for f in fs}
assert len(_GRID) == 25 and all((r, f) in _GRID for r in range(1, 6) for f in range(1, 6))


def to_five(score: int, levels: int) -> int:
    """A score of 1..levels on the 1..5 scale of the cell table, rounded half up (1 -> 1, levels -> 5)."""
    return 1 + (8 * (score - 1) + levels - 1) // (2 * (levels - 1))


def cell_of(r: int, f: int, levels: int) -> str:
    return _GRID[(to_five(r, levels), to_five(f, levels))]


# A measure's value at now and when time alone next changes it (a trait's window), None if never.
Measured = Callable[[CustomerState, int], "tuple[Any, int | None]"]


@dataclass(frozen=True)
class Measure:
    name: str                    # as written: an attribute, or trait.<name>
    group: str                   # the state field group it reads (stream.rules.attributes)
    trait: str | None            # the trait's name, for one
    value: Measured = dataclass_field(compare=False)


def _attribute_measure(name: str) -> Measured:
    get = ATTRS[name].get
    return lambda st, now: (get(st), None)


Scores = tuple[int, int, int]


@dataclass(frozen=True)
class Rfm:
    definition: dict[str, Any]
    recency: Measure
    frequency: Measure
    monetary: Measure
    levels: int
    cuts: tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]] | None   # recency's in microseconds
    key: int                     # what it scores, whatever its version or description
    # (state, now) -> (scores or None, R's next change, F's and M's next change): _scorer
    scores: Callable[[CustomerState, int], tuple[Scores | None, int | None, int | None]] = dataclass_field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", _scorer(self))

    @property
    def groups(self) -> frozenset[str]:
        return frozenset({self.recency.group, self.frequency.group, self.monetary.group})

    @property
    def traits(self) -> frozenset[str]:
        return frozenset(m.trait for m in (self.recency, self.frequency, self.monetary) if m.trait is not None)

    def measured(self, st: CustomerState, now: int) -> tuple[int, Any, Any] | None:
        """(age of the last order, frequency, monetary) at now; None without all three."""
        last = self.recency.value(st, now)[0]
        f = self.frequency.value(st, now)[0]
        m = self.monetary.value(st, now)[0]
        if last is None or f is None or m is None:
            return None
        return now - last, f, m


def crossed(value: Any, cuts: tuple[Any, ...]) -> int:
    """How many cuts are at or below `value` (the cuts ascend)."""
    n = 0
    for cut in cuts:
        if value < cut:
            break
        n += 1
    return n


def score_of(index: int, value: Any, cuts: tuple[Any, ...], levels: int) -> int:
    """A dimension's score (index 0: recency, from the age now - last; 1, 2: frequency, monetary)."""
    return levels - crossed(value, cuts) if index == 0 else 1 + crossed(value, cuts)


def _scorer(rfm: Rfm) -> Callable[[CustomerState, int], tuple[Scores | None, int | None, int | None]]:
    recency, frequency, monetary, levels = rfm.recency.value, rfm.frequency.value, rfm.monetary.value, rfm.levels
    r_cuts, f_cuts, m_cuts = rfm.cuts or ((), (), ())

    def scores(st: CustomerState, now: int) -> tuple[Scores | None, int | None, int | None]:
        last = recency(st, now)[0]
        f, f_next = frequency(st, now)
        m, m_next = monetary(st, now)
        fm_next = m_next if f_next is None or (m_next is not None and m_next < f_next) else f_next
        if last is None:
            return None, None, fm_next
        age = crossed(now - last, r_cuts)
        r_next = last + r_cuts[age] if age < len(r_cuts) else None
        if f is None or m is None:
            return None, r_next, fm_next
        return (levels - age, score_of(1, f, f_cuts, levels), score_of(2, m, m_cuts, levels)), r_next, fm_next
    return scores


def rfm_scores(rfm: Rfm | None, st: CustomerState, now: int) -> tuple[int, int, int, str] | None:
    """(r, f, m, cell) of a customer at now; None without an rfm section with cuts, or for a customer
    without all three measures (one who never paid). For readers of the stores (members --fields,
    explain)."""
    if rfm is None or rfm.cuts is None:
        return None
    scores = rfm.scores(st, now)[0]
    if scores is None:
        return None
    r, f, m = scores
    return r, f, m, cell_of(r, f, rfm.levels)


# ------------------------------------------------------------------------------------------------
# The section's grammar


def compile_rfm(definition: object, where: str, traits: dict[str, Trait], broken: frozenset[str] = frozenset()
                ) -> Rfm:
    """The `rfm:` section (or the RFM_KEY entry of the definitions topic), every problem reported."""
    if not isinstance(definition, dict):
        raise DefinitionError([f"{where}: expected a mapping (recency, frequency, monetary, levels, cuts)"])
    problems: list[str] = []
    unknown = set(definition) - _KEYS
    if unknown:
        problems.append(f"{where}: unknown key(s) {key_names(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
    version = definition.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problems.append(f"{where}: version must be a whole number >= 1, got {brief(version)}")
    if not isinstance(definition.get("description", ""), str):
        problems.append(f"{where}: description must be text")
    measures = [_measure(dim, definition.get(dim, DEFAULTS[dim]), f"{where}.{dim}", traits, broken, problems)
                for dim in DIMENSIONS]
    levels = definition.get("levels", DEFAULT_LEVELS)
    if not isinstance(levels, int) or isinstance(levels, bool) or not MIN_LEVELS <= levels <= MAX_LEVELS:
        problems.append(f"{where}.levels: a whole number from {MIN_LEVELS} to {MAX_LEVELS}; got {brief(levels)}")
        levels = None
    cuts = None
    if "cuts" in definition and levels is not None:
        cuts = _cuts(definition["cuts"], levels, f"{where}.cuts", problems)
    recency, frequency, monetary = measures
    if problems or recency is None or frequency is None or monetary is None or levels is None:
        raise DefinitionError(problems)
    return Rfm(definition, recency, frequency, monetary, levels, cuts, definition_key(definition))


def definition_key(definition: dict[str, Any]) -> int:
    """What the section scores, stable across processes: without version and description."""
    what = {k: v for k, v in definition.items() if k not in ("version", "description")}
    encoded = msgspec.json.Encoder(order="sorted").encode(what)
    return int.from_bytes(hashlib.blake2b(encoded, digest_size=8).digest(), "big") >> 1


def _measure(dim: str, name: object, where: str, traits: dict[str, Trait], broken: frozenset[str],
             problems: list[str]) -> Measure | None:
    wanted = "time" if dim == "recency" else "number"
    choices = [n for n, a in ATTRS.items() if a.kind == wanted]
    if not isinstance(name, str):
        problems.append(f"{where}: an attribute name{'' if dim == 'recency' else ' or trait.<name>'}; "
                        f"got {brief(name)}")
        return None
    if name.startswith("trait.") and dim != "recency":
        key = name[len("trait."):]
        trait = traits.get(key)
        if trait is None:
            if key in broken:
                problems.append(f"{where}: trait {brief(key)} is invalid (its problems are listed)")
            else:
                hint = difflib.get_close_matches(key, list(traits), n=1)
                suggestion = f" (did you mean {'trait.' + hint[0]!r}?)" if hint else ""
                problems.append(f"{where}: unknown trait {brief(key)}{suggestion}; traits defined: "
                                f"{clip(', '.join(sorted(traits)) or 'none', 200)}")
            return None
        if trait.kind != "number":
            problems.append(f"{where}: trait {key!r} is not a number (its value is {trait.kind})")
            return None
        return Measure(name, trait.group, key, trait.value)
    attr = ATTRS.get(name)
    if attr is None or attr.kind != wanted:
        hint = difflib.get_close_matches(name, choices, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        what = "a time attribute" if dim == "recency" else "a number attribute or trait.<name> of a number trait"
        problems.append(f"{where}: {what}; got {brief(name)}{suggestion}; {wanted} attributes: {', '.join(choices)}")
        return None
    return Measure(name, attr.group, None, _attribute_measure(name))


def _cuts(spec: object, levels: int, where: str, problems: list[str]
          ) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]] | None:
    """levels - 1 strictly ascending cut points per dimension: durations for recency, numbers else."""
    if not isinstance(spec, dict) or set(spec) != set(DIMENSIONS):
        problems.append(f"{where}: a mapping with recency, frequency and monetary, each a list of {levels - 1} "
                        f"ascending cut points (segments rfm calibrate computes them); got {brief(spec)}")
        return None
    out: list[tuple[Any, ...]] = []
    for dim in DIMENSIONS:
        at = f"{where}.{dim}"
        values = spec[dim]
        if not isinstance(values, list) or len(values) != levels - 1:
            problems.append(f"{at}: a list of {levels - 1} cut points (levels - 1); got {brief(values)}")
            continue
        parsed: list[Any] = []
        for i, value in enumerate(values):
            if dim == "recency":
                try:
                    parsed.append(parse_duration(value))
                except ValueError as exc:
                    problems.append(f"{at}[{i}]: {clip(str(exc), 200)}")
            elif (isinstance(value, int) and not isinstance(value, bool)) or (
                    isinstance(value, float) and math.isfinite(value)):
                parsed.append(value)
            else:
                problems.append(f"{at}[{i}]: expected a number, got {brief(value)}")
        if len(parsed) == len(values):
            if any(b <= a for a, b in zip(parsed, parsed[1:], strict=False)):
                problems.append(f"{at}: cut points must be strictly ascending; got {brief(values)}")
            out.append(tuple(parsed))
    if len(out) != 3:
        return None
    return out[0], out[1], out[2]


# ------------------------------------------------------------------------------------------------
# Conditions: rfm.r / rfm.f / rfm.m: {op: score}, rfm.cell: {eq|ne: name, in: [names]}

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
SCORE_OPERATORS = {*_COMPARE, "in", "exists"}
CELL_OPERATORS = {"eq", "ne", "in", "exists"}
Test = Callable[[CustomerState, int], "tuple[bool, int | None]"]
ValueAt = Callable[[CustomerState, int], Any]


def value_at(rfm: Rfm, name: str) -> ValueAt:
    """What the explanation shows for a leaf on `name`: the score (or cell) at now, None without one."""
    index = CONDITIONS[name]

    def value(st: CustomerState, now: int) -> Any:
        found = rfm_scores(rfm, st, now)
        return None if found is None else found[index]
    return value


def condition(rfm: Rfm | None, name: str, op: str, operand: object, where: str) -> Test:
    """One operator on rfm.r/f/m/cell, its literal checked; a customer without scores satisfies
    no comparison (`exists: false` only)."""
    if name not in CONDITIONS:
        hint = difflib.get_close_matches(name, list(CONDITIONS), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise DefinitionError([f"{where}: unknown RFM value {brief(name)}{suggestion}; one of "
                               f"{', '.join(CONDITIONS)}"])
    if rfm is None or rfm.cuts is None:
        raise DefinitionError([f"{where}: {name} needs the rfm section's cut points (rfm.cuts); run "
                               f"`segments rfm calibrate` to compute them"])
    index = CONDITIONS[name]
    allowed = CELL_OPERATORS if index == 3 else SCORE_OPERATORS
    if op not in allowed:
        raise DefinitionError([f"{where}: operator {brief(op)} does not apply to {name}; use one of "
                               f"{', '.join(sorted(allowed))}"])
    if op == "exists":
        if not isinstance(operand, bool):
            raise DefinitionError([f"{where}: exists takes true or false"])
        return _test(rfm, index, lambda v: (v is not None) is operand)
    literals = operand if op == "in" else [operand]
    if op == "in" and (not isinstance(operand, list) or not operand):
        raise DefinitionError([f"{where}: expected a non-empty list"])
    assert isinstance(literals, list)
    for value in literals:
        _literal(rfm, index, value, where)
    if op == "in":
        members = frozenset(literals)
        return _test(rfm, index, lambda v: v is not None and v in members)
    compare, literal = _COMPARE[op], operand
    return _test(rfm, index, lambda v: v is not None and compare(v, literal))


def _literal(rfm: Rfm, index: int, value: object, where: str) -> None:
    if index == 3:
        if not isinstance(value, str) or value not in CELLS:
            hint = difflib.get_close_matches(value, CELLS, n=1) if isinstance(value, str) else []
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise DefinitionError([f"{where}: unknown cell {brief(value)}{suggestion}; cells: {', '.join(CELLS)}"])
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= rfm.levels:
        raise DefinitionError([f"{where}: a score is a whole number from 1 to {rfm.levels} (levels); "
                               f"got {brief(value)}"])


def _test(rfm: Rfm, index: int, holds: Callable[[Any], bool]) -> Test:
    """The verdict at now, flipping no later than the scores it reads next change: R's (for rfm.r
    and the cell) and those of a trait measure, which time can change (or make absent)."""
    scores, levels = rfm.scores, rfm.levels
    reads_r = index in (0, 3)

    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        found, r_next, fm_next = scores(st, now)
        if reads_r and r_next is not None and (fm_next is None or r_next < fm_next):
            fm_next = r_next
        if found is None:
            return holds(None), fm_next
        value: Any = cell_of(found[0], found[1], levels) if index == 3 else found[index]
        return holds(value), fm_next
    return test


# ------------------------------------------------------------------------------------------------
# Cut points as written


def duration_text(micros: int) -> str:
    """A positive duration as the grammar writes it, in its largest exact unit (14d, 36h, 90m, 45s)."""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", SECOND)):
        if micros % size == 0:
            return f"{micros // size}{unit}"
    raise ValueError(f"not a whole number of seconds: {micros} microseconds")
