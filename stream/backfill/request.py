"""What a backfill is asked to do: its window, output, hand-off and reading (stream.cli.backfill
builds it from the command's flags and checks them)."""
from __future__ import annotations

from dataclasses import dataclass

from stream.kafka.partition_ends import Key
from stream.model.time import SECOND
from stream.runtime.settings import WorkerConfig

KAFKA_OUTPUT = "kafka:"


@dataclass(frozen=True)
class Request:
    config: WorkerConfig
    from_time: int | None = None                     # microseconds; None: no time filter
    from_offsets: dict[Key, int] | None = None       # None: no offsets given
    until: int | None = None                         # None: now
    seek_margin: int = 3600 * SECOND
    output: str = "-"
    dead_letter: str | None = None
    handoff: str | None = None
    read_committed: bool = True
    progress: bool = True
    jobs: int = 1                                    # engine processes (stream.backfill.jobs); the command's
                                                     # default is one per core

    @property
    def topics(self) -> tuple[str, ...]:
        """Every input topic, sorted: the merge breaks ties by this order, whatever order the
        settings named them in. Never the workers' repartition topic: routed topics are read at
        their source (the new group's repartition topic starts empty)."""
        return tuple(sorted({*self.config.input_topics, *self.config.routed_topics}))

    @property
    def output_topic(self) -> str | None:
        return self.output[len(KAFKA_OUTPUT):] if self.output.startswith(KAFKA_OUTPUT) else None
