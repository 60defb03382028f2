"""`segments backfill` against a real broker: the same bytes as `segments replay` over the events
in merged order, reproducibly, for every kind of window, and a hand-off the workers continue from.

The reference order is built here independently of stream.backfill.reader: every partition read whole,
filtered by the window, then merged with heapq.merge by (occurred_at, topic, partition, offset).
"""
from __future__ import annotations

import heapq
import logging
import re
import time
from pathlib import Path

import msgspec
import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from stream.kafka.topic_admin import ensure_topics
from stream.cli.main import main
from stream.definitions.resolution import decode_running, file_definitions
from stream.engine.core import Engine
from stream.model.decoding import Decoder
from stream.model.events import Event
from stream.rules.catalog import compile_catalog, load_catalog
from stream.storage.keys import DEFINITIONS_KEY
from stream.tools.synth import shopper_events
from stream.model.time import format_rfc3339, from_datetime, parse_rfc3339
from stream.worker.loop import Worker

from . import conformance
from .workers import Running, settings

PARTITIONS = 3
BAD = [b"not json", b'{"type":"order_paid","event_id":"x","customer_id":"c1"}']
_decode = Decoder().decode


def _time(line: bytes) -> int | None:
    event = _decode(line)
    return from_datetime(event.occurred_at) if isinstance(event, Event) else None


