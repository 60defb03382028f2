"""Where each input partition is read from and to, asked of the broker before a backfill starts:
the partitions of the input topics, their ends, the start for --from (a time is looked up and
verified, offsets are checked), and that a hand-off's namespace is unused."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from stream.backfill.request import Request
from stream.kafka.clients import worker_client_config
from stream.kafka.partition_ends import Key, partition_ends, peek
from stream.runtime.settings import WorkerConfig

log = logging.getLogger("segments.backfill")

_BEFORE_PROBE = 16           # records read before a looked-up offset to verify it


@dataclass
class Span:
    """A partition's records to read: offsets start .. end (exclusive)."""
    topic: str
    partition: int
    start: int
    end: int

    @property
    def key(self) -> Key:
        return self.topic, self.partition


def trusted_start(answer: int, low: int, end: int, before_ms: int | None, target_ms: int) -> int:
    """Where to start reading a partition for the records stamped at or after `target_ms`.

    `answer` is the broker's offsets_for_times answer (-1: no record that late), `before_ms` the
    timestamp of the last record before it (None: none could be read). The answer is trusted only
    when that record is older than the target: an answer that is too late would silently skip
    records, one that is too early (the embedded broker's 0) only costs reading more. An untrusted
    answer is replaced by the partition's first offset."""
    if answer < 0 or answer > end:
        answer = end
    if answer <= low:
        return low
    if before_ms is not None and before_ms < target_ms:
        return answer
    return low


def plan(request: Request, problems: list[str]) -> list[Span]:
    """Each input partition's span; problems found on the broker (missing topics, offsets out of
    range, a namespace already used) go to `problems`."""
    config = request.config
    probe = Consumer(consumer_config(config, "read_uncommitted"))
    try:
        metadata = probe.list_topics(timeout=30).topics
        keys: list[Key] = []
        for topic in request.topics:
            if topic not in metadata or metadata[topic].error is not None:
                problems.append(f"input topic {topic!r} does not exist on {config.bootstrap_servers}")
                continue
            keys += [(topic, p) for p in sorted(metadata[topic].partitions)]
        counts = {t: len(metadata[t].partitions) for t in config.input_topics if t in metadata}
        if len(set(counts.values())) > 1:
            problems.append("the keyed input topics differ in partition count "
                            f"({', '.join(f'{t}: {n}' for t, n in counts.items())}); the workers need one count")
        for key in sorted(set(request.from_offsets or ()) - set(keys)):
            problems.append(f"--from: {key[0]}:{key[1]} is not a partition of the input topics")
        lows, ends = partition_ends(probe, keys)
        starts = dict(lows)
        for key, offset in (request.from_offsets or {}).items():
            if key in lows:
                if not lows[key] <= offset <= ends[key]:
                    problems.append(f"--from: {key[0]}:{key[1]}={offset} is outside the partition's offsets "
                                    f"{lows[key]}..{ends[key]}")
                starts[key] = offset
        if request.from_time is not None:
            starts = _time_starts(probe, lows, ends, (request.from_time - request.seek_margin) // 1000)
        if request.handoff is not None:
            problems += _not_fresh(config, request.handoff, metadata, keys)
        return [Span(t, p, starts[(t, p)], ends[(t, p)]) for t, p in keys]
    finally:
        probe.close()


def consumer_config(config: WorkerConfig, isolation: str) -> dict:
    return {"group.id": "segments-backfill", "enable.auto.commit": False, "enable.partition.eof": True,
            "isolation.level": isolation, "auto.offset.reset": "error", "fetch.wait.max.ms": 50,
            **worker_client_config(config)}


def _time_starts(probe: Consumer, lows: dict[Key, int], ends: dict[Key, int], target_ms: int) -> dict[Key, int]:
    answers = {(tp.topic, tp.partition): tp.offset for tp in probe.offsets_for_times(
        [TopicPartition(t, p, target_ms) for t, p in lows], timeout=30)}
    # -1 (no record that late) means the end; an answer past the end is clamped to it.
    answers = {key: min(answer if answer >= 0 else ends[key], ends[key]) for key, answer in answers.items()}
    checked = {key: answer for key, answer in answers.items() if answer > lows[key]}
    seen = peek(probe, {key: max(lows[key], answer - _BEFORE_PROBE) for key, answer in checked.items()}, checked)
    starts = {}
    for key, low in lows.items():
        before = [ts for offset, ts in seen.get(key, (0, []))[1] if offset < answers[key]]
        starts[key] = trusted_start(answers[key], low, ends[key], before[-1] if before else None, target_ms)
        if key in checked and starts[key] == low:
            log.info("%s[%d]: the broker's offset %d for the start time is not confirmed by the record before "
                     "it; reading from %d and skipping by occurred_at", key[0], key[1], answers[key], low)
    return starts


def _not_fresh(config: WorkerConfig, group: str, metadata, keys: list[Key]) -> list[str]:
    """A hand-off goes to a namespace nobody used: an empty changelog, no committed offsets."""
    problems = []
    changelog = WorkerConfig(group_id=group).changelog_topic
    if changelog in metadata:
        reader = Consumer(consumer_config(config, "read_uncommitted"))
        try:
            if any(reader.get_watermark_offsets(TopicPartition(changelog, p), timeout=30)[1] > 0
                   for p in metadata[changelog].partitions):
                problems.append(f"--handoff {group}: {changelog} already holds records; hand off to a new group")
        finally:
            reader.close()
    member = Consumer({**consumer_config(config, "read_uncommitted"), "group.id": group})
    try:
        committed = [tp for tp in member.committed([TopicPartition(*key) for key in keys], timeout=30)
                     if tp.offset >= 0]
    finally:
        member.close()
    if committed:
        problems.append(f"--handoff {group}: the group already has committed offsets "
                        f"({', '.join(f'{tp.topic}:{tp.partition}={tp.offset}' for tp in committed[:4])}); "
                        f"hand off to a new group")
    return problems
