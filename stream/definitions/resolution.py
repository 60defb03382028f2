"""Which segment definitions a partition runs, when they can change while the worker runs: the
segments file (or built-in catalog) and the definitions topic's latest records, resolved against the
definitions the partition's state was last evaluated under (`Running`). The precedence and version
rules: docs/definitions.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterator
from typing import Any

import msgspec

from stream.rules.bounded_yaml import DEFINITION, DocumentError, brief, load
from stream.engine.redefinition import Redefinition, changed_trait
from stream.rules.catalog import TRAIT_PREFIX, Catalog, compile_catalog, cycles, definitions_of
from stream.rules.rfm import RFM_KEY
from stream.rules.problems import DefinitionError, shown
from stream.model.time import LATEST, format_rfc3339

_canonical = msgspec.json.Encoder(order="sorted").encode


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same definition, whatever its version."""
    return _canonical({**a, "version": 0}) == _canonical({**b, "version": 0})


def version_of(definition: dict[str, Any]) -> int:
    return definition.get("version", 1)


@dataclass(frozen=True)
class TopicRecord:
    """The latest record of one name in the definitions topic: a definition, a tombstone
    (definition None, no problems), or an unusable value (problems)."""
    name: str
    definition: dict[str, Any] | None
    offset: int
    problems: tuple[str, ...] = ()


def parse_record(key: bytes | None, value: bytes | None, offset: int) -> TopicRecord | None:
    """One record of the definitions topic; None when it names no segment at all (no usable key).
    Never raises: whatever the value holds is read within bounded_yaml.DEFINITION's limits."""
    try:
        name = key.decode() if key else None
    except UnicodeDecodeError:
        name = None
    if not name:
        return None
    if value is None:
        return TopicRecord(name, None, offset)
    where = f"topic record {brief(name)} at offset {offset}"
    try:
        definition = load(value, DEFINITION)
    except DocumentError as exc:
        return TopicRecord(name, None, offset, (f"{where}: {exc}",))
    if not isinstance(definition, dict):
        return TopicRecord(name, None, offset, (f"{where}: expected one segment definition (a mapping with when:)",))
    version = definition.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return TopicRecord(name, definition, offset,
                           (f"{where}: needs `version:`, a whole number >= 1 (segments define numbers it); "
                            f"got {brief(version)}",))
    return TopicRecord(name, definition, offset)


@dataclass(frozen=True)
class Rejection:
    name: str
    source: str                 # "file" or "topic offset N"
    version: int | None
    problems: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        return {"segment": self.name, "source": self.source, "version": self.version, "problems": list(self.problems)}


@dataclass(frozen=True)
class Resolution:
    definitions: dict[str, dict[str, Any]]      # what runs: name -> definition (with its version)
    sources: dict[str, str]
    rejected: dict[str, Rejection]
    catalog: Catalog


def resolve(file: dict[str, dict[str, Any]], topic: dict[str, TopicRecord],
            running: dict[str, dict[str, Any]] | None) -> Resolution:
    """The definitions to run, per name: the topic's latest record, else the file's; a rejected one
    keeps `running` (the partition's; None for a partition that has none: all valid ones are taken)."""
    definitions: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    rejected: dict[str, Rejection] = {}
    # traits first, then the rfm section (which may measure a trait): a segment is checked against
    # the traits and the rfm section that will run
    for name in sorted(file.keys() | topic.keys() | (running or {}).keys(),
                       key=lambda n: (0 if n.startswith(TRAIT_PREFIX) else 1 if n == RFM_KEY else 2, n)):
        record = topic.get(name)
        if record is not None and (record.definition is not None or record.problems):
            candidate, source, problems = record.definition, f"topic offset {record.offset}", list(record.problems)
        elif name in file:
            candidate, source, problems = file[name], "file", []
        else:
            continue                                  # removed (a tombstone, or gone from the file)
        if not problems:
            try:
                compile_catalog({**traits_of(definitions), name: candidate}, source, alone=True)
            except DefinitionError as exc:
                problems = exc.problems
        before = (running or {}).get(name)
        # (a candidate without problems is a definition: only an unusable record has None)
        if (not problems and candidate is not None and before is not None
                and version_of(candidate) <= version_of(before)):
            if same(candidate, before):
                candidate = before                    # unchanged: keeps its (higher) running version
            elif source == "file":
                # The file edited without a newer version, or taken up again after a tombstone: a
                # version never goes down, so this one runs as the next.
                candidate = {**candidate, "version": version_of(before) + 1}
            else:
                problems = [f"segment {name!r}: version {version_of(candidate)} differs from the running version "
                            f"{version_of(before)} but is not newer; give it a higher version (segments define "
                            f"numbers it)"]
        if problems or candidate is None:
            version = candidate.get("version") if isinstance(candidate, dict) else None
            rejected[name] = Rejection(name, source, version if isinstance(version, int) else None,
                                       tuple(shown(problems)))
            if before is not None:
                definitions[name], sources[name] = before, "running (kept)"
            continue
        definitions[name], sources[name] = candidate, source
    return Resolution(definitions, sources, rejected, _runnable(definitions, sources, rejected, running or {}))


