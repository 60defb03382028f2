"""`segments define NAME --file F` and `segments undefine NAME`: change a segment while workers run.

define validates the definition here first (every problem listed, exit 2, nothing published), then
publishes it to the definitions topic with the next version: one more than the highest this name
has in the topic or in the segments file the workers run (or the file's own `version:`, when it is
newer still). undefine publishes a tombstone. The workers validate every record again: one written
by hand that does not compile, or that changes a definition without a newer version, is rejected
there and the previous version keeps running.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml
from confluent_kafka import KafkaException

from stream.cli.settings_args import add_kafka_arguments, kafka_properties
from stream.kafka.definitions_feed import DefinitionsFeed, publish, read_topic
from stream.definitions.resolution import file_definitions, parse_record, traits_of, traits_read, version_of
from stream.kafka.clients import client_config
from stream.kafka.topic_admin import ensure_topics
from stream.runtime.topics import DEFINITIONS_CONFIG
from stream.rules.bounded_yaml import DEFINITION, DocumentError, read_file
from stream.rules.catalog import TRAIT_PREFIX, Catalog, compile_catalog, load_catalog
from stream.rules.problems import DefinitionError, shown


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Both commands, define and undefine."""
    for command, help_text in (("define", "publish a segment definition the running workers take up"),
                               ("undefine", "remove a segment defined in the definitions topic")):
        fp = sub.add_parser(command, help=help_text, description=(
            "Validate a segment definition (every problem listed; exit 2 and nothing published if invalid) "
            "and publish it to the definitions topic with the next version; the workers re-evaluate their "
            "stored customers for that segment only." if command == "define" else
            "Publish a tombstone for a segment in the definitions topic: its members exit (a segment the "
            "segments file also defines runs the file's definition again)."))
        fp.add_argument("name", metavar="NAME", help="segment name")
        if command == "define":
            fp.add_argument("--file", required=True, metavar="FILE",
                            help="one definition, YAML or JSON: the grammar of one entry under `segments:`")
        fp.add_argument("--bootstrap-servers", required=True, metavar="HOSTS")
        fp.add_argument("--definitions-topic", default="segment-definitions", metavar="TOPIC")
        fp.add_argument("--segments", metavar="FILE",
                        help="the segments file the workers run (its versions count); default: the built-in catalog")
        add_kafka_arguments(fp)
        fp.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    kafka = kafka_properties(args.command, args)
    if kafka is None:
        return 2
    try:
        catalog = load_catalog(args.segments)
    except DefinitionError as exc:
        print(f"segments {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "define":
        return define(args.name, Path(args.file), args.bootstrap_servers, kafka, args.definitions_topic, catalog)
    return undefine(args.name, args.bootstrap_servers, kafka, args.definitions_topic, catalog)


def read_definition(name: str, path: Path, traits: dict[str, dict[str, Any]] | None = None
                    ) -> tuple[dict[str, Any] | None, list[str]]:
    """One segment definition (or, named trait.<name>, one trait's) from a YAML or JSON file
    (within the limits of a topic record, bounded_yaml.DEFINITION), compiled alone beside
    `traits` (trait.<name> -> definition): (definition, problems)."""
    try:
        definition = read_file(path, DEFINITION)
    except OSError as exc:
        return None, [f"{path}: cannot read: {exc.strerror or exc}"]
    except DocumentError as exc:
        return None, [f"{path}: {exc}"]
    if not isinstance(definition, dict):
        return None, [f"{path}: expected one segment definition: a mapping with `when:` "
                      "(and optional description, version)"]
    try:
        compile_catalog({**(traits or {}), name: definition}, str(path))
    except DefinitionError as exc:
        return definition, shown(exc.problems)
    return definition, []


def _topic_traits(feed: DefinitionsFeed) -> dict[str, dict[str, Any]]:
    return {name: record.definition for name, record in feed.records.items()
            if name.startswith(TRAIT_PREFIX) and record.definition is not None and not record.problems}


def _as_published(name: str, definition: dict[str, Any]) -> tuple[bytes, list[str]]:
    """The record's value, and what a worker would reject in it: written out as YAML, a definition
    within the limits as read can exceed them (block style indents; aliases come out expanded)."""
    value = yaml.safe_dump(definition, sort_keys=False).encode()
    record = parse_record(name.encode(), value, 0)
    return value, list(record.problems) if record is not None else []


def _read(command: str, bootstrap: str, kafka: dict[str, str], topic: str, err: TextIO) -> DefinitionsFeed | None:
    """The definitions topic (created when absent, as the worker does) read to its end."""
    try:
        ensure_topics(client_config(bootstrap, kafka), [(topic, 1, DEFINITIONS_CONFIG)])
        return read_topic(bootstrap, kafka, topic)
    except KafkaException as exc:
        print(f"segments {command}: cannot read {topic!r}: {exc}", file=err)
        return None


def _refused(what: str, problems: list[str], err: TextIO) -> int:
    """Exit 2 with every problem listed: nothing was published."""
    print(f"segments define: {what}; nothing published:", file=err)
    for problem in problems:
        print(f"  - {problem}", file=err)
    return 2


def define(name: str, path: Path, bootstrap: str, kafka: dict[str, str], topic: str, file_catalog: Catalog,
           out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    in_file = file_definitions(file_catalog)
    file_traits = traits_of(in_file)
    definition, problems = read_definition(name, path, file_traits)
    # a trait only the definitions topic defines is known once it is read
    later = definition is not None and bool(traits_read(definition) - file_traits.keys())
    if (problems and not later) or definition is None:     # (never one without the other)
        return _refused(f"{name}: invalid definition", problems, err)
    feed = _read("define", bootstrap, kafka, topic, err)
    if feed is None:
        return 1
    if later:
        definition, problems = read_definition(name, path, {**file_traits, **_topic_traits(feed)})
        if problems or definition is None:
            return _refused(f"{name}: invalid definition", problems, err)
    current = max(feed.highest.get(name, 0), version_of(in_file[name]) if name in in_file else 0)
    asked = definition.get("version")
    if asked is not None and asked <= current:
        print(f"segments define: {name}: version {asked} is not newer than the current version {current} "
              f"(leave `version:` out and the next one is taken); nothing published", file=err)
        return 2
    definition = {**definition, "version": asked if asked is not None else current + 1}
    record = feed.records.get(name)
    running = record.definition if record is not None and not record.problems else (
        file_definitions(file_catalog).get(name) if record is None else None)
    if running is not None and {k: v for k, v in running.items() if k != "version"} == \
            {k: v for k, v in definition.items() if k != "version"}:
        print(f"segments define: {name}: unchanged (version {version_of(running)} runs it); nothing published",
              file=out)
        return 0
    value, problems = _as_published(name, definition)
    if problems:
        return _refused(f"{name}: as published, the definition would be rejected", problems, err)
    try:
        publish(bootstrap, kafka, topic, name, value)
    except KafkaException as exc:
        print(f"segments define: publishing to {topic!r} failed: {exc}", file=err)
        return 1
    print(f"segments define: {name} version {definition['version']} published to {topic!r}; the workers "
          f"re-evaluate their stored customers (see GET /definitions)", file=out)
    return 0


def undefine(name: str, bootstrap: str, kafka: dict[str, str], topic: str, file_catalog: Catalog,
             out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    feed = _read("undefine", bootstrap, kafka, topic, err)
    if feed is None:
        return 1
    record = feed.records.get(name)
    if record is None or (record.definition is None and not record.problems):
        where = ("the segments file defines it: remove it there" if name in file_definitions(file_catalog)
                 else "no such segment")
        print(f"segments undefine: {name}: not defined in {topic!r} ({where}); nothing published", file=err)
        return 2
    try:
        publish(bootstrap, kafka, topic, name, None)
    except KafkaException as exc:
        print(f"segments undefine: publishing to {topic!r} failed: {exc}", file=err)
        return 1
    fallback = " (the segments file's definition runs again)" if name in file_definitions(file_catalog) else ""
    print(f"segments undefine: {name} removed from {topic!r}{fallback}; its members exit", file=out)
    return 0
