"""`produce()` against the session broker, and `segments demo` end to end in a subprocess. (The
synthetic stream they send is tested in tests/tools/test_synth.py.)"""
from __future__ import annotations

import io
import itertools
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from rich.console import Console

from stream.model.decoding import Decoder
from stream.tools.produce import produce
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


START = 1_900_000_000 * SECOND
SPEED = 10 * 86400                                      # ten simulated days a second


def _played(bootstrap: str, topic: str, seconds: float, rate: float | None = None) -> tuple[list[int], float]:
    """produce at SPEED from START for `seconds`: the event times sent, and how long it ran."""
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    printed = io.StringIO()
    started = time.monotonic()
    code = produce(bootstrap, topic, events=None, rate=rate, customers=200, seed=2, bad_ratio=0.0,
                   realtime=False, speed=SPEED, start=START, console=Console(file=printed, width=200),
                   partitions=2, stop=stop)
    elapsed = time.monotonic() - started
    assert code == 0, printed.getvalue()
    decode = Decoder().decode
    return [from_datetime(decode(m.value()).occurred_at) for m in _read_topic(bootstrap, topic, 2)], elapsed


def test_produce_at_a_speed_plays_simulated_time_from_its_start(kafka_bootstrap, unique_topic):
    stamps, elapsed = _played(kafka_bootstrap, unique_topic, 1.0)
    assert stamps and START <= min(stamps), "simulated time begins at start"
    assert START + 5 * 86400 * SECOND < max(stamps) <= START + elapsed * SPEED * SECOND, \
        "days of simulated time in a second, never ahead of the speed"
    printed = io.StringIO()
    refused = produce(kafka_bootstrap, unique_topic, events=1, realtime=True, speed=SPEED,
                      console=Console(file=printed, width=200))
    assert refused == 2 and "needs realtime off" in printed.getvalue()


def test_a_rate_with_a_speed_is_a_ceiling_that_slows_simulated_time(kafka_bootstrap, unique_topic):
    """`--rate` beside a speed (the demo's): never more records a second than it, the simulated
    clock falling behind the speed instead."""
    rate = 40.0
    stamps, elapsed = _played(kafka_bootstrap, unique_topic, 1.5, rate)
    assert 0 < len(stamps) <= rate * elapsed + 1, "at most `rate` records a second"
    assert max(stamps) - START < elapsed * SPEED * SECOND / 2, "the simulated clock slowed below the speed"


def test_demo_in_simulated_time_moves_customers_by_time_and_its_commands_work(tmp_path):
    """Piped (with FORCE_COLOR and TTY_COMPATIBLE set: still no terminal control codes), fast
    simulated time: the commands the demo prints, run as printed while it runs, answer about a real
    customer; time moves customers (carts expire, buyers go at risk); it exits 0 at --duration."""
    proc = subprocess.Popen([sys.executable, "-c", _DEMO_CLI, "demo", "--speed", "8d", "--customers", "150",
                             "--duration", "24"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path), "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})
    try:
        lines, intro = iter(proc.stdout.readline, ""), []
        for line in lines:
            if line.startswith("while the demo runs"):
                customer = line.rstrip().rstrip(":").rsplit(" ", 1)[1]
                break
            intro.append(line.rstrip())
        else:
            raise AssertionError(f"no commands printed: {proc.communicate()}")
        state_dir = next(line.split()[-1] for line in intro if line.startswith("state dir: "))
        assert "group id:   segments-demo" in intro and any(line.startswith("bootstrap:  127.0.0.1:") for line in intro)
        routes = [line.strip() for line in intro if line.startswith("  GET /")]
        assert {"GET /metrics: Prometheus metrics", "GET /healthz: 200 while the processing loop runs"} <= set(routes)
        assert any(r.startswith("GET /customers/<id>:") and r.endswith("[token]") for r in routes), routes
        commands = [next(lines).strip() for _ in range(5)]
        explain, members, curl_customer, curl_members, curl_metrics = commands
        assert explain.endswith(f" explain {customer} --state-dir {state_dir} --group-id segments-demo"), explain
        token_file = Path(re.search(r"\$\(cat (\S+)\)", curl_customer).group(1))
        assert token_file.stat().st_mode & 0o777 == 0o600, "the bearer token: this user's alone"
        assert " members repeat-buyer --state-dir " in members, members
        for _ in range(20):          # the store may trail the change topic by a commit
            explained = subprocess.run(shlex.split(explain), capture_output=True, text=True, timeout=30)
            if explained.returncode == 0:
                break
            time.sleep(0.5)
        assert explained.returncode == 0, explained.stderr
        assert customer in explained.stdout and "repeat-buyer" in explained.stdout, explained.stdout
        listed = subprocess.run(shlex.split(members), capture_output=True, text=True, timeout=30)
        assert listed.returncode == 0 and listed.stdout.startswith("customer_id,"), listed
        answer = subprocess.run(["bash", "-c", curl_customer], capture_output=True, text=True, timeout=30)
        assert json.loads(answer.stdout)["customer_id"] == customer, answer
        csv = subprocess.run(["bash", "-c", curl_members], capture_output=True, text=True, timeout=30)
        assert csv.stdout.startswith("customer_id,"), csv
        metrics = subprocess.run(["bash", "-c", curl_metrics], capture_output=True, text=True, timeout=30)
        assert "segments_" in metrics.stdout, metrics
        url = curl_customer.rsplit(" ", 1)[1]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=10)
        assert refused.value.code == 401, "personal data only with the token"
        rest, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    out = "".join(commands) + rest
    assert "\x1b" not in out + err and "\r" not in out, "no terminal control codes in a pipe"
    assert "Traceback" not in out + err, err
    moved = re.search(r"^changes by cause: event [\d,]+, time [\d,]+; moved by time: (.*)$", rest, re.M)
    assert moved, rest
    by_time = dict(re.findall(r"([\w-]+) ([+-][\d,]+(?: -[\d,]+)?)", moved.group(1)))
    assert by_time.get("cart-abandoner", "").startswith("-"), ("carts abandoned expire by time", moved.group(1))
    assert by_time.get("at-risk", "").startswith("+"), ("buyers go at risk by time", moved.group(1))
    assert re.search(r"^\[ +[\d.]+s\] stream time \S+ \S+ \(day \d+\)  events [\d,]+ \(\d+/s\)  changes", rest, re.M)
    assert "sizes over the run:" in rest and "the embedded broker is stopped" in rest
    assert list(tmp_path.glob("segments-demo-*")) == [], "the demo left its temporary directory"


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
