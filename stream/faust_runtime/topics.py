"""The Faust runtime's topics: its table's changelog and the ticks topic, named as Faust names them
from the app id (the group id), and every topic it creates before Faust starts, with the native
worker's explicit configs."""
from __future__ import annotations

from stream.runtime.settings import WorkerConfig
from stream.runtime.topics import Spec, changelog_configs, definitions_topics, output_topics

TABLE = "customers"              # the Faust table of customer states


def changelog_topic(config: WorkerConfig) -> str:
    """Faust names a table's changelog `<app id>-<table>-changelog`; the app id is the group id."""
    return f"{config.group_id}-{TABLE}-changelog"


def ticks_topic(config: WorkerConfig) -> str:
    return f"{config.group_id}-ticks"


def topics(config: WorkerConfig) -> list[Spec]:
    """The topics created when absent before Faust starts, with the native worker's explicit
    configs (routed input topics are the producers'; a replication factor of -1 is possible only
    this way)."""
    n = config.partitions
    ticks: dict[str, str | int] = {"cleanup.policy": "delete", "retention.ms": 3600 * 1000}
    return [*output_topics(config), (changelog_topic(config), n, changelog_configs(config)),
            (ticks_topic(config), n, ticks), *definitions_topics(config)]
