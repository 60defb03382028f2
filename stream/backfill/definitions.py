"""Which segment definitions a backfill evaluates (those a worker with the same settings runs: the
segments file and the definitions topic, resolved by the workers' own code), and the definitions
record its hand-off writes for the workers. See docs/backfill.md, "Definitions"."""
from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from stream.runtime.settings import WorkerConfig
from stream.definitions.resolution import Resolution, Running, encode_running, file_definitions, version_of
from stream.definitions.live import LiveDefinitions
from stream.kafka.definitions_feed import read_topic
from stream.rules.catalog import Catalog
from stream.storage.keys import DEFINITIONS_KEY, Record


def evaluated(config: WorkerConfig, file: Catalog, use_topic: bool) -> tuple[Resolution, str]:
    """The definitions a worker with `config` runs on a fresh store (the file alone without
    `use_topic`), and where they came from, for the summary."""
    where = f"{config.segments_file or 'the built-in catalog'}"
    topic = config.definitions_topic if use_topic else None
    feed = None
    if topic is None:
        where += " alone" + (" (--ignore-definitions-topic)" if config.definitions_topic else "")
    else:
        try:
            assert config.bootstrap_servers is not None, "a backfill names them (parse_request)"
            feed = read_topic(config.bootstrap_servers, config.kafka, topic)
            where += f" + topic {topic!r}"
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            # Every worker creates the topic when it starts: none ran with it, so it defines nothing.
            where += f" alone (topic {topic!r} does not exist)"
    live = LiveDefinitions(file_definitions(file), feed)
    return live.resolve(live.assumed()), where


def summary(resolution: Resolution, where: str) -> list[str]:
    lines = [f"definitions   {where}: " + (", ".join(
        f"{name} v{version_of(definition)} ({resolution.sources[name]})"
        for name, definition in sorted(resolution.definitions.items())) or "none")]
    # The workers reject the same records and run what the backfill ran instead.
    lines += [f"rejected      {r.name} from {r.source}: {'; '.join(r.problems)}" for r in resolution.rejected.values()]
    return lines


def handoff_record(catalog: Catalog) -> Record:
    """The record each partition of a handed-off changelog starts with: `catalog`'s definitions,
    nothing to re-evaluate, nothing lacking."""
    return DEFINITIONS_KEY, encode_running(Running(file_definitions(catalog)))
