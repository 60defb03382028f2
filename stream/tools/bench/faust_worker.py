"""`segments bench faust`: `segments worker --runtime faust` beside `--runtime native`.

Both runtimes get the same pre-loaded input topic (synthetic shoppers, murmur2-keyed) and run as a
user runs them: `segments worker` in its own process, at_least_once (the only guarantee the Faust
runtime gives). Progress is read from the group's committed offsets, which either runtime commits
only after the output of the events before them is written, so the rate is of events whose
changes, membership records and state are in Kafka. It is counted from the first commit to the
last: the group join before it is the broker's, not the runtime's. Each runtime runs --runs times
(a new group each time, over the same input); the median is the figure. The ceiling is
confluent-kafka consume + msgspec decode of the same records, in the same run.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, TopicPartition
from rich.console import Console
from rich.table import Table

from stream.tools.bench.worker import PARTITIONS, BenchFailed, _consume_decode_rate, _produce
from stream.kafka.embedded_broker import EmbeddedBroker
from stream.kafka.topic_admin import ensure_topics
from stream.tools.synth import shopper_events

_TOPIC = "bench-events"


def run_faust_bench(events: int, customers: int, seed: int, runs: int) -> int:
    console = Console(highlight=False)
    lines = list(shopper_events(customers, events, seed))
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        ensure_topics(broker.bootstrap, [(_TOPIC, PARTITIONS, {})])
        _produce(broker.bootstrap, _TOPIC, lines)
        ceiling = _consume_decode_rate(broker.bootstrap, _TOPIC, len(lines))
        table = Table(title=f"{len(lines):,} events, {customers:,} customers, {PARTITIONS} partitions, "
                            f"at_least_once, embedded broker; median of {runs}")
        for column in ("runtime", "events/s", "runs", "ceiling (same run)", "ratio"):
            table.add_column(column, justify="left" if column == "runtime" else "right")
        for runtime in ("native", "faust"):
            console.print(f"{runtime}: {runs} run(s) ...")
            rates = [_rate(broker.bootstrap, runtime, f"bench-{runtime}-{n}", len(lines), f"{tmp}/{runtime}-{n}")
                     for n in range(runs)]
            median = statistics.median(rates)
            table.add_row(runtime, f"{median:,.0f}", ", ".join(f"{r:,.0f}" for r in rates), f"{ceiling:,.0f}",
                          f"{median / ceiling:.3f}")
    console.print(table)
    return 0


def _rate(bootstrap: str, runtime: str, group: str, total: int, state_dir: str) -> float:
    with open(f"{state_dir}.log", "wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", "--runtime", runtime, "--bootstrap-servers", bootstrap,
             "--input-topics", _TOPIC, "--changes-topic", f"{group}-changes",
             "--membership-topic", f"{group}-membership", "--dead-letter-topic", f"{group}-dead",
             "--group-id", group, "--state-dir", state_dir, "--partitions", str(PARTITIONS),
             "--session-timeout-ms", "6000", "--max-poll-interval-ms", "10000",
             "--idle-advance-ms", "0", "--metrics-port", "0", "--guarantee", "at_least_once"],
            stdout=subprocess.DEVNULL, stderr=err)
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    tps = [TopicPartition(_TOPIC, p) for p in range(PARTITIONS)]
    first: tuple[float, int] | None = None
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = sum(max(tp.offset, 0) for tp in probe.committed(tps, timeout=10))
            now = time.perf_counter()
            if first is None and done > 0:
                first = (now, done)
            if done >= total:
                break
            if worker.poll() is not None:
                raise BenchFailed(f"the {runtime} worker exited with status {worker.returncode}:\n{_tail(state_dir)}")
            time.sleep(0.05)
        else:
            raise BenchFailed(f"the {runtime} worker did not finish within 600 s:\n{_tail(state_dir)}")
    finally:
        probe.close()
        worker.terminate()
        worker.wait(60)
    if first is None:      # (none of the events committed: there were none)
        raise BenchFailed("too few events to measure a rate: raise --events")
    start, before = first
    if now - start < 1.0:
        raise BenchFailed("too few events to measure a rate: raise --events")
    return (total - before) / (now - start)


def _tail(state_dir: str) -> str:
    with open(f"{state_dir}.log", errors="replace") as log:
        return "".join(log.readlines()[-20:])
