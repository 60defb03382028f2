"""Calibrating RFM: cut points from a population's measures, for `segments rfm calibrate`
(stream.cli.rfm). The population is whatever states the command read (the workers' stores, or a
replay's final state), each at its own stream time; this module only counts and sorts them. The
engine never calls it: its cut points arrive as data, in a definitions version.

Per dimension the cuts are the values at the quantiles k/levels (k = 1..levels-1) of the customers
that have all three measures: the value at index floor(k * n / levels) of the sorted values, so at
most k/levels of them lie below cut k. Recency cuts are ages (now - last), rounded up to whole
hours. Ties (many customers with one order) would repeat a cut: each cut is raised to the next value
above the previous cut (the first above the smallest value, so score 1 is never empty), or, past the
largest value, one step above the previous cut (an hour, or 1); every raise is reported.
"""
from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stream.model.state import CustomerState
from stream.model.time import HOUR, LONGEST
from stream.rules.rfm import DIMENSIONS, MAX_LEVELS, Rfm, cell_of, duration_text, score_of

# The oldest age counted: ties raise cuts an hour at a time, at most MAX_LEVELS times, within LONGEST.
_OLDEST = LONGEST - MAX_LEVELS * HOUR


@dataclass
class Population:
    """The measures of the customers that have all three, and how many have not."""
    ages: list[int] = field(default_factory=list)          # now - last (0 at least), microseconds
    frequency: list[Any] = field(default_factory=list)
    monetary: list[Any] = field(default_factory=list)
    unscored: int = 0

    def add(self, rfm: Rfm, st: CustomerState, now: int) -> None:
        measured = rfm.measured(st, now)
        if measured is None:
            self.unscored += 1
            return
        age, f, m = measured
        # A last order after the partition's stream time (the stream lags it) scores as age 0 (R =
        # levels); an age past the longest duration as that (R = 1 under any cut the grammar takes,
        # which room is left below for the cuts raised past it): either would calibrate to cuts the
        # grammar refuses (durations are positive, at most LONGEST).
        self.ages.append(min(max(0, age), _OLDEST))
        self.frequency.append(f)
        self.monetary.append(m)

    def __len__(self) -> int:
        return len(self.ages)


def population(rfm: Rfm, states: Iterable[tuple[CustomerState, int]]) -> Population:
    """The measures of (state, its stream time) pairs."""
    found = Population()
    for st, now in states:
        found.add(rfm, st, now)
    return found


@dataclass(frozen=True)
class Calibration:
    cuts: dict[str, list[Any]]       # per dimension, as the grammar writes them (recency: 14d, ...)
    notes: list[str]                 # ties raised, cuts above every value


def calibrate(found: Population, levels: int) -> Calibration:
    """The cut points of `found` (non-empty) for `levels` scores."""
    if not len(found):
        raise ValueError("an empty population has no quantiles")
    notes: list[str] = []
    hours = sorted(-(-age // HOUR) * HOUR for age in found.ages)      # rounded up to whole hours
    recency = _cut_points("recency", hours, levels, HOUR, notes, duration_text)
    frequency = _cut_points("frequency", sorted(found.frequency), levels, 1, notes, repr)
    monetary = _cut_points("monetary", sorted(found.monetary), levels, 1, notes, repr)
    return Calibration({"recency": [duration_text(c) for c in recency], "frequency": frequency,
                        "monetary": monetary}, notes)


def _cut_points(dim: str, values: list[Any], levels: int, step: Any, notes: list[str],
                shown: Any) -> list[Any]:
    n = len(values)
    cuts: list[Any] = []
    raised: list[str] = []
    empty = 0                   # cuts above every value
    floor = values[0]
    for k in range(1, levels):
        cut = values[min(n - 1, k * n // levels)]
        if cut <= floor:
            above = bisect.bisect_right(values, floor)
            higher = values[above] if above < n else floor + step
            empty += above >= n
            raised.append(f"cut {k}: {shown(cut)} -> {shown(higher)}")
            cut = higher
        cuts.append(cut)
        floor = cut
    if raised:
        notes.append(f"{dim}: ties (many customers with the same value) raised {len(raised)} of {levels - 1} cuts "
                     f"to keep them strictly ascending ({', '.join(raised)})"
                     + (f"; {empty} lie above every value, so the {'lowest' if dim == 'recency' else 'top'} "
                        f"{empty} score(s) hold no customer" if empty else ""))
    return cuts


def with_cuts(definition: dict[str, Any], cuts: dict[str, list[Any]]) -> dict[str, Any]:
    """The rfm section with `cuts` in place of its own, without its version (the next is taken)."""
    return {**{k: v for k, v in definition.items() if k not in ("cuts", "version")}, "cuts": cuts}


def distribution(rfm: Rfm, found: Population) -> str:
    """A table: per dimension the cuts, the customers at each score, and the values' range; then
    the customers per cell."""
    assert rfm.cuts is not None
    levels = rfm.levels
    lines = [f"{len(found):,} customers with all three measures ({found.unscored:,} without: no scores)"]
    header = f"{'dimension':<10} {'measure':<22} {'cuts':<36} " + " ".join(f"{s:>7}" for s in range(1, levels + 1))
    lines.append(header)
    columns = (found.ages, found.frequency, found.monetary)
    for index, dim in enumerate(DIMENSIONS):
        measure = (rfm.recency, rfm.frequency, rfm.monetary)[index]
        cuts = rfm.cuts[index]
        tally = Counter(score_of(index, v, cuts, levels) for v in columns[index])
        written = ", ".join(duration_text(int(c)) if index == 0 else repr(c) for c in cuts)
        lines.append(f"{dim:<10} {measure.name:<22} {written:<36} "
                     + " ".join(f"{tally.get(s, 0):>7,}" for s in range(1, levels + 1)))
    for index, dim in enumerate(DIMENSIONS):
        values = sorted(columns[index])
        low, mid, high = values[0], values[len(values) // 2], values[-1]
        if index == 0:
            low, mid, high = (_days(v) for v in (low, mid, high))
        lines.append(f"{dim}: min {low}, median {mid}, max {high}" + (" (days since the last order)"
                                                                       if index == 0 else ""))
    cells = Counter(cell_of(score_of(0, a, rfm.cuts[0], levels), score_of(1, f, rfm.cuts[1], levels), levels)
                    for a, f in zip(found.ages, found.frequency, strict=True))
    lines.append("cells: " + ", ".join(f"{name} {count:,}" for name, count in
                                        sorted(cells.items(), key=lambda item: (-item[1], item[0]))))
    return "\n".join(lines)


def _days(micros: int) -> str:
    return f"{micros / (24 * HOUR):.1f}"
