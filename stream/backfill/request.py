"""What a backfill is asked to do: its window, output, hand-off and reading, from the parsed flags,
with every unusable argument named by its flag."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from stream.errors import Problems
from stream.kafka.partition_ends import Key
from stream.model.time import SECOND, parse_duration, parse_rfc3339
from stream.runtime.settings import WorkerConfig

KAFKA_OUTPUT = "kafka:"


class ArgumentProblems(Problems):
    """Every unusable argument of a backfill, each naming its flag. Its text is the problems alone,
    one a line, as it always was; `listed` gives them under the heading the command prints."""

    heading = "unusable arguments"

    def __init__(self, problems: list[str]):
        super().__init__(problems, message="\n".join(problems))


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

    @property
    def topics(self) -> tuple[str, ...]:
        """Every input topic, sorted: the merge breaks ties by this order, whatever order the
        settings named them in. Never the workers' repartition topic: routed topics are read at
        their source (the new group's repartition topic starts empty)."""
        return tuple(sorted({*self.config.input_topics, *self.config.routed_topics}))

    @property
    def output_topic(self) -> str | None:
        return self.output[len(KAFKA_OUTPUT):] if self.output.startswith(KAFKA_OUTPUT) else None


def parse_offsets(text: str) -> dict[Key, int]:
    """'topic:partition=offset,...' -> {(topic, partition): offset}; every bad item is named."""
    offsets: dict[Key, int] = {}
    problems = []
    for item in (part.strip() for part in text.split(",")):
        where, sep, offset = item.partition("=")
        topic, colon, partition = where.rpartition(":")
        try:
            if not (sep and colon and topic):
                raise ValueError
            key, value = (topic.strip(), int(partition)), int(offset)
            if key[1] < 0 or value < 0:
                raise ValueError
        except ValueError:
            problems.append(f"--from: {item!r} is not topic:partition=offset (whole numbers, 0 or more)")
            continue
        if key in offsets:
            problems.append(f"--from: {key[0]}:{key[1]} is given more than once")
        offsets[key] = value
    if problems:
        raise ArgumentProblems(problems)
    return offsets


def parse_request(args: argparse.Namespace, config: WorkerConfig | None, problems: list[str]) -> Request | None:
    """The backfill's request from parsed flags; problems (each naming its flag) go to `problems`.
    `config` is None when the worker settings themselves had problems (already listed)."""
    fields: dict = {"output": args.output, "dead_letter": args.dead_letter, "handoff": args.handoff,
                    "read_committed": args.isolation == "read_committed", "progress": not args.no_progress}
    start = args.start.strip()
    if start == "beginning":
        pass
    elif "=" in start:
        try:
            fields["from_offsets"] = parse_offsets(start)
        except ArgumentProblems as exc:
            problems += exc.problems
    else:
        try:
            fields["from_time"] = parse_rfc3339(start)
        except ValueError as exc:
            problems.append(f"--from: {exc}; or 'beginning', or topic:partition=offset,...")
    if args.until.strip() != "now":
        try:
            fields["until"] = parse_rfc3339(args.until)
        except ValueError as exc:
            problems.append(f"--until: {exc}; or 'now'")
    try:
        fields["seek_margin"] = parse_duration(args.seek_margin)
    except ValueError as exc:
        problems.append(f"--seek-margin: {exc}")
    if fields.get("from_time") is not None and fields.get("until") is not None \
            and fields["until"] <= fields["from_time"]:
        problems.append(f"--until {args.until} is not after --from {args.start}: the window is empty")
    if args.handoff is not None:
        if not args.handoff.strip():
            problems.append("--handoff: must name a consumer group")
        elif fields.get("until") is not None:
            problems.append("--handoff needs --until now: the workers continue from where the backfill stopped "
                            "reading, so events after --until would never be applied")
    if config is None:
        return None
    if config.bootstrap_servers is None:
        problems.append("--bootstrap-servers: a backfill reads the history of an existing cluster; name it "
                        "(flag, SEGMENTS_BOOTSTRAP_SERVERS or the config file)")
    if args.handoff is not None and args.handoff.strip() == config.group_id:
        problems.append(f"--handoff {args.handoff}: that is the live workers' group (--group-id); hand off to "
                        f"a new group and switch the workers over to it")
    request = Request(config=config, **fields)
    topic = request.output_topic
    if topic is not None:
        live = _live_topics(config) | ({WorkerConfig(group_id=request.handoff).changelog_topic}
                                       if request.handoff else set())
        if not topic:
            problems.append(f"--output {args.output}: name the topic after {KAFKA_OUTPUT}")
        elif topic in live:
            problems.append(f"--output {args.output}: {topic!r} is an input or a live worker topic; a backfill "
                            f"writes its changes to a topic of its own")
    elif args.output != "-" and not args.output.strip():
        problems.append("--output: must not be empty")
    return request


def _live_topics(config: WorkerConfig) -> set[str]:
    return {*config.input_topics, *config.routed_topics, config.changes_topic, config.membership_topic,
            config.dead_letter_topic, config.changelog_topic, config.repartition_topic,
            *([config.definitions_topic] if config.definitions_topic else [])}
