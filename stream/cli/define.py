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

from stream.cli.settings_args import add_kafka_arguments, kafka_properties
from stream.definitions.resolution import file_definitions, traits_of
from stream.kafka.publishing import Outcome, Topic, define_segment, invalid, remove_segment, unknown_traits
from stream.rules.bounded_yaml import DEFINITION
from stream.rules.catalog import Catalog, load_catalog, parse_definition
from stream.rules.problems import DefinitionError


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
        fp.add_argument("--bootstrap-servers", required=True, metavar="HOSTS",
                        help="the workers' Kafka brokers, host:port[,host:port...]")
        fp.add_argument("--definitions-topic", default="segment-definitions", metavar="TOPIC",
                        help="the workers' --definitions-topic (default segment-definitions)")
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
        with open(path, "rb") as handle:
            document = handle.read(DEFINITION.bytes + 1)      # one more than allowed is enough to refuse
    except OSError as exc:
        return None, [f"{path}: cannot read: {exc.strerror or exc}"]
    return parse_definition(name, document, str(path), traits)


def said(command: str, outcome: Outcome, out: TextIO, err: TextIO) -> int:
    """The outcome printed (every problem listed, when refused for them); its exit status."""
    if outcome.problems:
        print(f"segments {command}: {outcome.message}:", file=err)
        for problem in outcome.problems:
            print(f"  - {problem}", file=err)
    else:
        print(f"segments {command}: {outcome.message}", file=out if outcome.ok else err)
    return outcome.status


def define(name: str, path: Path, bootstrap: str, kafka: dict[str, str], topic: str, file_catalog: Catalog,
           out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    definition, problems = read_definition(name, path, traits_of(file_definitions(file_catalog)))
    # A trait that only the definitions topic defines is known once the topic is read:
    # define_segment checks the definition again beside the topic's traits.
    if definition is None or (problems and not unknown_traits(definition, file_catalog)):
        return said("define", invalid(name, problems), out, err)
    return said("define", define_segment(name, definition, Topic(bootstrap, kafka, topic, file_catalog)), out, err)


def undefine(name: str, bootstrap: str, kafka: dict[str, str], topic: str, file_catalog: Catalog,
             out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    return said("undefine", remove_segment(name, Topic(bootstrap, kafka, topic, file_catalog)), out, err)