def traits_of(definitions: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a segment may read besides attributes, of a name -> definition mapping: the
    `trait.<name>` entries, and the rfm section (RFM_KEY)."""
    return {name: d for name, d in definitions.items() if name.startswith(TRAIT_PREFIX) or name == RFM_KEY}


def _conditions(node: object) -> Iterator[tuple[object, object]]:
    """Every (key, value) of a definition's mappings, nested ones included (without compiling it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _conditions(value)
    elif isinstance(node, list):
        for child in node:
            yield from _conditions(child)


def traits_read(node: object) -> set[str]:
    """The `trait.<name>` keys a segment definition's conditions read (without compiling it), and
    RFM_KEY when they read rfm.*."""
    keys = {key for key, _ in _conditions(node) if isinstance(key, str)}
    found = {key for key in keys if key.startswith(TRAIT_PREFIX)}
    return found | {RFM_KEY} if any(key.startswith("rfm.") for key in keys) else found


def segments_read(node: object) -> set[str]:
    """The segments a definition's `segment:` conditions reference (without compiling it)."""
    return {value["name"] for key, value in _conditions(node)
            if key == "segment" and isinstance(value, dict) and isinstance(value.get("name"), str)}


def _runnable(definitions: dict[str, dict[str, Any]], sources: dict[str, str], rejected: dict[str, Rejection],
              running: dict[str, dict[str, Any]]) -> Catalog:
    """The catalog of the resolved definitions. A segment kept at its running definition (or one
    checked against a trait put back since) may read a trait removed or redefined in a way it
    cannot read: then the traits it reads keep their running definitions too, and failing that
    the segment is left out, rejected with why."""
    while True:
        try:
            return compile_catalog(definitions, "definitions")
        except DefinitionError:
            pass
        for name, definition in sorted(definitions.items()):
            if name.startswith(TRAIT_PREFIX) or name == RFM_KEY:
                continue
            try:
                compile_catalog({**traits_of(definitions), name: definition}, "definitions", alone=True)
                continue
            except DefinitionError as exc:
                problems = exc.problems
            restored = [t for t in sorted(traits_read(definition))
                        if t in running and definitions.get(t) != running[t]]
            for trait in restored:
                what = "the rfm section" if trait == RFM_KEY else f"trait {trait[len(TRAIT_PREFIX):]!r}"
                why = f"{what}: kept at its running definition, which segment {name!r} reads"
                rejected[trait] = Rejection(trait, sources.get(trait, "file"), version_of(definitions[trait])
                                            if trait in definitions else None, (why,))
                definitions[trait], sources[trait] = running[trait], "running (kept)"
            if not restored:
                rejected[name] = Rejection(name, sources.pop(name, "running"), version_of(definition),
                                           tuple(shown(problems)))
                del definitions[name]
            break
        else:                                     # each compiles alone: their references do not
            _unreferenced(definitions, sources, rejected, running)


def _unreferenced(definitions: dict[str, dict[str, Any]], sources: dict[str, str], rejected: dict[str, Rejection],
                  running: dict[str, dict[str, Any]]) -> None:
    """One step towards references that hold together: a segment removed while another references
    it is kept at its running definition (the removal rejected); failing that, a segment that
    references one not defined, or closes a cycle, is (kept at its running definition, or left out)."""
    segments = {name: d for name, d in definitions.items() if not name.startswith(TRAIT_PREFIX)}
    for name, definition in sorted(segments.items()):
        for ref in sorted(segments_read(definition) - segments.keys()):
            if ref in running:
                rejected[ref] = Rejection(ref, sources.get(ref, "topic"), version_of(running[ref]), (
                    f"segment {ref!r}: cannot be removed while segment {name!r} references it; change or remove "
                    f"{name!r} first",))
                definitions[ref], sources[ref] = running[ref], "running (kept)"
            else:
                _keep_running(name, f"segment {name!r}: references unknown segment {ref!r}",
                              definitions, sources, rejected, running)
            return
    compiled = [compile_catalog({**traits_of(definitions), name: d}, "definitions", alone=True).by_name[name]
                for name, d in sorted(segments.items())]
    for cycle in cycles(compiled):
        changed = [name for name in cycle[:-1] if definitions[name] != running.get(name)]
        name = min(changed or cycle[:-1])
        _keep_running(name, f"segments {' -> '.join(cycle)} reference each other in a cycle",
                      definitions, sources, rejected, running)
        return
    raise AssertionError("the definitions fail together but each compiles alone and references holds")


def _keep_running(name: str, why: str, definitions: dict[str, dict[str, Any]], sources: dict[str, str],
                  rejected: dict[str, Rejection], running: dict[str, dict[str, Any]]) -> None:
    """Segment `name` rejected (why): back to its running definition, or left out without one (or
    when it is the running one)."""
    rejected[name] = Rejection(name, sources.get(name, "running"), version_of(definitions[name]), (why,))
    if name in running and definitions[name] != running[name]:
        definitions[name], sources[name] = running[name], "running (kept)"
    else:
        del definitions[name]
        sources.pop(name, None)


# ------------------------------------------------------------------------------------------------
# What a partition keeps about its definitions (in its store and changelog)


class Incomplete(msgspec.Struct, frozen=True):
    """A segment whose windowed history the state did not keep when it was (re)defined."""
    stream: str                 # e.g. product_viewed:product
    needs: tuple[int, int]      # (times per item, window in microseconds) the definition reads
    kept: tuple[int, int]       # what the state had kept
    complete_at: int            # stream time from which the answer is complete

    def describe(self) -> dict[str, Any]:
        return {"stream": self.stream, "needs": {"per_item": self.needs[0], "within_seconds": self.needs[1] // 10**6},
                "kept": {"per_item": self.kept[0], "within_seconds": self.kept[1] // 10**6},
                "complete_at": format_rfc3339(self.complete_at)}


class Running(msgspec.Struct):
    """The definitions a partition's state was evaluated under, the pass that brings stored
    customers up to them (segment -> version, see engine.Redefinition; `after`: the last customer
    id done), and which segments still lack history."""
    definitions: dict[str, dict[str, Any]]
    redefine: dict[str, int | None] = msgspec.field(default_factory=dict)
    after: str | None = None
    incomplete: dict[str, list[Incomplete]] = msgspec.field(default_factory=dict)


encode_running = msgspec.json.Encoder(order="sorted").encode
decode_running = msgspec.json.Decoder(Running).decode


def redefine(running: Running, resolution: Resolution, now: int) -> Running:
    """`running` moved to `resolution`'s definitions at stream time `now`: the changed segments
    join the pass (which starts over, so every customer is seen under the newest definitions), and
    the ones reading history that was not kept are flagged."""
    old = compile_catalog(running.definitions, "running")
    change = Redefinition.between(old, resolution.catalog)
    if not change.segments:
        return running
    merged = Redefinition(running.redefine).then(change).segments if running.redefine else change.segments
    kept = {s.name: (s.keep, s.horizon) for s in old.streams}
    for flags in running.incomplete.values():        # history still missing from an earlier change
        for flag in flags:
            if flag.complete_at > now:
                k, h = kept.get(flag.stream, (0, 0))
                kept[flag.stream] = (min(k, flag.kept[0]), min(h, flag.kept[1]))
    incomplete = {name: flags for name, flags in running.incomplete.items()
                  if name in resolution.definitions and name not in change.segments}
    pending = {flag.stream: flag for flags in running.incomplete.values() for flag in flags
               if flag.stream.startswith((TRAIT_PREFIX, EXITS_PREFIX)) and flag.complete_at > now}
    for name, version in change.segments.items():
        if version is None:                            # added or changed
            flags = missing_history(name, resolution.definitions, kept, now)
            flags += missing_traits(resolution.catalog.by_name[name].traits, old, resolution.catalog, pending, now)
            flags += missing_exits(resolution.catalog.by_name[name].exits, old, pending, now)
            if flags:
                incomplete[name] = flags
    return Running(resolution.definitions, merged, None, incomplete)


def missing_history(name: str, definitions: dict[str, dict[str, Any]], kept: dict[str, tuple[int, int]],
                    now: int) -> list[Incomplete]:
    flags = []
    for stream in compile_catalog({**traits_of(definitions), name: definitions[name]}, name, alone=True).streams:
        have = kept.get(stream.name, (0, 0))
        if stream.keep > have[0] or stream.horizon > have[1]:
            flags.append(Incomplete(stream.name, (stream.keep, stream.horizon), have, now + stream.horizon))
    return flags


def missing_traits(names: frozenset[str], old: Catalog, new: Catalog, pending: dict[str, Incomplete],
                   now: int) -> list[Incomplete]:
    """The traits a redefined segment reads that the state has no history of: added or redefined
    now (but for order_paid's, which start from the payments the state keeps: Trait.history), or
    still short of it since an earlier change. Complete once the window has passed; a lifetime
    trait only by a backfill."""
    flags = []
    for name in sorted(names):
        stream = TRAIT_PREFIX + name
        trait = new.traits[name]
        if stream in pending:
            flags.append(pending[stream])
        elif changed_trait(old, new, name) and trait.event != "order_paid":
            window = trait.within or 0
            flags.append(Incomplete(stream, (0, window), (0, 0), now + window if trait.within else LATEST))
    return flags


EXITS_PREFIX = "exits."           # the stream name of a flag for a segment's exits (left_within)


def missing_exits(exits: dict[str, int], old: Catalog, pending: dict[str, Incomplete], now: int) -> list[Incomplete]:
    """The segments whose exits a redefined segment reads (left_within, each within its longest
    window) that the running definitions did not record (Catalog.recorded): recorded from now, so
    complete once that window has passed; or recorded since an earlier change still short of it
    (its pending flag: recorded since its complete_at less its window). needs: one exit per
    customer within the window; kept: none, or the exits of the time since recording began."""
    flags = []
    for ref, window in sorted(exits.items()):
        stream = EXITS_PREFIX + ref
        earlier = pending.get(stream)
        if ref not in old.recorded:
            flags.append(Incomplete(stream, (1, window), (0, 0), now + window))
        elif earlier is not None and (since := earlier.complete_at - earlier.needs[1]) + window > now:
            flags.append(Incomplete(stream, (1, window), (1, now - since), since + window))
    return flags


def still_incomplete(running: Running, now: int) -> dict[str, list[Incomplete]]:
    return {name: [f for f in flags if f.complete_at > now] for name, flags in running.incomplete.items()
            if any(f.complete_at > now for f in flags)}


def file_definitions(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """The file's definitions as name -> definition, as compiled (so equal to what the file said):
    its segments, and its traits as `trait.<name>`."""
    return definitions_of(catalog)