def _produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    """Keyed by customer id (murmur2), record timestamps = occurred_at (so that offsets_for_times
    means something on a broker that implements it)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "partitioner": "murmur2_random"})
    for line in lines:
        event = _decode(line)
        if isinstance(event, Event):
            producer.produce(topic, key=event.customer_id.encode(), value=line, timestamp=_time(line) // 1000)
        else:
            producer.produce(topic, key=b"bad", value=line)
    producer.flush()


@pytest.fixture(scope="module")
def history(kafka_bootstrap, tmp_path_factory):
    """Two keyed topics of shopper events, out of order inside partitions (every 40th event moved
    25 places later, so it arrives late), with bad messages, one of them first."""
    prefix = f"it-backfill-{tmp_path_factory.mktemp('x').name[-8:]}"
    lines = list(shopper_events(400, 4000, seed=11))
    for i in range(40, len(lines) - 30, 40):
        lines.insert(i + 25, lines.pop(i))
    topics = (f"{prefix}-a", f"{prefix}-b")
    ensure_topics(kafka_bootstrap, [(t, PARTITIONS, {}) for t in topics])
    _produce(kafka_bootstrap, topics[0], [BAD[0]] + lines[0::2])
    _produce(kafka_bootstrap, topics[1], lines[1::2][:1500] + [BAD[1]] + lines[1::2][1500:])
    partitions = {}
    for topic in topics:
        for msg in conformance.read_messages(kafka_bootstrap, topic, PARTITIONS):
            partitions.setdefault((topic, msg.partition()), []).append((msg.offset(), msg.value()))
    return {"topics": topics, "partitions": partitions, "lines": lines}


def merged(history, since=None, until=None, offsets=None) -> list[bytes]:
    """The reference order: each partition filtered by the window, then merged."""
    streams = []
    for (topic, partition), records in sorted(history["partitions"].items()):
        first = (offsets or {}).get((topic, partition), 0)
        kept = [(t, topic, partition, offset, value) for offset, value in sorted(records)
                if offset >= first and (t := _time(value)) is not None
                and (since is None or t >= since) and (until is None or t < until)]
        streams.append(kept)
    return [entry[4] for entry in heapq.merge(*streams)]


def replayed(tmp_path: Path, lines: list[bytes], *extra: str) -> bytes:
    source, out = tmp_path / "merged.jsonl", tmp_path / "replay.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in lines))
    assert main(["replay", "--input", str(source), "--output", str(out), "--no-progress", *extra]) == 0
    return out.read_bytes()


def backfill(bootstrap: str, topics, tmp_path: Path, capsys, *args: str, name: str = "backfill") -> tuple[bytes, str]:
    out, dead = tmp_path / f"{name}.jsonl", tmp_path / f"{name}-dead.jsonl"
    code = main(["backfill", "--bootstrap-servers", bootstrap, "--input-topics", ",".join(reversed(topics)),
                 "--output", str(out), "--dead-letter", str(dead), "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 0, err
    return out.read_bytes(), dead.read_text() + err


def count(summary: str, label: str) -> int:
    return int(re.search(rf"^{label}\s+(\d+)", summary, re.M).group(1))


def test_same_bytes_as_replay_in_merged_order_and_again_on_a_second_run(kafka_bootstrap, history, tmp_path, capsys):
    first, summary = backfill(kafka_bootstrap, history["topics"], tmp_path, capsys, name="one")
    reference = replayed(tmp_path, merged(history))
    assert first == reference
    assert first.count(b"\n") > 800
    assert count(summary, "late") > 50            # the merge keeps late events late, as replay does
    assert count(summary, "events") == len(history["lines"])
    # bad messages: reported with where they are, never applied
    dead = [msgspec.json.decode(line) for line in summary.splitlines() if line.startswith("{")]
    assert sorted(d.get("raw") for d in dead) == sorted(b.decode() for b in BAD)
    assert {(d["topic"], d["partition"]) for d in dead} <= set(history["partitions"])
    assert count(summary, "dead letters") == 2
    second, _ = backfill(kafka_bootstrap, history["topics"], tmp_path, capsys, name="two")
    assert second == first


def test_from_a_time_leaves_out_what_occurred_before(kafka_bootstrap, history, tmp_path, capsys):
    """On the embedded broker offsets_for_times answers 0 (Tansu): the backfill reads from the
    start and skips by occurred_at. On Kafka it starts near the time; the result is the same."""
    times = sorted(t for line in history["lines"] if (t := _time(line)) is not None)
    since = times[len(times) // 2]
    out, summary = backfill(kafka_bootstrap, history["topics"], tmp_path, capsys,
                            "--from", format_rfc3339(since), "--seek-margin", "1s")
    expected = merged(history, since=since)
    assert out == replayed(tmp_path, expected)
    assert count(summary, "events") == len(expected) < len(history["lines"])
    # The bad message at the head of a partition lies before the window: left out with it.
    assert count(summary, "dead letters") == 1


def test_from_offsets(kafka_bootstrap, history, tmp_path, capsys):
    a, b = history["topics"]
    offsets = {(a, 0): 100, (b, 2): 7}
    out, summary = backfill(kafka_bootstrap, history["topics"], tmp_path, capsys,
                            "--from", f"{a}:0=100,{b}:2=7")
    assert out == replayed(tmp_path, merged(history, offsets=offsets))
    assert count(summary, "events") < len(history["lines"])


def test_until_a_time_stops_there_and_fires_the_timers_due_by_then(kafka_bootstrap, history, tmp_path, capsys):
    times = sorted(t for line in history["lines"] if (t := _time(line)) is not None)
    until = format_rfc3339(times[len(times) * 3 // 4])
    out, summary = backfill(kafka_bootstrap, history["topics"], tmp_path, capsys, "--until", until)
    expected = merged(history, until=parse_rfc3339(until))
    assert out == replayed(tmp_path, expected, "--until", until)
    assert count(summary, "outside") == len(history["lines"]) - len(expected)
    # Well after the last event: nothing is left out, and the timers due by then fire at the end.
    later = format_rfc3339(times[-1] + 90 * 86_400_000_000)
    out, summary = backfill(kafka_bootstrap, history["topics"], tmp_path, capsys, "--until", later, name="later")
    assert out == replayed(tmp_path, merged(history), "--until", later)
    assert count(summary, "outside") == 0
    fired = out[len(replayed(tmp_path, merged(history))):].splitlines()
    assert len(fired) > 20 and all(b'"cause":"time"' in line for line in fired)


def test_an_absent_definitions_topic_defines_nothing(kafka_bootstrap, history, unique_topic, tmp_path, capsys):
    """No worker ever ran with that topic (a worker creates it): the file alone, said so, and not created."""
    absent = f"{unique_topic}-absent"
    out, summary = backfill(kafka_bootstrap, history["topics"], tmp_path, capsys, "--definitions-topic", absent)
    assert f"definitions   the built-in catalog alone (topic '{absent}' does not exist)" in summary
    assert out == replayed(tmp_path, merged(history))
    probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "probe"})
    try:
        assert absent not in probe.list_topics(timeout=10).topics
    finally:
        probe.close()


def test_problems_found_on_the_broker_are_listed_together(kafka_bootstrap, history, unique_topic, capsys):
    a, _ = history["topics"]
    code = main(["backfill", "--bootstrap-servers", kafka_bootstrap, "--input-topics", f"{a},{unique_topic}",
                 "--from", f"{a}:0=999999,{a}:9=1", "--output", "-", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    for expected in (f"input topic '{unique_topic}' does not exist",
                     f"--from: {a}:9 is not a partition of the input topics",
                     f"--from: {a}:0=999999 is outside the partition's offsets"):
        assert expected in err, err


def test_handoff_the_workers_continue_where_the_backfill_stopped(kafka_bootstrap, unique_topic, tmp_path, capsys):
    """Backfill the first part of the history into a new group, start a real worker on that group,
    produce the rest: together they give the transitions of one replay of everything."""
    lines = list(shopper_events(300, 4000, seed=5))
    cut = len(lines) * 2 // 3
    old = settings(kafka_bootstrap, unique_topic, tmp_path / "old")
    group = f"{unique_topic}-rebuilt"
    ensure_topics(kafka_bootstrap, Worker(old, load_catalog()).topics())
    topic = old.input_topics[0]
    partition_of: dict[str, int] = {}
    cuts = conformance.produce(kafka_bootstrap, topic, lines[:cut], partition_of)

    args = ["backfill", "--bootstrap-servers", kafka_bootstrap, "--input-topics", topic,
            "--group-id", old.group_id, "--changes-topic", old.changes_topic, "--no-progress"]
    assert main([*args, "--output", f"kafka:{unique_topic}-backfill", "--handoff", group]) == 0
    summary = capsys.readouterr().err
    assert f"to group {group}" in summary
    # The namespace is taken now: a second hand-off into it is refused.
    assert main([*args, "--output", "-", "--handoff", group]) == 2
    assert "already holds records" in capsys.readouterr().err

    new = settings(kafka_bootstrap, unique_topic, tmp_path / "new", group_id=group,
                   changes_topic=f"{unique_topic}-changes-new")
    worker = Worker(new, load_catalog())
    with Running(worker) as running:
        cuts.update(conformance.produce(kafka_bootstrap, topic, lines[cut:], partition_of))
        running.wait_for(len(lines) - cut)
    # The worker read only what came after the hand-off: its committed offsets are where the
    # backfill stopped (the state's de-duplication would hide a re-read, so count it).
    assert running.consumed == len(lines) - cut
    newest: dict[int, str] = {}
    for customer, at in cuts.items():
        newest[partition_of[customer]] = max(newest.get(partition_of[customer], ""), at)
    cuts = {customer: newest[p] for customer, p in partition_of.items()}
    observed = (conformance.read_all(kafka_bootstrap, f"{unique_topic}-backfill", PARTITIONS)
                + conformance.read_all(kafka_bootstrap, new.changes_topic, PARTITIONS))
    reference = conformance.replay(lines)
    conformance.assert_conforms(reference, observed, cuts)
    assert len(conformance.read_all(kafka_bootstrap, new.changes_topic, PARTITIONS)) > 100


WINDOW_SHOPPER_DEEPER = {"when": {"repeated": {"event": "product_viewed", "per": "product", "at_least": 2,
                                               "within": "30d"}}}
BUYER = {"when": {"orders_placed": {"gte": 2}}}


def test_segments_defined_through_the_topic_are_backfilled_and_handed_off(kafka_bootstrap, unique_topic, tmp_path,
                                                                          capsys, caplog):
    """A segment changed (reading deeper history than the state kept: a worker would flag it) and one
    added through the definitions topic, by `segments define`: the backfill evaluates them under
    their topic versions, and workers started on the handed-off group run them at once, with no
    pass and no backfill flag, and their later changes conform to one replay under those versions."""
    lines = list(shopper_events(300, 4000, seed=8))
    cut = len(lines) * 2 // 3
    defs = f"{unique_topic}-definitions"
    old = settings(kafka_bootstrap, unique_topic, tmp_path / "old", definitions_topic=defs)
    ensure_topics(kafka_bootstrap, Worker(old, load_catalog()).topics())
    topic = old.input_topics[0]
    partition_of: dict[str, int] = {}
    cuts = conformance.produce(kafka_bootstrap, topic, lines[:cut], partition_of)
    for name, definition in (("window-shopper", WINDOW_SHOPPER_DEEPER), ("buyer", BUYER)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(definition))
        assert main(["define", name, "--file", str(path), "--bootstrap-servers", kafka_bootstrap,
                     "--definitions-topic", defs]) == 0
    running_now = {**file_definitions(load_catalog()), "window-shopper": {**WINDOW_SHOPPER_DEEPER, "version": 2},
                   "buyer": {**BUYER, "version": 1}}
    catalog = compile_catalog(running_now, "file + topic")

    args = ["backfill", "--bootstrap-servers", kafka_bootstrap, "--input-topics", topic, "--group-id", old.group_id,
            "--changes-topic", old.changes_topic, "--definitions-topic", defs, "--no-progress"]
    # --ignore-definitions-topic: the file alone, as before definitions could change while running
    assert main([*args, "--output", str(tmp_path / "file-only.jsonl"), "--ignore-definitions-topic"]) == 0
    assert "definitions   the built-in catalog alone (--ignore-definitions-topic)" in capsys.readouterr().err
    file_only = [msgspec.json.decode(line) for line in (tmp_path / "file-only.jsonl").read_bytes().splitlines()]
    assert {(c["segment"], c["definition_version"]) for c in file_only if c["segment"] in running_now} == \
        {(s.name, 1) for s in load_catalog().segments if any(c["segment"] == s.name for c in file_only)}

    group = f"{unique_topic}-rebuilt"
    out = tmp_path / "backfill.jsonl"
    assert main([*args, "--output", str(out), "--handoff", group]) == 0
    summary = capsys.readouterr().err
    assert re.search(r"^definitions   the built-in catalog \+ topic .*buyer v1 \(topic offset \d+\).*"
                     r"window-shopper v2 \(topic offset \d+\)", summary, re.M), summary
    backfilled = [msgspec.json.decode(line) for line in out.read_bytes().splitlines()]
    versions = {(c["segment"], c["definition_version"]) for c in backfilled}
    assert ("buyer", 1) in versions and ("window-shopper", 2) in versions and ("window-shopper", 1) not in versions
    assert backfilled != file_only

    new = settings(kafka_bootstrap, unique_topic, tmp_path / "new", group_id=group, definitions_topic=defs,
                   changes_topic=f"{unique_topic}-changes-new")
    worker = Worker(new, load_catalog())
    with caplog.at_level(logging.INFO, logger="segments.definitions"), Running(worker) as running:
        cuts.update(conformance.produce(kafka_bootstrap, topic, lines[cut:], partition_of))
        running.wait_for(len(lines) - cut)
        described = worker.live.describe()
        records = {p: decode_running(task.store.meta(DEFINITIONS_KEY)) for p, task in worker.tasks.items()}
    # The handed-off record says the state was evaluated under what runs: nothing to re-evaluate or flag.
    assert not [r.getMessage() for r in caplog.records if "re-evaluat" in r.getMessage()
                or "needs a backfill" in r.getMessage()]
    assert sorted(records) == list(range(PARTITIONS))
    assert all(r.definitions == running_now and not r.redefine and not r.incomplete for r in records.values())
    assert {name: entry["version"] for name, entry in described["segments"].items()} == \
        {name: d.get("version", 1) for name, d in running_now.items()}
    assert not any(entry["needs_backfill"] or entry["reevaluating_partitions"]
                   for entry in described["segments"].values())

    later = conformance.read_all(kafka_bootstrap, new.changes_topic, PARTITIONS)
    assert later and not [c for c in later if c["cause"] == "definition"]
    assert {("buyer", 1), ("window-shopper", 2)} <= {(c["segment"], c["definition_version"]) for c in later}
    newest: dict[int, str] = {}
    for customer, at in cuts.items():
        newest[partition_of[customer]] = max(newest.get(partition_of[customer], ""), at)
    cuts = {customer: newest[p] for customer, p in partition_of.items()}
    conformance.assert_conforms(conformance.replay(lines, catalog), backfilled + later, cuts)


def test_an_event_keyed_otherwise_than_its_customer_is_a_dead_letter_as_on_a_worker(
        kafka_bootstrap, unique_topic, tmp_path, capsys):
    """A worker refuses an event whose key is not its customer id (Intake): a backfill must too,
    or its output and hand-off would hold an event the workers never apply."""
    topic = f"{unique_topic}-in"
    ensure_topics(kafka_bootstrap, [(topic, 1, {})])
    good, stray, keyless = (next(shopper_events(1, 1, seed=s)) for s in (1, 2, 3))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=_decode(good).customer_id.encode(), value=good)
    producer.produce(topic, key=b"someone-else", value=stray)
    producer.produce(topic, value=keyless)
    producer.flush()
    out, summary = backfill(kafka_bootstrap, [topic], tmp_path, capsys)
    assert out == replayed(tmp_path, [good])
    dead = {d["raw"]: d["reason"] for d in (msgspec.json.decode(line) for line in summary.splitlines()
                                           if line.startswith("{"))}
    assert count(summary, "dead letters") == 2 and count(summary, "events") == 1
    assert "key 'someone-else'" in dead[stray.decode()] and _decode(stray).customer_id in dead[stray.decode()]
    assert dead[keyless.decode()].startswith("no key on a topic keyed by customer id")


# ---- --jobs: engines in several processes, the bytes of one ---------------------------------------


def test_jobs_write_the_bytes_of_one_job_for_every_window(kafka_bootstrap, history, tmp_path, capsys):
    """Changes and dead letters byte for byte whatever --jobs, over late events and bad messages,
    for the whole history, a --from time, --from offsets and an --until past the last event."""
    a, b = history["topics"]
    times = sorted(t for line in history["lines"] if (t := _time(line)) is not None)
    windows = {"all": (), "from": ("--from", format_rfc3339(times[len(times) // 2]), "--seek-margin", "1s"),
               "offsets": ("--from", f"{a}:0=100,{b}:2=7"),
               "until": ("--until", format_rfc3339(times[-1] + 30 * 86_400_000_000))}
    for window, args in windows.items():
        written = {}
        for jobs in (1, 2, 3):
            name = f"{window}-{jobs}"
            out, summary = backfill(kafka_bootstrap, history["topics"], tmp_path, capsys, *args, "--jobs", str(jobs),
                                    name=name)
            assert re.search(rf"^jobs\s+{jobs}$", summary, re.M), summary
            written[jobs] = (out, (tmp_path / f"{name}-dead.jsonl").read_bytes(), count(summary, "late"))
        assert written[1][0].count(b"\n") > 100
        assert written[2] == written[1] and written[3] == written[1], window
    assert written[1][1].count(b"\n") == 2 and written[1][2] > 50       # dead letters and late events, too


def _partitions_of(bootstrap: str, topic: str) -> dict[int, list[tuple[bytes, bytes]]]:
    records: dict[int, list[tuple[bytes, bytes]]] = {}
    for msg in conformance.read_messages(bootstrap, topic, PARTITIONS):
        records.setdefault(msg.partition(), []).append((msg.key(), msg.value()))
    return records


def test_jobs_hand_off_and_publish_what_one_job_does(kafka_bootstrap, unique_topic, tmp_path, capsys):
    """With a hand-off and a Kafka output: the changelog (every state, the stream time, the
    definitions record), the group's offsets and the changes topic, partition by partition,
    whatever --jobs (each job sends its states in several chunks)."""
    lines = list(shopper_events(5000, 8000, seed=3))
    for i in range(30, len(lines) - 30, 30):
        lines.insert(i + 20, lines.pop(i))
    topic = f"{unique_topic}-in"
    ensure_topics(kafka_bootstrap, [(topic, PARTITIONS, {})])
    _produce(kafka_bootstrap, topic, lines)
    written = {}
    for jobs in (1, 2):
        group, output = f"{unique_topic}-group-{jobs}", f"{unique_topic}-out-{jobs}"
        assert main(["backfill", "--bootstrap-servers", kafka_bootstrap, "--input-topics", topic, "--no-progress",
                     "--output", f"kafka:{output}", "--handoff", group, "--jobs", str(jobs)]) == 0
        assert f"to group {group}" in capsys.readouterr().err
        member = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
        try:
            offsets = [(tp.partition, tp.offset) for tp in member.committed(
                [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)]
        finally:
            member.close()
        written[jobs] = (_partitions_of(kafka_bootstrap, f"{group}-state-changelog"),
                         _partitions_of(kafka_bootstrap, output), offsets)
    changelog, changes, offsets = written[1]
    assert sum(len(r) for r in changelog.values()) > 3000 and sum(len(r) for r in changes.values()) > 300
    assert offsets == [(p, n) for p, n in offsets if n > 0] and len(offsets) == PARTITIONS
    assert written[2] == written[1]


def _second_fails(job, conn) -> None:
    """As a backfill's job (in its own process): job 1 fails; the others do their work."""
    from stream.backfill.jobs import reporting, work
    if job.number != 1:
        work(job, conn)
        return
    with reporting(conn):
        raise RuntimeError("the disk of job 1 caught fire")


