"""The worker's HTTP endpoints, and a real Prometheus server scraping it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from stream.kafka.embedded_broker import free_port
from stream.kafka.topic_admin import ensure_topics
from stream.rules.catalog import load_catalog
from stream.worker.loop import Worker

from . import conformance
from .conformance import paid
from .workers import Running, get, series, settings


def test_endpoints_and_members_gauge_survive_a_restart(kafka_bootstrap, unique_topic, tmp_path):
    port = free_port()
    config = settings(kafka_bootstrap, unique_topic, tmp_path, metrics_port=port)
    ensure_topics(kafka_bootstrap, Worker(config, load_catalog()).topics())
    lines = [paid("a", 1, "2025-01-01T00:00:00Z"), paid("b", 1, "2025-01-02T00:00:00Z"),
             paid("b", 2, "2025-01-03T00:00:00Z"), b"not json"]
    conformance.produce(kafka_bootstrap, config.input_topics[0], lines)
    base = f"http://127.0.0.1:{port}"
    worker = Worker(config, load_catalog())
    with Running(worker) as running:
        running.wait_for(3)
        assert get(base + "/healthz")[0] == 200
        assert get(base + "/readyz")[0] == 200
        assert get(base + "/nope")[0] == 404
        status, text = get(base + "/metrics")
        assert status == 200
        members = series(text, "segments_members")
        assert members['{segment="new-customer"}'] == 1 and members['{segment="repeat-buyer"}'] == 1
        events = series(text, "segments_events_total")
        topic = config.input_topics[0]
        assert events[f'{{outcome="applied",topic="{topic}",type="order_paid"}}'] == 3
        assert events[f'{{outcome="dead_letter",topic="{topic}",type="invalid"}}'] == 1
        assert series(text, "segments_ready")[""] == 1
        if shutil.which("promtool"):
            # Prometheus' own linter: names, units, suffixes, help texts.
            lint = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True)
            assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
    # The gauge is derived from state: a new worker on the same store reports the same members
    # before any event arrives (the process-wide registry is reset by the restore's own count).
    worker = Worker(config, load_catalog())
    with Running(worker):
        deadline = time.monotonic() + 30
        while (ready := get(base + "/readyz"))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready[0] == 200, f"the restarted worker was not ready within 30 s: {ready}"
        members = series(get(base + "/metrics")[1], "segments_members")
        assert members['{segment="new-customer"}'] == 1 and members['{segment="repeat-buyer"}'] == 1


@pytest.mark.skipif(shutil.which("prometheus") is None and not os.environ.get("CI"),
                    reason="no prometheus binary (scripts/install-test-tools.sh installs Debian's)")
def test_prometheus_scrapes_the_worker(kafka_bootstrap, unique_topic, tmp_path):
    """A real Prometheus server on loopback scrapes a running worker; a segment-size series is
    read back through Prometheus' HTTP API."""
    metrics_port, prom_port = free_port(), free_port()
    config = settings(kafka_bootstrap, unique_topic, tmp_path / "state", metrics_port=metrics_port)
    ensure_topics(kafka_bootstrap, Worker(config, load_catalog()).topics())
    conformance.produce(kafka_bootstrap, config.input_topics[0],
                        [paid(f"c{n}", 1, "2025-01-01T00:00:00Z") for n in range(5)])
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: segments\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n")
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Running(Worker(config, load_catalog())) as running:
            running.wait_for(5)
            query = urllib.parse.quote('segments_members{segment="new-customer"}')
            deadline, value = time.monotonic() + 30, None
            while time.monotonic() < deadline:
                status, body = get(f"http://127.0.0.1:{prom_port}/api/v1/query?query={query}")
                if status == 200:
                    result = json.loads(body)["data"]["result"]
                    if result:
                        value = float(result[0]["value"][1])
                        if value == 5:
                            break
                time.sleep(0.5)
            assert value == 5, f"Prometheus did not report the segment size (last: {value})"
            assert result[0]["metric"]["job"] == "segments"
    finally:
        prometheus.terminate()
        prometheus.wait(10)
