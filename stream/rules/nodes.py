"""What a compiled segment is made of: the Segment, its tree of Condition nodes, and the windowed
event Streams the state must keep for it. The compiler (stream.rules.compiler) builds them, the
engine calls their tests, the explanation (stream.rules.explanation) walks the nodes."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from stream.rules import predicates as pr
from stream.rules.attributes import Attr
from stream.rules.predicates import Test
from stream.rules.traits import Trait


@dataclass(frozen=True)
class Stream:
    """Recent times of one event kind per item, kept just deep and long enough for the rules."""
    event: str        # product_viewed | order_placed
    per: str          # product | category
    keep: int         # times kept per item: the largest at_least that reads this stream
    horizon: int      # times older than this (relative to now) can never count again

    @property
    def name(self) -> str:
        return f"{self.event}:{self.per}"


Combine = Literal["all", "any", "not"]


@dataclass(frozen=True, slots=True)
class Condition:
    """One node of a segment's compiled `when:` tree. `test` is the compiled function the engine
    calls; a composite's test calls its parts' tests directly (stream.rules.predicates), never
    through these nodes, so evaluation is plain function calls. The rest is what
    stream.rules.explanation walks; the engine never looks at it."""
    test: Test
    reads: frozenset[str]          # the state field groups it reads (stream.rules.attributes)
    label: str                     # e.g. "all", "paid_orders >= 2", "last_paid_at" (several operators)
    combine: Combine | None = None  # all | any | not for a composite; None for a leaf (its own test)
    parts: tuple[Condition, ...] = ()
    attr: Attr | None = None       # a leaf's attribute, whose value the explanation shows
    trait: Trait | None = None     # ... or its trait, whose value at now it shows
    value: Callable[[Any, int], object] | None = None    # ... or this, its value at (state, now) (rfm.*)
    # ... or the segment it references and what it reads of it: "member" (since when) or "left"
    # (the last exit), which the explanation shows
    reference: tuple[str, Literal["member", "left"]] | None = None


def combined(combine: Combine, label: str, parts: tuple[Condition, ...]) -> Condition:
    """A composite node, its test the compiled combinator of its parts' tests."""
    tests = tuple(part.test for part in parts)
    test = pr.all_of(tests) if combine == "all" else pr.any_of(tests) if combine == "any" else pr.negation(tests[0])
    return Condition(test, frozenset().union(*(part.reads for part in parts)), label, combine, parts)


@dataclass
class Segment:
    name: str
    version: int
    description: str
    when: Condition
    definition: dict[str, Any]
    traits: frozenset[str] = frozenset()        # the traits its conditions read (stream.rules.traits)
    rfm: bool = False                           # whether its conditions read rfm.* (stream.rules.rfm)
    references: frozenset[str] = frozenset()    # the segments its conditions reference (`segment:`)
    # ... of those, the ones whose last exit it reads (left_within), each with the longest window it
    # reads it within (how long after exits start being recorded its answer is complete)
    exits: dict[str, int] = field(default_factory=dict)
    # The engine's hot path reads these once per evaluation: one attribute away, not two.
    test: Test = field(init=False)
    reads: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.test, self.reads = self.when.test, self.when.reads
