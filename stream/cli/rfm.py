"""`segments rfm calibrate`: RFM cut points from the current population, as a definitions version.

It reads the workers' partition stores (read-only, as `segments members` does, each customer at
its partition's stream time), or with --replay the final state of a replay of an events file; takes
the quantiles of the measures of the rfm section of the segments file (stream.rules.rfm_calibration);
prints them beside the population's distribution; and writes them: --write FILE (the segments file
with its rfm section's cuts replaced) and/or --publish (the definitions topic, as `segments define
rfm.scores` would: the next version, and every worker moves only the customers whose scores change
a segment, with cause `definition`). Neither: a dry run.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream.cli.settings_args import add_worker_arguments, check_kafka, load_config
from stream.runtime.settings import ConfigError, WorkerConfig

if TYPE_CHECKING:
    from stream.rules.catalog import Catalog
    from stream.rules.rfm import Rfm
    from stream.rules.rfm_calibration import Population

_SETTINGS = ("state_dir", "group_id", "segments_file", "bootstrap_servers", "definitions_topic")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rp = sub.add_parser("rfm", help="RFM scores: calibrate their cut points from the population",
                        description="RFM scores (docs/rfm.md).")
    commands = rp.add_subparsers(dest="rfm_command", required=True)
    cp = commands.add_parser(
        "calibrate", help="cut points from the quantiles of the current population",
        description="Compute the rfm section's cut points as the quantiles of the current population: the "
                    "workers' stores (read-only, as `segments members` reads them; --state-dir, --group-id) or, "
                    "with --replay, a replay's final state. Prints them with how many customers fall in each "
                    "score, and writes them as a new definitions version (--write, --publish).")
    cp.add_argument("--replay", metavar="EVENTS.jsonl",
                    help="replay this events file (as `segments replay` does) and use its final state instead "
                         "of the stores")
    cp.add_argument("--write", metavar="FILE",
                    help="write the segments file (--segments, or the built-in catalog) with the new cut points "
                         "to FILE (YAML; comments are not kept)")
    cp.add_argument("--publish", action="store_true",
                    help="publish the rfm section with the new cut points to the definitions topic as its next "
                         "version (needs --bootstrap-servers and the workers' Kafka settings: -X, "
                         "SEGMENTS_KAFKA_*, --config)")
    add_worker_arguments(cp, names=_SETTINGS)
    cp.set_defaults(run=run)


def _fail(message: str, status: int = 2) -> int:
    print(f"segments rfm calibrate: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    from stream.rules.bounded_yaml import SEGMENTS_FILE, DocumentError, read_file
    from stream.rules.catalog import default_catalog_path
    from stream.rules.problems import DefinitionError
    from stream.rules.rfm_calibration import calibrate, distribution, with_cuts

    try:
        config = load_config(args)
        if args.publish:
            if config.bootstrap_servers is None or config.definitions_topic is None:
                raise ConfigError(["--publish needs --bootstrap-servers and a definitions topic"])
            check_kafka(config)
    except ConfigError as exc:
        return _fail(str(exc))
    path = Path(config.segments_file) if config.segments_file is not None else default_catalog_path()
    try:
        doc = read_file(path, SEGMENTS_FILE)
    except OSError as exc:
        return _fail(f"{path}: cannot read: {exc.strerror or exc}")
    except DocumentError as exc:
        return _fail(f"{path}: {exc}")
    try:
        base = _measures(doc, str(path))
    except DefinitionError as exc:
        return _fail(str(exc))
    rfm = base.rfm
    assert rfm is not None
    found = _from_replay(base, args.replay, config.max_message_bytes) if args.replay else _from_stores(rfm, config)
    if isinstance(found, str):
        return _fail(found)
    if not len(found):
        return _fail(f"no customer has all three measures ({rfm.recency.name}, {rfm.frequency.name}, "
                     f"{rfm.monetary.name}; {found.unscored:,} without): nothing to calibrate")
    calibration = calibrate(found, rfm.levels)
    definition = with_cuts(rfm.definition, calibration.cuts)
    try:
        calibrated = _measures({**doc, "rfm": definition}, str(path))
    except DefinitionError as exc:          # (cannot happen: the cuts ascend strictly)
        return _fail(str(exc), 1)
    assert calibrated.rfm is not None
    print(distribution(calibrated.rfm, found))
    for note in calibration.notes:
        print(f"note: {note}")
    status = 0
    if args.write:
        status = _write(doc, definition, Path(args.write))
    if args.publish and status == 0:
        status = _publish(definition, base, config)
    if not args.write and not args.publish:
        print("nothing written (a dry run): --write FILE or --publish writes the cut points", file=sys.stderr)
    return status


def _measures(doc: Any, source: str) -> Catalog:
    """The catalog of the file's traits and rfm section only (no segments: they may read rfm.*
    without cut points, which is what calibrating is for)."""
    from stream.rules.catalog import TRAIT_PREFIX, compile_catalog
    from stream.rules.problems import DefinitionError
    from stream.rules.rfm import RFM_KEY

    if not isinstance(doc, dict):
        raise DefinitionError([f"{source}: expected a mapping with `segments:` (and optional traits:, rfm:)"])
    traits = doc.get("traits") or {}
    if not isinstance(traits, dict):
        raise DefinitionError([f"{source}: traits: expected a mapping of name -> definition"])
    definitions = {TRAIT_PREFIX + str(name): spec for name, spec in traits.items()}
    definitions[RFM_KEY] = doc.get("rfm") or {}
    return compile_catalog(definitions, source)


def _from_stores(rfm: Rfm, config: WorkerConfig) -> Population | str:
    """The population of the stores, each partition's customers at its stream time; or why not."""
    from stream.model.state import load_state
    from stream.rules.rfm_calibration import Population
    from stream.storage.committed import CommittedStores, NoStores

    try:
        stores = CommittedStores(config.state_dir, config.group_id)
    except NoStores as exc:
        return str(exc)
    found = Population()
    with stores:
        for partition in stores.partitions:
            if partition.stream_time is None:
                continue                          # nothing committed yet: no customers either
            for key, data in partition.items():
                found.add(rfm, load_state(data, key.decode()), partition.stream_time)
    return found


