"""A catalog: the compiled segments of one segments file (or of the definitions running), loaded
and validated with every problem reported together, and which segments each event type affects."""
from __future__ import annotations

import difflib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from stream.model.state import CustomerState
from stream.rules.attributes import CHANGED_BY, IDENTITY
from stream.rules.bounded_yaml import DEFINITION, SEGMENTS_FILE, DocumentError, brief, load, read_file
from stream.rules.compiler import Compiler
from stream.rules.nodes import Segment, Stream
from stream.rules.problems import DefinitionError, key_names, shown
from stream.rules.rfm import RFM_KEY, Rfm, compile_rfm
from stream.rules.trait_grammar import compile_traits
from stream.rules.traits import Trait


@dataclass
class Catalog:
    segments: list[Segment]
    streams: list[Stream]
    source: str
    traits: dict[str, Trait] = field(default_factory=dict)      # by name (stream.rules.traits)
    rfm: Rfm | None = None                                       # the rfm section (stream.rules.rfm)
    by_name: dict[str, Segment] = field(init=False)
    affected: dict[type, tuple[Segment, ...]] = field(init=False)
    on_create: dict[type, tuple[Segment, ...]] = field(init=False)
    # Segment references (`segment:`): each segment's dependants, transitively, in evaluation
    # order (none: empty), and the segments whose exits the state records (read by left_within).
    dependants: dict[str, tuple[Segment, ...]] = field(init=False)
    recorded: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        # Evaluation (and so output) order: by name, but a referenced segment before the segments
        # referencing it, so that one evaluation moves both (a name the catalog lacks, in a
        # definition compiled alone, is no constraint).
        self.segments[:] = evaluation_order(self.segments)
        self.by_name = {s.name: s for s in self.segments}
        self.dependants = _dependants(self.segments)
        self.recorded = frozenset(name for s in self.segments for name in s.exits)
        self.affected = {etype: _with_references(self.segments, {s.name for s in self.segments if s.reads & groups})
                         for etype, groups in CHANGED_BY.items()}
        # A customer's first event: a segment that reads nothing the event changed sees the fields
        # it reads at their empty defaults, where no time condition is pending (no timestamps are
        # set but first/last seen, which every event changes). So it holds as on an empty state,
        # for good: only those that hold there need evaluating, beside the affected ones (and
        # those referencing a segment evaluated, which may have moved).
        empty = CustomerState(first_seen=0, last_seen=0)
        on_empty = {s.name for s in self.segments if s.test(empty, 0)[0]}
        self.on_create = {etype: _with_references(self.segments, {
                              s.name for s in self.segments
                              if s.reads & groups or s.name in on_empty or IDENTITY in s.reads})
                          for etype, groups in CHANGED_BY.items()}

    def with_dependants(self, segments: Iterable[Segment]) -> list[Segment]:
        """`segments` and their dependants, each once, in evaluation order."""
        names = set()
        for seg in segments:
            names.add(seg.name)
            names.update(d.name for d in self.dependants.get(seg.name, ()))
        return [s for s in self.segments if s.name in names]

    def evaluation_order_of(self, names: Iterable[str]) -> list[str]:
        """`names` (of a Redefinition): those not defined first, by name, then the defined ones in
        evaluation order."""
        wanted = set(names)
        return sorted(wanted - self.by_name.keys()) + [s.name for s in self.segments if s.name in wanted]


def evaluation_order(segments: list[Segment]) -> list[Segment]:
    """Topological by reference (a referenced segment first), ties by name; the segments of a
    cycle, and those referencing one (which compile_catalog rejects), last, by name."""
    order, cyclic = _topological(segments)
    return order + cyclic


def _topological(segments: list[Segment]) -> tuple[list[Segment], list[Segment]]:
    """(the segments placed in reference order, ties by name; those a cycle keeps out, by name)."""
    by_name = {s.name: s for s in segments}
    waiting = {s.name: {r for r in s.references if r in by_name} for s in segments}
    users: dict[str, list[str]] = {}
    for name, refs in waiting.items():
        for ref in refs:
            users.setdefault(ref, []).append(name)
    ready = [name for name, refs in waiting.items() if not refs]
    heapq.heapify(ready)
    order: list[Segment] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(by_name[name])
        for user in users.get(name, ()):
            waiting[user].discard(name)
            if not waiting[user]:
                heapq.heappush(ready, user)
    placed = {s.name for s in order}
    return order, sorted((s for s in segments if s.name not in placed), key=lambda s: s.name)


