"""A catalog: the compiled segments of one segments file (or of the definitions running), loaded
and validated with every problem reported together, and which segments each event type affects."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from stream.model.state import CustomerState
from stream.rules.attributes import CHANGED_BY, IDENTITY
from stream.rules.bounded_yaml import DEFINITION, SEGMENTS_FILE, DocumentError, load, read_file
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

    def __post_init__(self) -> None:
        self.segments.sort(key=lambda s: s.name)   # evaluation (and so output) order is by name
        self.by_name = {s.name: s for s in self.segments}
        self.affected = {etype: tuple(s for s in self.segments if s.reads & groups)
                         for etype, groups in CHANGED_BY.items()}
        # A customer's first event: a segment that reads nothing the event changed sees the fields
        # it reads at their empty defaults, where no time condition is pending (no timestamps are
        # set but first/last seen, which every event changes). So it holds as on an empty state,
        # for good: only those that hold there need evaluating, beside the affected ones.
        empty = CustomerState(first_seen=0, last_seen=0)
        on_empty = {s.name for s in self.segments if s.test(empty, 0)[0]}
        self.on_create = {etype: tuple(s for s in self.segments
                                       if s.reads & groups or s.name in on_empty or IDENTITY in s.reads)
                          for etype, groups in CHANGED_BY.items()}


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
                    broken: frozenset[str] = frozenset()) -> Catalog:
    """A catalog from name -> definition mappings: one entry under `segments:` each, and one under
    `traits:` each as `trait.<name>` (how the definitions topic and a partition's record carry
    them, beside the segments), and the rfm section as RFM_KEY (read after the traits, which it may
    measure); conditions may also read `traits` (`broken`: traits defined but invalid). Every
    problem of every trait and segment is reported together. May be empty (every segment removed
    at run time)."""
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
        compile_catalog({**(traits or {}), name: definition}, source)
    except DefinitionError as exc:
        return definition, shown(exc.problems)
    return definition, []
