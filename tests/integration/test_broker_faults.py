"""Broker faults, as real `segments worker` processes see them on a real embedded broker started on a
port of the test's choosing: no broker at start, a broker that goes away, and one that comes back
wiped (Tansu keeps everything in memory, so a restart on the same port is a broker that lost every
topic, offset and transaction). The worker must say so plainly and at a bounded rate, answer 503
with the reason on /readyz, show segments_broker_up 0, never die of it, and process events again
once the broker is back (after a wipe: it stops with exit 3 and the reason, and a restarted worker
creates its topics again).
"""
from __future__ import annotations

import re
import signal
import time

import pytest
from confluent_kafka.admin import AdminClient

from stream.kafka.embedded_broker import EmbeddedBroker, free_port
from stream.kafka.topic_admin import ensure_topics, topic_problems

from . import conformance
from .conformance import paid
from .workers import PARTITIONS, FaustProcess, get, names, series, topic_config

REPORT_EVERY = 30.0         # stream.kafka.clients.REPORT_EVERY


def _start(workers, name, config, metrics_port):
    worker = workers(name, config, instance_id=name)
    worker.args[worker.args.index("--metrics-port") + 1] = str(metrics_port)
    return worker.start()


def _wait(predicate, timeout: float, what: str, worker) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout}s:\n{worker.tail(40)}"
        time.sleep(0.2)


def _get(url: str) -> tuple[int, str]:
    try:
        return get(url)
    except OSError:
        return 0, ""          # the worker exiting while it answers


def _ready(base: str) -> bool:
    return _get(base + "/readyz")[0] == 200


def _broker_up(base: str) -> float | None:
    return series(get(base + "/metrics")[1], "segments_broker_up").get("")


def _changes(bootstrap: str, topic: str) -> int:
    return len(conformance.read_messages(bootstrap, topic, PARTITIONS, timeout=15))


def test_no_broker_at_start_is_waited_out_and_said_once(unique_topic, tmp_path, workers):
    port, metrics_port = free_port(), free_port()
    config = topic_config(f"127.0.0.1:{port}", unique_topic)
    base = f"http://127.0.0.1:{metrics_port}"
    worker = _start(workers, "w", config, metrics_port)
    _wait(lambda: b"unreachable" in worker.log(), 20, "no 'unreachable' line", worker)
    status, body = get(base + "/readyz")
    assert status == 503 and "unreachable" in body, (status, body)
    assert _broker_up(base) == 0
    time.sleep(12)          # more reconnect attempts than one per REPORT_EVERY
    assert worker.alive, f"the worker died while no broker answered:\n{worker.tail()}"
    log = worker.log().decode(errors="replace")
    # Before: ~580 librdkafka lines in 30 s, then a KafkaException traceback.
    assert len(re.findall(r"unreachable", log)) == 1, log
    assert len(log.splitlines()) <= 6, log
    assert "Traceback" not in log

    with EmbeddedBroker(port=port, log_dir=tmp_path / "broker"):
        _wait(lambda: _ready(base), 60, "not ready after the broker came up", worker)
        assert _broker_up(base) == 1
        assert b"answer again" in worker.log()
        conformance.produce(config.bootstrap_servers, config.input_topics[0],
                            [paid("a", 1, "2025-01-01T00:00:00Z"), paid("a", 2, "2025-01-02T00:00:00Z")])
        _wait(lambda: _changes(config.bootstrap_servers, config.changes_topic) > 0, 30,
              "no change published", worker)
        assert worker.terminate() == 0


def test_broker_lost_then_back_wiped_stops_with_the_reason_and_a_restart_recovers(unique_topic, tmp_path, workers):
    port, metrics_port = free_port(), free_port()
    config = topic_config(f"127.0.0.1:{port}", unique_topic)
    base = f"http://127.0.0.1:{metrics_port}"
    broker = EmbeddedBroker(port=port, log_dir=tmp_path / "broker-1").start()
    try:
        worker = _start(workers, "w", config, metrics_port)
        _wait(lambda: _ready(base), 40, "not ready", worker)
        conformance.produce(config.bootstrap_servers, config.input_topics[0], [paid("a", 1, "2025-01-01T00:00:00Z")])
        _wait(lambda: _changes(config.bootstrap_servers, config.changes_topic) > 0, 30, "no change", worker)
    finally:
        broker.stop()

    # Lost mid-run: said once, not ready, metric 0, the worker stays up.
    lost = time.monotonic()
    _wait(lambda: b"unreachable" in worker.log(), 30, "no 'unreachable' line", worker)
    status, body = get(base + "/readyz")
    assert status == 503 and "unreachable" in body, (status, body)
    assert _broker_up(base) == 0
    time.sleep(max(0.0, lost + 20 - time.monotonic()))      # down 20 s: many reconnects, probes, batches
    assert worker.alive, worker.tail()
    assert len(re.findall(rb"unreachable", worker.log())) == 1, worker.tail(40)

    # Back, wiped: the topics are missing. Before: /readyz 200 with 0 partitions, outputs
    # auto-created with the broker's defaults, new events unprocessed for minutes.
    with EmbeddedBroker(port=port, log_dir=tmp_path / "broker-2") as wiped:
        deadline = time.monotonic() + 60
        while worker.alive:
            assert time.monotonic() < deadline, f"the worker did not notice the lost topics:\n{worker.tail(40)}"
            status, body = _get(base + "/readyz")
            assert status in (0, 503), f"ready on a wiped broker: {body}"
            time.sleep(0.2)
        assert worker.proc.returncode == 3, worker.tail()
        assert b"does not exist" in worker.log() and b"wiped" in worker.log(), worker.tail()
        left = AdminClient({"bootstrap.servers": wiped.bootstrap}).list_topics(timeout=10).topics
        # No client of the worker created a topic with the broker's defaults meanwhile.
        assert not {config.changes_topic, config.membership_topic} & set(left), sorted(left)

        # Restarted (as Kubernetes does): topics created again, events processed.
        worker.start()
        _wait(lambda: _ready(base), 60, "not ready after the restart", worker)
        conformance.produce(config.bootstrap_servers, config.input_topics[0], [paid("b", 1, "2025-01-05T00:00:00Z")])
        _wait(lambda: _changes(config.bootstrap_servers, config.changes_topic) > 0, 30,
              "no change after the restart", worker)
        assert worker.terminate() == 0