def _dependants(ordered: list[Segment]) -> dict[str, tuple[Segment, ...]]:
    """Name -> every segment referencing it directly or through others, in `ordered`'s order."""
    found: dict[str, set[str]] = {}
    for seg in reversed(ordered):            # a dependant comes after what it references
        for ref in seg.references:
            found.setdefault(ref, set()).update({seg.name, *found.get(seg.name, ())})
    return {name: tuple(s for s in ordered if s.name in names) for name, names in sorted(found.items())}


def _with_references(ordered: list[Segment], chosen: set[str]) -> tuple[Segment, ...]:
    """The `chosen` segments and the segments referencing one of them (transitively), in order."""
    picked: set[str] = set()
    for seg in ordered:
        if seg.name in chosen or not seg.references.isdisjoint(picked):
            picked.add(seg.name)
    return tuple(s for s in ordered if s.name in picked)


def cycles(segments: list[Segment]) -> list[list[str]]:
    """The cycles of references, each as the names along it back to the first (a -> b -> a)."""
    _, cyclic = _topological(segments)
    left = {s.name: s for s in cyclic}
    found: list[list[str]] = []
    for start in left:
        # Each of them references another of them (else it would have been placed): following
        # the smallest such reference from one comes back round to a cycle.
        path = [start]
        while path.count(path[-1]) < 2:
            path.append(min(r for r in left[path[-1]].references if r in left))
        cycle = path[path.index(path[-1]):]
        if not any(set(cycle) & set(other) for other in found):
            found.append(cycle)
    return found


