"""`segments bench worker`: the native worker end to end on the embedded broker.

Three measures, each beside what bounds it in the same run:
- throughput: the worker (exactly_once) over a pre-loaded input topic, next to the raw ceiling of
  confluent-kafka consume + msgspec decode of the same records;
- latency at a steady offered rate: produce time of an event to the moment its segment change is
  readable by a read_committed consumer (an upper bound of consume-to-committed-change);
- restore: a partition of N customers rebuilt from its changelog (store + timer index).
"""
from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import msgspec
from confluent_kafka import Consumer, Producer, TopicPartition
from rich.console import Console
from rich.table import Table

from .broker import EmbeddedBroker, ensure_topics
from .config import WorkerConfig
from .engine import Engine
from .events import Decoder
from .rules import load_catalog
from .state import dump_state
from .synth import shopper_events
from .timeutil import format_rfc3339
from .worker import Worker

PARTITIONS = 4
_METRICS_PORT = 9399


def run_worker_bench(events: int, customers: int, seed: int, rate: int, seconds: float,
                     restore_customers: int) -> int:
    console = Console(highlight=False)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        base = WorkerConfig(bootstrap_servers=broker.bootstrap, instance_id="bench", partitions=PARTITIONS,
                            idle_advance_ms=None, metrics_port=None, session_timeout_ms=6000,
                            max_poll_interval_ms=10000, state_dir=Path(tmp))
        table = Table(title=f"native worker, exactly_once, embedded broker, {PARTITIONS} partitions")
        for column in ("measure", "value", "ceiling (same run)", "ratio"):
            table.add_column(column, justify="left" if column == "measure" else "right")

        console.print(f"throughput: {events:,} events over {customers:,} customers ...")
        config = dataclasses.replace(base, input_topics=("tp-events",), group_id="tp")
        lines = list(shopper_events(customers, events, seed))
        ensure_topics(broker.bootstrap, Worker(config, load_catalog()).topics())
        _produce(broker.bootstrap, "tp-events", lines)
        ceiling = _consume_decode_rate(broker.bootstrap, "tp-events", len(lines))
        rate_seen = _worker_rate(config, len(lines))
        table.add_row("events/s end to end", f"{rate_seen:,.0f}", f"{ceiling:,.0f}", f"{rate_seen / ceiling:.2f}")

        console.print(f"latency: {rate:,} events/s offered for {seconds:.0f} s ...")
        config = dataclasses.replace(base, input_topics=("lt-events",), group_id="lt",
                                     changes_topic="lt-changes", membership_topic="lt-membership",
                                     dead_letter_topic="lt-dead")
        p50, p99, worst, offered, batch_p99 = _latency(config, customers, seed, rate, seconds)
        table.add_row(f"produce -> readable change p50, {offered:,.0f} events/s", f"{p50 * 1000:.0f} ms", "", "")
        table.add_row("produce -> readable change p99", f"{p99 * 1000:.0f} ms", "", "")
        table.add_row("produce -> readable change max", f"{worst * 1000:.0f} ms", "", "")
        table.add_row("consume -> committed batch p99 (worker)", f"<= {batch_p99 * 1000:.0f} ms", "", "")

        console.print(f"restore: {restore_customers:,} customers from the changelog ...")
        config = dataclasses.replace(base, input_topics=("rs-events",), group_id="rs")
        restore_seconds, records = _restore(config, restore_customers, seed)
        table.add_row(f"restore {restore_customers:,} customers", f"{restore_seconds:.1f} s",
                      f"{records / restore_seconds:,.0f} records/s", "")
        console.print(table)
    return 0


def _produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "partitioner": "murmur2_random",
                         "queue.buffering.max.messages": 1_000_000})
    decode = msgspec.json.Decoder().decode
    for line in lines:
        producer.produce(topic, key=decode(line)["customer_id"].encode(), value=line)
        producer.poll(0)
    producer.flush()


