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
import time

from stream.broker import EmbeddedBroker, free_port

from . import conformance
from .test_metrics import get, paid, series
from .test_reliability import PARTITIONS, topic_config, workers  # noqa: F401 (a fixture)

REPORT_EVERY = 30.0         # stream.clients.REPORT_EVERY


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
        from confluent_kafka.admin import AdminClient
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
