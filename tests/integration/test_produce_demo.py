"""`produce()` against the session broker, and `run_demo()` and `segments demo` end to end in a
subprocess. (The synthetic stream they send is tested in tests/tools/test_synth.py.)"""
from __future__ import annotations

import io
import itertools
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from rich.console import Console

from stream.model.events import Decoder
from stream.tools.produce import produce
from stream.rules.catalog import load_catalog
from stream.tools.synth import shop_records
from stream.model.time import SECOND, from_datetime


def _read_topic(bootstrap: str, topic: str, partitions: int) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "produce-test", "enable.partition.eof": True,
                         "enable.auto.commit": False, "fetch.wait.max.ms": 20})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, done, deadline = [], set(), time.monotonic() + 20
    try:
        while len(done) < partitions and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    out.append(msg)
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    done.add(msg.partition())
    finally:
        consumer.close()
    assert len(done) == partitions
    return out


def test_produce_sends_exactly_the_number_of_records_asked(kafka_bootstrap, unique_topic):
    printed = io.StringIO()
    code = produce(kafka_bootstrap, unique_topic, rate=None, events=3000, customers=300, seed=3, bad_ratio=0.01,
                   realtime=False, console=Console(file=printed, width=200), partitions=3)
    assert code == 0, printed.getvalue()
    messages = _read_topic(kafka_bootstrap, unique_topic, 3)
    assert len(messages) == 3000
    expected = Counter(r.value for r in itertools.islice(shop_records(300, seed=3, bad_ratio=0.01), 3000))
    assert Counter(m.value() for m in messages) == expected, "the simulated stream, record for record"
    partition_of: dict[bytes, set[int]] = defaultdict(set)
    for m in messages:
        partition_of[m.key()].add(m.partition())
    assert all(len(p) == 1 for p in partition_of.values()), "a customer's records share one partition"
    summary = printed.getvalue()
    assert re.search(r"^sent 3,000 records to \S+ \(\d+ bad, \d+ redelivered\) in [\d.]+ s: [\d,.]+ records/s$",
                     summary.strip()), summary


def test_produce_realtime_paced_and_stopped(kafka_bootstrap, unique_topic):
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    printed = io.StringIO()
    started = time.time()
    code = produce(kafka_bootstrap, unique_topic, rate=200, events=None, customers=100, seed=1, bad_ratio=0.0,
                   realtime=True, console=Console(file=printed, width=200), partitions=2, stop=stop)
    assert code == 0, printed.getvalue()
    messages = _read_topic(kafka_bootstrap, unique_topic, 2)
    assert 150 <= len(messages) <= 230, len(messages)          # ~200 per second, stopped after 1 s
    decode = Decoder().decode
    stamps = [from_datetime(decode(m.value()).occurred_at) / SECOND for m in messages]
    assert started - 1 <= min(stamps) and max(stamps) <= time.time() + 1, "event times are the wall clock"
    assert f"sent {len(messages):,} records" in printed.getvalue()


def test_demo_runs_and_shows_segment_sizes():
    script = ("import sys; from rich.console import Console; from stream.tools.demo import run_demo; "
              "sys.exit(run_demo(Console(), rate=300, customers=1500, duration=14))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    assert "vanish" in output
    size_lines = [line for line in done.stdout.splitlines() if line.startswith("sizes: ")]
    assert size_lines, output
    sizes = dict(pair.split("=") for pair in size_lines[-1][len("sizes: "):].split())
    assert set(sizes) == {s.name for s in load_catalog().segments}
    assert max(int(v) for v in sizes.values()) > 0, output
    assert re.search(r"events [\d,]+ \(\d+/s\)\s+changes [\d,]+ \(\d+/s\)", done.stdout), output
    assert "the embedded broker is stopped" in done.stdout



_DEMO_CLI = "import sys; from stream.cli.main import main; sys.exit(main())"


def _piped_demo(tmp_path: Path) -> subprocess.Popen:
    """`segments demo` with stdout and stderr pipes (not a terminal), its temporary directory under
    tmp_path, once it runs (its first periodic line is out)."""
    proc = subprocess.Popen([sys.executable, "-c", _DEMO_CLI, "demo", "--duration", "120", "--rate", "300"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    deadline = time.monotonic() + 60
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stdout.readline() if ready else b""
        if line.startswith(b"["):
            return proc
        if not line or time.monotonic() >= deadline:
            proc.kill()
            raise AssertionError(f"the demo did not start: {proc.communicate()}")


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGINT, reader gone", "reader gone"])
def test_piped_demo_stops_cleanly(tmp_path, how):
    """Ctrl-C under a pipe (`segments demo | cat`: the reader may die with it), SIGTERM, or the
    reader closing alone (`| head`): a clean stop, rc 0 as on a terminal, the summary (on stderr
    when stdout is gone), nothing left in the temporary directory."""
    proc = _piped_demo(tmp_path)
    try:
        if "reader gone" in how:
            proc.stdout.close()
        if how.startswith("SIG"):
            proc.send_signal(getattr(signal, how.split(",")[0]))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = ((out or b"") + err).decode(errors="replace")
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert re.search(r"stopped after [\d.]+ s \(interrupted\): [\d,]+ events applied", text), text
    assert "sizes: " in text and "the embedded broker is stopped" in text, text
    assert list(tmp_path.glob("segments-demo-*")) == [], "the demo left its temporary directory"