def _consume_decode_rate(bootstrap: str, topic: str, total: int) -> float:
    """The raw ceiling: read every record by assign and decode it, nothing else."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ceiling", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    decode, seen = Decoder().decode, 0
    started = time.perf_counter()
    while seen < total:
        for msg in consumer.consume(2000, 1.0):
            if msg.error() is None:
                decode(msg.value())
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return total / elapsed


def _worker_rate(config: WorkerConfig, total: int) -> float:
    """Events per second from the end of the first committed batch to the last (the group join
    before it is the broker's, not the worker's)."""
    marks: list[tuple[float, int]] = []
    worker = Worker(config, load_catalog(), on_batch=lambda events, changes: marks.append((time.perf_counter(), events)))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    while sum(n for _, n in marks) < total and thread.is_alive():
        time.sleep(0.05)
    worker.stop()
    thread.join()
    if len(marks) < 3:
        raise SystemExit("too few events to measure a rate: raise --events")
    first_at, first_events = marks[0]
    return (total - first_events) / (marks[-1][0] - first_at)


def _latency(config: WorkerConfig, customers: int, seed: int, rate: int, seconds: float):
    """The worker in its own process (as deployed): sharing this one's interpreter lock with the
    producing loop would measure the lock, not the worker."""
    ensure_topics(config.bootstrap_servers, Worker(config, load_catalog()).topics())
    worker = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "worker", "--bootstrap-servers", config.bootstrap_servers,
         "--input-topics", config.input_topics[0], "--changes-topic", config.changes_topic,
         "--membership-topic", config.membership_topic, "--dead-letter-topic", config.dead_letter_topic,
         "--group-id", config.group_id, "--instance-id", "latency", "--state-dir", str(config.state_dir),
         "--partitions", str(PARTITIONS), "--session-timeout-ms", "6000", "--max-poll-interval-ms", "10000",
         "--idle-advance-ms", "0", "--metrics-port", str(_METRICS_PORT),
         "--commit-interval-ms", str(config.commit_interval_ms)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        reader = Consumer({"bootstrap.servers": config.bootstrap_servers, "group.id": "latency",
                           "isolation.level": "read_committed", "fetch.wait.max.ms": 5})
        reader.assign([TopicPartition(config.changes_topic, p, 0) for p in range(PARTITIONS)])
        producer = Producer({"bootstrap.servers": config.bootstrap_servers, "linger.ms": 1,
                             "partitioner": "murmur2_random"})
        sent: dict[str, float] = {}
        latencies: list[float] = []
        # Wait for the group to settle: an order that makes a new customer, seen as a change.
        warm = {"type": "order_paid", "event_id": "warm", "customer_id": "warm", "order_id": "warm",
                "amount": 1, "occurred_at": format_rfc3339(int(time.time() * 1_000_000))}
        sent["warm"] = time.perf_counter()
        producer.produce(config.input_topics[0], key=b"warm", value=msgspec.json.encode(warm))
        producer.flush()
        deadline = time.perf_counter() + 60
        while not latencies and time.perf_counter() < deadline:
            _drain(reader, sent, latencies, 0.2)
        latencies.clear()
        decode = msgspec.json.Decoder().decode
        started = time.perf_counter()
        for n, line in enumerate(shopper_events(customers, int(rate * seconds), seed + 1)):
            event = decode(line)
            # events happen now: the latency is the worker's, not a replay's
            event["occurred_at"] = format_rfc3339(int(time.time() * 1_000_000))
            due = started + n / rate
            # wait by reading changes (blocking), never by spinning: this machine has two cores
            while (wait := due - time.perf_counter()) > 0.001:
                _drain(reader, sent, latencies, wait)
            sent[event["event_id"]] = time.perf_counter()
            producer.produce(config.input_topics[0], key=event["customer_id"].encode(),
                             value=msgspec.json.encode(event))
            producer.poll(0)
        producer.flush()
        offered = (len(sent) - 1) / (time.perf_counter() - started)
        quiet = time.perf_counter() + 3
        while time.perf_counter() < quiet:
            _drain(reader, sent, latencies, 0.1)
        reader.close()
        batch_p99 = _histogram_quantile(_METRICS_PORT, "segments_batch_duration_seconds", 0.99)
    finally:
        worker.terminate()
        worker.wait(30)
    latencies.sort()
    return (statistics.median(latencies), latencies[int(len(latencies) * 0.99)], latencies[-1], offered,
            batch_p99)


def _histogram_quantile(port: int, name: str, q: float) -> float:
    """The upper bound of the bucket holding quantile q, read from the worker's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    buckets = [(float(line.split('le="')[1].split('"')[0]), float(line.rsplit(" ", 1)[1]))
               for line in text.splitlines() if line.startswith(f"{name}_bucket")]
    total = buckets[-1][1]
    return next(bound for bound, count in buckets if count >= q * total)


def _drain(reader: Consumer, sent: dict[str, float], latencies: list[float], timeout: float) -> None:
    for msg in reader.consume(1000, timeout):
        if msg.error() is None:
            change = msgspec.json.decode(msg.value())
            produced = sent.get(change["event_id"] or "")
            if produced is not None:
                latencies.append(time.perf_counter() - produced)


def _restore(config: WorkerConfig, customers: int, seed: int) -> tuple[float, int]:
    """Fill one changelog partition with `customers` realistic states, then time a partition
    assignment: the store's restore plus the engine's timer index rebuilt from it."""
    engine = Engine(load_catalog())
    decode = Decoder().decode
    for line in shopper_events(2000, 20000, seed):
        engine.apply(decode(line))
    samples = [dump_state(state) for state in engine.store.values()]
    worker = Worker(config, load_catalog())
    ensure_topics(config.bootstrap_servers, worker.topics())
    producer = Producer({"bootstrap.servers": config.bootstrap_servers, "linger.ms": 20,
                         "queue.buffering.max.messages": 1_000_000, "compression.type": "lz4"})
    for n in range(customers):
        producer.produce(config.changelog_topic, key=f"c{n}".encode(), value=samples[n % len(samples)], partition=0)
        producer.poll(0)
    producer.flush()
    started = time.perf_counter()
    task = worker.open_partition(0)
    elapsed = time.perf_counter() - started
    assert len(task.engine.timers) > 0
    task.store.close()
    return elapsed, customers