def test_topic_problems_name_what_is_wrong(kafka_bootstrap, kafka_flavour, unique_topic):
    compact = {"cleanup.policy": "compact"}
    ok, deleting, bare, two, missing = (f"{unique_topic}-{n}" for n in ("ok", "delete", "bare", "two", "missing"))
    ensure_topics(kafka_bootstrap, [(ok, 3, compact), (deleting, 3, {"cleanup.policy": "delete"}), (bare, 3, {}),
                                    (two, 2, compact)])
    specs = [(ok, 3, compact), (deleting, 3, compact), (bare, 3, compact), (two, 3, compact), (missing, 3, {})]
    problems = topic_problems(AdminClient({"bootstrap.servers": kafka_bootstrap}), specs, {ok: 3, two: 3})
    expected = [f"topic {deleting!r} is not compacted (cleanup.policy=delete)",
                f"topic {two!r} has 2 partitions, the worker needs 3", f"topic {missing!r} does not exist"]
    if kafka_flavour == "external":
        expected.insert(1, f"topic {bare!r} is not compacted (cleanup.policy=delete)")
    # Tansu's DescribeConfigs answers only the configs given at creation: a topic created without
    # cleanup.policy (as a producer's auto-creation makes it) shows none, and cannot be told from a
    # compacted one. Pinned so that a Tansu that answers the effective configs fails this loudly.
    assert sorted(problems) == sorted(expected), problems


def test_input_topic_with_another_partition_count_stops_the_start_with_the_reason(
        kafka_bootstrap, unique_topic, tmp_path, workers):
    config = topic_config(kafka_bootstrap, unique_topic)
    ensure_topics(kafka_bootstrap, [(config.input_topics[0], PARTITIONS + 1, {})])
    worker = _start(workers, "w", config, free_port())
    assert worker.proc.wait(40) == 3, worker.tail()
    assert f"has {PARTITIONS + 1} partitions, the worker needs {PARTITIONS}".encode() in worker.log(), worker.tail()


def test_faust_runtime_says_the_same_while_no_broker_answers(unique_topic, tmp_path):
    port = free_port()
    worker = FaustProcess(f"127.0.0.1:{port}", names(unique_topic), tmp_path / "state", tmp_path / "faust.log")
    try:
        base = f"http://127.0.0.1:{worker.metrics_port}"
        deadline = time.monotonic() + 30
        while "unreachable" not in _get(base + "/readyz")[1]:
            assert worker.proc.poll() is None, worker.tail()
            assert time.monotonic() < deadline, f"no 'unreachable' on /readyz:\n{worker.tail()}"
            time.sleep(0.2)
        assert _get(base + "/readyz")[0] == 503 and _broker_up(base) == 0
        with EmbeddedBroker(port=port, log_dir=tmp_path / "broker"):
            worker.wait_ready(timeout=60)
            assert _broker_up(base) == 1
            worker.terminate()
    finally:
        worker.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_faust_runtime_stops_cleanly_while_no_broker_answers(unique_topic, tmp_path, signum):
    """Ctrl-C, or a stop from Kubernetes or compose, while the start-up waits for the brokers: the
    native worker stops at once with exit 0; so must the Faust runtime (before: a KeyboardInterrupt
    traceback, or killed by SIGTERM), whose own handlers come only once Faust runs."""
    worker = FaustProcess(f"127.0.0.1:{free_port()}", names(unique_topic), tmp_path / "state", tmp_path / "faust.log")
    try:
        base = f"http://127.0.0.1:{worker.metrics_port}"
        deadline = time.monotonic() + 30
        while "unreachable" not in _get(base + "/readyz")[1]:
            assert worker.proc.poll() is None and time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        worker.proc.send_signal(signum)
        assert worker.proc.wait(timeout=20) == 0, worker.tail()
        assert "Traceback" not in worker.tail(200), worker.tail()
    finally:
        worker.close()