def _from_replay(catalog: Catalog, events: str, max_bytes: int) -> Population | str:
    """The population of a replay's final state (the traits and rfm section only: the measures)."""
    from stream.engine.core import Engine
    from stream.engine.store import MemoryStore
    from stream.model.time import format_rfc3339
    from stream.replay.driver import replay
    from stream.rules.rfm_calibration import population

    store = MemoryStore()
    engine = Engine(catalog, store)
    try:
        with open(events, "rb") as source, open(os.devnull, "wb") as nowhere:
            summary = replay(source, engine, nowhere, nowhere, max_bytes=max_bytes)
    except OSError as exc:
        return f"{events}: {exc.strerror or exc}"
    if not summary.events:
        return f"{events}: no events"
    print(f"replayed {summary.events:,} events ({summary.dead_letters:,} dead letters) to stream time "
          f"{format_rfc3339(engine.now)}", file=sys.stderr)
    now, rfm = engine.now, catalog.rfm
    assert rfm is not None
    return population(rfm, ((st, now) for _, st in store.items()))


def _write(doc: dict[str, Any], definition: dict[str, Any], target: Path) -> int:
    """The segments file with the new rfm section (the next version, when it had one), checked."""
    import yaml

    from stream.rules.catalog import parse_catalog
    from stream.rules.problems import DefinitionError

    old = doc.get("rfm") or {}
    section = {**definition, "version": old["version"] + 1} if isinstance(old.get("version"), int) else definition
    written = {k: v for k, v in doc.items() if k != "segments"} | {"rfm": section, "segments": doc.get("segments")}
    text = yaml.safe_dump(written, sort_keys=False, allow_unicode=True)
    try:
        parse_catalog(text, str(target))
    except DefinitionError as exc:
        return _fail(f"the file with the new cut points would not load; nothing written: {exc}")
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        return _fail(f"{target}: {exc.strerror or exc}", 1)
    print(f"wrote {target} (the segments file with the new cut points)", file=sys.stderr)
    return 0


def _publish(definition: dict[str, Any], catalog: Catalog, config: WorkerConfig) -> int:
    """The rfm section as the next version of the definitions topic's rfm.scores, as `segments define` does."""
    from stream.cli.define import said
    from stream.kafka.publishing import Topic, define_segment
    from stream.rules.rfm import RFM_KEY

    assert config.bootstrap_servers is not None and config.definitions_topic is not None     # (checked first)
    topic = Topic(config.bootstrap_servers, dict(config.kafka), config.definitions_topic, catalog)
    return said("rfm calibrate", define_segment(RFM_KEY, definition, topic), sys.stdout, sys.stderr)