def test_a_failing_job_fails_the_backfill_and_hands_nothing_off(kafka_bootstrap, history, unique_topic, tmp_path,
                                                                capsys, monkeypatch):
    from stream.backfill import jobs
    monkeypatch.setattr(jobs, "work", _second_fails)
    group = f"{unique_topic}-rebuilt"
    code = main(["backfill", "--bootstrap-servers", kafka_bootstrap, "--input-topics", ",".join(history["topics"]),
                 "--output", str(tmp_path / "out.jsonl"), "--no-progress", "--jobs", "3", "--handoff", group])
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(r"^segments backfill: backfill job 1 \([^)]*\): RuntimeError: the disk of job 1 caught fire$",
                     err, re.M), err
    assert "handed off" not in err and "events " not in err
    probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        assert f"{group}-state-changelog" not in probe.list_topics(timeout=10).topics
        assert all(tp.offset < 0 for tp in probe.committed(
            [TopicPartition(t, p) for t in history["topics"] for p in range(PARTITIONS)], timeout=30))
    finally:
        probe.close()


def test_the_bench_measures_the_backfill_with_one_job_and_one_per_core(capsys):
    """Each backfill beside its read ceiling: one process for --jobs 1, one per job for --jobs N."""
    from stream.backfill.jobs import cores
    from stream.tools.bench.backfill import run_backfill_bench
    assert run_backfill_bench(events=4000, customers=400, seed=2) == 0
    table = capsys.readouterr().out
    jobs = min(cores(), 4)          # the bench's 4 partitions: at most 4 jobs
    for row, ceiling in (("consume + decode (ceiling)", "1 proc"),
                         (f"consume + decode, {jobs} processes (ceiling)", f"{jobs} procs"),
                         ("backfill, --jobs 1", "1 proc"),
                         (f"backfill, --jobs {cores()} (one per core)", f"{jobs} procs")):
        assert re.search(rf"│ {re.escape(row)} +│ +[\d,]+ │ +{ceiling} │ +\d+\.\d\d │", table), table


