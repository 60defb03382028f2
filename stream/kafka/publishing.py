"""Publishing segment definitions to the definitions topic: what `segments define` / `undefine`
and the web console's editor (stream.console) both do, with the same checks and the same words.

define_segment gives a valid definition the next version (one more than the highest this name has
in the topic or in the segments file the workers run, or the definition's own `version:` when it
is newer still) and publishes it, unless it is unchanged; remove_segment publishes a tombstone.
Each returns an Outcome instead of printing, for its caller to show.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from confluent_kafka import KafkaException

from stream.definitions.resolution import (file_definitions, parse_record, segments_read, traits_of, traits_read,
                                           version_of)
from stream.kafka.clients import client_config
from stream.kafka.definitions_feed import DefinitionsFeed, publish, read_topic
from stream.kafka.topic_admin import ensure_topics
from stream.rules.catalog import TRAIT_PREFIX, Catalog, compile_catalog, unknown_reference
from stream.rules.problems import DefinitionError, shown
from stream.rules.rfm import RFM_KEY
from stream.runtime.topics import DEFINITIONS_CONFIG

PUBLISHED, REFUSED, FAILED = 0, 2, 1       # also the commands' exit statuses


@dataclass(frozen=True)
class Outcome:
    status: int                 # PUBLISHED (or unchanged: nothing to publish), REFUSED, FAILED
    message: str                # one sentence, without the command's name
    problems: list[str] = field(default_factory=list)   # why it was refused, each one line
    version: int | None = None  # the version published

    @property
    def ok(self) -> bool:
        return self.status == PUBLISHED


@dataclass(frozen=True)
class Topic:
    """Where definitions are published: the cluster, its client properties (security settings
    among them, stream.kafka.clients), the topic, and the segments file the workers run."""
    bootstrap: str
    kafka: dict[str, str]
    name: str
    file_catalog: Catalog


def invalid(name: str, problems: list[str]) -> Outcome:
    """The refusal of a definition that does not compile (stream.rules.catalog.parse_definition's problems)."""
    return Outcome(REFUSED, f"{name}: invalid definition; nothing published", problems)


def _as_published(name: str, definition: dict[str, Any]) -> tuple[bytes, list[str]]:
    """The record's value, and what a worker would reject in it: written out as YAML, a definition
    within the limits as read can exceed them (block style indents; aliases come out expanded)."""
    value = yaml.safe_dump(definition, sort_keys=False).encode()
    record = parse_record(name.encode(), value, 0)
    return value, list(record.problems) if record is not None else []


def _read(topic: Topic) -> DefinitionsFeed | Outcome:
    """The definitions topic (created when absent, as the worker does) read to its end."""
    try:
        ensure_topics(client_config(topic.bootstrap, topic.kafka), [(topic.name, 1, DEFINITIONS_CONFIG)])
        return read_topic(topic.bootstrap, topic.kafka, topic.name)
    except KafkaException as exc:
        return Outcome(FAILED, f"cannot read {topic.name!r}: {exc}")


def unknown_traits(definition: dict[str, Any], file_catalog: Catalog) -> set[str]:
    """The trait.<name> keys `definition` reads that the segments file does not define (the
    definitions topic may), and RFM_KEY when it reads rfm.* (the topic may carry newer cut points,
    `segments rfm calibrate --publish`)."""
    read = traits_read(definition)
    return (read - traits_of(file_definitions(file_catalog)).keys()) | (read & {RFM_KEY})


def _topic_traits(feed: DefinitionsFeed) -> dict[str, dict[str, Any]]:
    return {name: record.definition for name, record in feed.records.items()
            if (name.startswith(TRAIT_PREFIX) or name == RFM_KEY) and record.definition is not None
            and not record.problems}


def _beside(feed: DefinitionsFeed, file_catalog: Catalog) -> dict[str, dict[str, Any]]:
    """What the workers run, as far as the topic and the file say (name -> definition): the topic's
    usable records over the file's, a tombstone falling back to the file's."""
    running = file_definitions(file_catalog)
    for name, record in feed.records.items():
        if record.definition is not None and not record.problems:
            running[name] = record.definition
    return running


def reference_problems(name: str, definition: dict[str, Any], beside: dict[str, dict[str, Any]]) -> list[str]:
    """What the workers would reject in `definition`'s references among the definitions it runs
    beside: a segment not defined (with a did-you-mean, as stream.rules.catalog says it), and a
    cycle it closes (the catalog's words, from compiling it with the segments it reaches)."""
    segments = {n for n in beside if not n.startswith(TRAIT_PREFIX) and n != RFM_KEY} | {name}
    problems = [unknown_reference(name, ref, segments) for ref in sorted(segments_read(definition) - segments)]
    reached, todo = {name: definition}, sorted(segments_read(definition) & segments - {name})
    while todo:
        ref = todo.pop()
        if ref not in reached:
            reached[ref] = beside[ref]
            todo.extend(sorted(segments_read(beside[ref]) & segments - reached.keys()))
    if len(reached) > 1 or name in segments_read(definition):
        try:
            compile_catalog({**traits_of(beside), **reached}, name, alone=True)
        except DefinitionError as exc:
            problems.extend(p for p in shown(exc.problems) if "reference" in p)
    return problems


def define_segment(name: str, definition: dict[str, Any], topic: Topic) -> Outcome:
    """Publish `definition` (valid beside the segments file's traits:
    stream.rules.catalog.parse_definition) as `name`'s next version. One that reads traits the
    file does not define is checked again beside the topic's."""
    feed = _read(topic)
    if isinstance(feed, Outcome):
        return feed
    in_file = file_definitions(topic.file_catalog)
    if unknown_traits(definition, topic.file_catalog):
        try:
            compile_catalog({**traits_of(in_file), **_topic_traits(feed), name: definition}, f"{name}", alone=True)
        except DefinitionError as exc:
            return invalid(name, shown(exc.problems))
    if not name.startswith(TRAIT_PREFIX) and name != RFM_KEY:
        problems = reference_problems(name, definition, _beside(feed, topic.file_catalog))
        if problems:
            return invalid(name, problems)
    current = max(feed.highest.get(name, 0), version_of(in_file[name]) if name in in_file else 0)
    asked = definition.get("version")
    if asked is not None and asked <= current:
        return Outcome(REFUSED, f"{name}: version {asked} is not newer than the current version {current} "
                                f"(leave `version:` out and the next one is taken); nothing published")
    definition = {**definition, "version": asked if asked is not None else current + 1}
    record = feed.records.get(name)
    running = record.definition if record is not None and not record.problems else (
        file_definitions(topic.file_catalog).get(name) if record is None else None)
    if running is not None and {k: v for k, v in running.items() if k != "version"} == \
            {k: v for k, v in definition.items() if k != "version"}:
        return Outcome(PUBLISHED, f"{name}: unchanged (version {version_of(running)} runs it); nothing published")
    value, problems = _as_published(name, definition)
    if problems:
        return Outcome(REFUSED, f"{name}: as published, the definition would be rejected; nothing published",
                       problems)
    try:
        publish(topic.bootstrap, topic.kafka, topic.name, name, value)
    except KafkaException as exc:
        return Outcome(FAILED, f"publishing to {topic.name!r} failed: {exc}")
    return Outcome(PUBLISHED, f"{name} version {definition['version']} published to {topic.name!r}; the workers "
                              f"re-evaluate their stored customers (see GET /definitions)",
                   version=definition["version"])


def remove_segment(name: str, topic: Topic) -> Outcome:
    """A tombstone for `name`, when the topic defines it."""
    feed = _read(topic)
    if isinstance(feed, Outcome):
        return feed
    record = feed.records.get(name)
    if record is None or (record.definition is None and not record.problems):
        where = ("the segments file defines it: remove it there" if name in file_definitions(topic.file_catalog)
                 else "no such segment")
        return Outcome(REFUSED, f"{name}: not defined in {topic.name!r} ({where}); nothing published")
    if name not in file_definitions(topic.file_catalog):
        readers = sorted(n for n, d in _beside(feed, topic.file_catalog).items() if n != name and name in
                         segments_read(d))
        if readers:           # (the workers' words: stream.definitions.resolution)
            return Outcome(REFUSED, f"{name}: cannot be removed; nothing published", [
                f"segment {name!r}: cannot be removed while segment {reader!r} references it; change or remove "
                f"{reader!r} first" for reader in readers])
    try:
        publish(topic.bootstrap, topic.kafka, topic.name, name, None)
    except KafkaException as exc:
        return Outcome(FAILED, f"publishing to {topic.name!r} failed: {exc}")
    fallback = " (the segments file's definition runs again)" if name in file_definitions(topic.file_catalog) else ""
    return Outcome(PUBLISHED, f"{name} removed from {topic.name!r}{fallback}; its members exit")