def unknown_reference(name: str, ref: str, names: Iterable[str]) -> str:
    """The problem of segment `name` referencing `ref`, which is none of `names`, with the nearest."""
    hint = difflib.get_close_matches(ref, sorted(names), n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"segment {brief(name)}: when: references unknown segment {ref!r}{suggestion}"


def reference_problems(segments: list[Segment], unknown: bool = True) -> list[str]:
    """References to segments not defined (with a did-you-mean; unknown=False: not checked), and
    cycles of references."""
    names = {s.name for s in segments}
    problems: list[str] = []
    for seg in sorted(segments, key=lambda s: s.name) if unknown else ():
        problems.extend(unknown_reference(seg.name, ref, names) for ref in sorted(seg.references - names))
    for cycle in cycles(segments):
        if len(cycle) == 2:
            problems.append(f"segment {cycle[0]!r}: when: references itself")
        else:
            problems.append(f"segments {' -> '.join(cycle)} reference each other in a cycle")
    return problems


def definitions_of(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """The catalog as name -> definition, as compiled (so equal to what its file said): its
    segments, its traits as `trait.<name>` and its rfm section as RFM_KEY (compile_catalog reads all)."""
    out = {s.name: s.definition for s in catalog.segments}
    out.update({TRAIT_PREFIX + name: trait.definition for name, trait in sorted(catalog.traits.items())})
    if catalog.rfm is not None:
        out[RFM_KEY] = catalog.rfm.definition
    return out


def default_catalog_path() -> Path:
    return Path(str(resources.files("stream.rules").joinpath("catalog.yaml")))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """A segments file (within bounded_yaml.SEGMENTS_FILE), validated and compiled."""
    path = Path(path) if path is not None else default_catalog_path()
    try:
        doc = read_file(path, SEGMENTS_FILE)
    except OSError as exc:
        raise DefinitionError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except DocumentError as exc:
        raise DefinitionError([f"{path}: {exc}"]) from None
    return _catalog(doc, str(path))


def parse_catalog(text: str | bytes, source: str = "<string>") -> Catalog:
    try:
        doc = load(text, SEGMENTS_FILE)
    except DocumentError as exc:
        raise DefinitionError([f"{source}: {exc}"]) from None
    return _catalog(doc, source)


def _catalog(doc: object, source: str) -> Catalog:
    if not isinstance(doc, dict) or not isinstance(doc.get("segments"), dict) or not doc["segments"]:
        raise DefinitionError([f"{source}: expected a mapping with a non-empty `segments:` mapping of "
                               f"name -> definition"])
    extra = set(doc) - {"segments", "traits", "rfm"}
    problems = [f"{source}: unknown top-level key(s): {key_names(extra)}"] if extra else []
    prefixed = [name for name in doc["segments"] if str(name).startswith(TRAIT_PREFIX) or name == RFM_KEY]
    if prefixed:                         # (no segment name has a '.'; traits go under `traits:`)
        problems.append(f"{source}: segment(s) {key_names(prefixed)}: a trait is defined under `traits:`, "
                        f"RFM under `rfm:`")
        doc = {**doc, "segments": {k: v for k, v in doc["segments"].items() if k not in prefixed}}
    traits: dict[str, Trait] = {}
    broken: frozenset[str] = frozenset()
    if "traits" in doc:                  # (the segments are checked against the traits that compile)
        traits, trait_problems = compile_traits(doc["traits"], source)
        problems.extend(trait_problems)
        if isinstance(doc["traits"], dict):
            broken = frozenset(map(str, doc["traits"])) - traits.keys()
    segments = doc["segments"]
    if "rfm" in doc:                     # (it travels as the RFM_KEY entry, as on the topic)
        segments = {**segments, RFM_KEY: doc["rfm"]}
    try:
        catalog = compile_catalog(segments, source, traits, broken)
    except DefinitionError as exc:
        problems.extend(exc.problems)
    if problems:
        raise DefinitionError(problems)
    return catalog


TRAIT_PREFIX = "trait."


def compile_catalog(definitions: dict[Any, Any], source: str, traits: dict[str, Trait] | None = None,
                    broken: frozenset[str] = frozenset(), alone: bool = False) -> Catalog:
    """A catalog from name -> definition mappings: one entry under `segments:` each, and one under
    `traits:` each as `trait.<name>` (how the definitions topic and a partition's record carry
    them, beside the segments), and the rfm section as RFM_KEY (read after the traits, which it may
    measure); conditions may also read `traits` (`broken`: traits defined but invalid). Every
    problem of every trait and segment is reported together. May be empty (every segment removed
    at run time). `alone`: a definition checked beside the traits only, its references to
    segments not among `definitions` left for the whole catalog's check; such a catalog is for
    checking and previews, not to run."""
    traits = dict(traits or {})
    named = {str(k)[len(TRAIT_PREFIX):]: v for k, v in definitions.items() if str(k).startswith(TRAIT_PREFIX)}
    problems: list[str] = []
    if named:
        compiled, problems = compile_traits(named, source)
        traits.update(compiled)
        broken |= named.keys() - compiled.keys()
    rfm: Rfm | None = None
    if RFM_KEY in definitions:
        try:
            rfm = compile_rfm(definitions[RFM_KEY], f"{source}: rfm", traits, broken)
        except DefinitionError as exc:
            problems.extend(exc.problems)
    compiler = Compiler(traits, broken, rfm, RFM_KEY in definitions and rfm is None)
    segments = []
    for name, definition in definitions.items():
        if str(name).startswith(TRAIT_PREFIX) or name == RFM_KEY:
            continue
        try:
            segments.append(compiler.segment(str(name), definition))
        except DefinitionError as exc:
            problems.extend(exc.problems)
    if any(s.references for s in segments):
        problems.extend(reference_problems(segments, unknown=not alone))
    if problems:
        raise DefinitionError(problems)
    return Catalog(segments, compiler.streams(), source, traits, rfm)


def parse_definition(name: str, document: str | bytes, source: str, traits: dict[str, dict[str, Any]] | None = None
                     ) -> tuple[dict[str, Any] | None, list[str]]:
    """One segment definition (or, named trait.<name>, one trait's), YAML or JSON (within the
    limits of a topic record, bounded_yaml.DEFINITION), compiled alone beside `traits`
    (trait.<name> -> definition, the traits it may read): (definition, problems), each problem led
    by `source` where the loader's is. `segments define` and the console's editor say the same
    through it."""
    try:
        definition = load(document, DEFINITION)
    except DocumentError as exc:
        return None, [f"{source}: {exc}"]
    if not isinstance(definition, dict):
        return None, [f"{source}: expected one segment definition: a mapping with `when:` "
                      "(and optional description, version)"]
    try:
        compile_catalog({**(traits or {}), name: definition}, source, alone=True)
    except DefinitionError as exc:
        return definition, shown(exc.problems)
    return definition, []