PRODUCTS_SEEN = {"distinct_count": "product_viewed.product_id"}    # lifetime: a worker can never complete it
BROWSER = {"when": {"trait.products_seen": {"gte": 3}}}


def _members(changes: bytes, segment: str) -> set[str]:
    """The members of `segment` after the changes (JSON lines) in order."""
    members: set[str] = set()
    for change in map(msgspec.json.decode, changes.splitlines()):
        if change["segment"] == segment:
            (members.add if change["change"] == "entered" else members.discard)(change["customer_id"])
    return members


def _stored_members(config, segment: str, capsys, *args: str) -> dict[str, int]:
    """`segments members SEGMENT --fields trait.products_seen` over a stopped worker's stores."""
    assert main(["members", segment, "--format", "jsonl", "--fields", "trait.products_seen",
                 "--state-dir", str(config.state_dir), "--group-id", config.group_id, *args]) == 0
    rows = [msgspec.json.decode(line) for line in capsys.readouterr().out.splitlines()]
    return {row["customer_id"]: row["trait.products_seen"] for row in rows}


def _taken_up(worker: Worker, running: Running, segment: str) -> dict:
    """GET /definitions' entry of `segment` once every partition runs it, re-evaluated and flagged."""
    deadline = time.monotonic() + 60
    while True:
        entry = worker.live.describe()["segments"].get(segment, {})
        if entry.get("needs_backfill") and len(entry["partitions"]) == PARTITIONS \
                and not entry["reevaluating_partitions"]:
            return entry
        assert time.monotonic() < deadline and running.thread.is_alive(), worker.live.describe()
        time.sleep(0.2)


