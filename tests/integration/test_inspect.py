"""Who is in a segment, asked of a running worker on a real broker: its HTTP routes and the
`segments members` / `explain` commands (another process, secondary RocksDB instances) must agree
with the membership topic the worker published."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request

import msgspec

from stream.kafka.embedded_broker import free_port
from stream.kafka.topic_admin import ensure_topics
from stream.rules.catalog import load_catalog
from stream.tools.synth import shopper_events
from stream.worker.loop import Worker

from . import conformance
from .workers import PARTITIONS, Running, settings


TOKEN = "inspect-test-token-0123456789abcdef"


def _get(url: str, token: str | None = TOKEN) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def _published(bootstrap: str, topic: str) -> dict[str, dict[str, str]]:
    """customer -> {segment: member since}, from the last record per key (offset order)."""
    latest: dict[str, dict | None] = {}
    for msg in conformance.read_messages(bootstrap, topic, PARTITIONS):
        latest[msg.key().decode()] = None if msg.value() is None else msgspec.json.decode(msg.value())
    return {cid: record["segments"] for cid, record in latest.items() if record is not None}


def test_http_and_commands_agree_with_the_membership_topic(kafka_bootstrap, unique_topic, tmp_path):
    lines = list(shopper_events(300, 4000, seed=5))
    port = free_port()
    (tmp_path / "http-token").write_text(TOKEN + "\n")
    s = settings(kafka_bootstrap, unique_topic, tmp_path / "state", metrics_port=port, http_host="127.0.0.1",
                 http_token_file=tmp_path / "http-token")
    catalog = load_catalog()
    worker = Worker(s, catalog)
    ensure_topics(kafka_bootstrap, worker.topics())
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines)
    base = f"http://127.0.0.1:{port}"
    flags = ["--state-dir", str(s.state_dir), "--group-id", s.group_id]
    with Running(worker) as running:
        running.wait_for(len(lines))
        published = _published(kafka_bootstrap, s.membership_topic)
        assert sum(map(len, published.values())) > 100
        for segment in catalog.by_name:
            expected = {cid: segs[segment] for cid, segs in published.items() if segment in segs}
            status, kind, body = _get(f"{base}/segments/{segment}/members")
            assert (status, kind) == (200, "application/x-ndjson")
            rows = [json.loads(line) for line in body.decode().splitlines()]
            assert {r["customer_id"]: r["member_since"] for r in rows} == expected, segment
            assert [r["customer_id"] for r in rows] == sorted(expected, key=str.encode)

            status, kind, body = _get(f"{base}/segments/{segment}/members?format=csv")
            assert (status, kind) == (200, "text/csv; charset=utf-8")
            table = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
            assert {r["customer_id"]: r["member_since"] for r in table} == expected, segment

            done = subprocess.run([sys.executable, "-m", "stream.cli", "members", segment, "--format", "jsonl",
                                   *flags], capture_output=True, timeout=60)
            assert done.returncode == 0, done.stderr
            assert [json.loads(line) for line in done.stdout.decode().splitlines()] == rows

        member = next(cid for cid, segs in published.items() if segs)
        status, _, body = _get(f"{base}/customers/{member}")
        answer = json.loads(body)
        assert status == 200 and answer["segments"] == published[member]
        assert all(c["holds"] == c["member"] for c in answer["conditions"])
        done = subprocess.run([sys.executable, "-m", "stream.cli", "explain", member, "--format", "json", *flags],
                              capture_output=True, timeout=60)
        assert done.returncode == 0 and json.loads(done.stdout) == answer

        status, kind, body = _get(f"{base}/customers/no-such-customer")
        assert (status, kind) == (404, "application/json") and "no-such-customer" in json.loads(body)["error"]
        status, kind, body = _get(f"{base}/segments/no-such-segment/members")
        assert (status, kind) == (404, "application/json") and "unknown segment" in json.loads(body)["error"]
        status, _, body = _get(f"{base}/segments/loyal/members?format=xml")
        assert status == 400 and "format" in json.loads(body)["error"]
        assert _get(f"{base}/metrics")[0] == 200 and _get(f"{base}/nothing")[0] == 404

        # Every personal-data route of the real worker: nothing without this worker's token.
        for path in (f"/customers/{member}", "/segments/loyal/members", "/segments/loyal/members?format=csv",
                     "/definitions", "/customers/no-such-customer", "/segments/no-such-segment/members"):
            for token in (None, "wrong-token-0123456789abcdef", TOKEN[:-1]):
                status, kind, body = _get(base + path, token)
                assert (status, kind) == (401, "application/json"), (path, token)
                assert member.encode() not in body and b"customer_id" not in body
            assert _get(base + path)[0] in (200, 404), path
        for path in ("/metrics", "/healthz", "/readyz"):
            assert _get(base + path, None)[0] == 200, path


def test_personal_routes_are_off_by_default_on_a_real_worker(kafka_bootstrap, unique_topic, tmp_path):
    """No http_token_file: the routes answer 403 saying how to enable them, even to a token; the
    probes and /metrics answer; the worker logs the address it really bound."""
    port = free_port()
    s = settings(kafka_bootstrap, unique_topic, tmp_path / "state", metrics_port=port, http_host="127.0.0.1")
    worker = Worker(s, load_catalog())
    ensure_topics(kafka_bootstrap, worker.topics())
    lines = list(shopper_events(20, 200, seed=3))
    conformance.produce(kafka_bootstrap, s.input_topics[0], lines)
    base = f"http://127.0.0.1:{port}"
    with Running(worker) as running:
        running.wait_for(len(lines))
        for path in ("/customers/c1", "/segments/loyal/members", "/definitions"):
            status, kind, body = _get(base + path)
            assert (status, kind) == (403, "application/json")
            assert "http_token_file" in json.loads(body)["error"]
        for path in ("/metrics", "/healthz", "/readyz"):
            assert _get(base + path, None)[0] == 200, path