def test_a_segment_reading_a_trait_added_while_running_is_flagged_and_rebuilt_by_a_backfill(
        kafka_bootstrap, unique_topic, tmp_path, capsys):
    """A lifetime trait of product views, and a segment reading it, defined while a worker runs: the
    state never kept the views, so the worker starts the trait empty and flags the segment as needing
    a backfill (docs/traits.md). A backfill handed off to a new group rebuilds it: the workers there
    run it unflagged, and its members (and their trait values) are those of `segments replay` over
    the whole history."""
    lines = list(shopper_events(300, 4000, seed=13))
    cut = len(lines) * 2 // 3
    defs = f"{unique_topic}-definitions"
    old = settings(kafka_bootstrap, unique_topic, tmp_path / "old", definitions_topic=defs)
    worker = Worker(old, load_catalog())
    ensure_topics(kafka_bootstrap, worker.topics())
    topic = old.input_topics[0]
    conformance.produce(kafka_bootstrap, topic, lines[:cut])
    with Running(worker) as running:
        running.wait_for(cut)
        for name, definition in (("trait.products_seen", PRODUCTS_SEEN), ("browser", BROWSER)):
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump(definition))
            assert main(["define", name, "--file", str(path), "--bootstrap-servers", kafka_bootstrap,
                         "--definitions-topic", defs]) == 0
        entry = _taken_up(worker, running, "browser")
    (flag,) = entry["needs_backfill"]
    assert flag["stream"] == "trait.products_seen" and flag["complete_at"] == "9000-01-01T00:00:00Z"
    capsys.readouterr()

    file = {"traits": {"products_seen": PRODUCTS_SEEN},
            "segments": {**file_definitions(load_catalog()), "browser": BROWSER}}
    segments_file = tmp_path / "segments.yaml"
    segments_file.write_text(yaml.safe_dump(file, sort_keys=False))
    cut_reference = _members(replayed(tmp_path, lines[:cut], "--segments", str(segments_file)), "browser")
    # What the flag warns of: the trait started empty when defined, after every event so far, so the
    # worker has no member where the history has many.
    assert len(cut_reference) > 5
    assert _stored_members(old, "browser", capsys) == {}            # by the definitions its stores run

    group = f"{unique_topic}-rebuilt"
    assert main(["backfill", "--bootstrap-servers", kafka_bootstrap, "--input-topics", topic,
                 "--group-id", old.group_id, "--changes-topic", old.changes_topic, "--definitions-topic", defs,
                 "--no-progress", "--output", str(tmp_path / "backfill.jsonl"), "--handoff", group]) == 0
    assert f"to group {group}" in capsys.readouterr().err
    new = settings(kafka_bootstrap, unique_topic, tmp_path / "new", group_id=group, definitions_topic=defs,
                   changes_topic=f"{unique_topic}-changes-new")
    worker = Worker(new, load_catalog())
    with Running(worker) as running:
        conformance.produce(kafka_bootstrap, topic, lines[cut:])
        running.wait_for(len(lines) - cut)
        described = worker.live.describe()["segments"]["browser"]
    assert described["needs_backfill"] == [] and sorted(described["partitions"]) == list(range(PARTITIONS))

    reference = _members(replayed(tmp_path, lines, "--segments", str(segments_file)), "browser")
    engine = Engine(load_catalog(segments_file))
    for line in lines:
        engine.apply(_decode(line))
    trait = engine.catalog.traits["products_seen"]
    stored = _stored_members(new, "browser", capsys)        # the definitions the handed-off stores run
    assert set(stored) == reference and len(reference) > len(cut_reference)
    assert stored == {cid: trait.value(engine.store.get(cid), engine.now)[0] for cid in reference}
