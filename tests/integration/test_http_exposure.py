"""`segments worker` run as a user runs it, both runtimes, on the session broker: the HTTP address it
binds is the one configured and the one it logs, the token file's secret appears nowhere in its
log, personal data needs the token (the Faust runtime serves only /definitions of it), the probes
stay open, and a SIGTERM stops it promptly with a client connection still open."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stream.kafka.embedded_broker import free_port

from .workers import PARTITIONS, names

TOKEN = "exposure-test-token-0123456789abcdef"
HOST = "127.0.0.2"        # a loopback address other than the default's, to tell the bind apart


def get(port: int, path: str, token: str | None = None, host: str = HOST) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://{host}:{port}{path}",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def start_worker(bootstrap: str, prefix: str, tmp_path: Path, *options: str) -> tuple[subprocess.Popen, int, Path]:
    s = names(prefix)
    port, log = free_port(), tmp_path / "worker.log"
    (tmp_path / "token").write_text(TOKEN + "\n")
    args = [sys.executable, "-m", "stream.cli", "worker", "--bootstrap-servers", bootstrap,
            "--input-topics", ",".join(s.input_topics), "--changes-topic", s.changes_topic,
            "--membership-topic", s.membership_topic, "--dead-letter-topic", s.dead_letter_topic,
            "--group-id", s.group_id, "--definitions-topic", f"{prefix}-definitions",
            "--state-dir", str(tmp_path / "state"), "--partitions", str(PARTITIONS),
            "--session-timeout-ms", "6000", "--max-poll-interval-ms", "10000",
            "--metrics-port", str(port), "--http-host", HOST, "--http-token-file", str(tmp_path / "token"), *options]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTS_")}
    with open(log, "wb") as err:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if get(port, "/readyz")[0] == 200:
                return proc, port, log
        except OSError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def stop(proc: subprocess.Popen, log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("runtime", ["native", "faust"])
def test_worker_binds_and_logs_the_configured_address_and_never_logs_the_token(kafka_bootstrap, unique_topic,
                                                                               tmp_path, runtime):
    options = ["--runtime", "faust", "--guarantee", "at_least_once"] if runtime == "faust" else []
    proc, port, log = start_worker(kafka_bootstrap, unique_topic, tmp_path, *options)
    held = socket.create_connection((HOST, port), timeout=5)
    held.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")          # half-sent, and still open at SIGTERM
    try:
        text = log.read_text()
        assert f"http: http://{HOST}:{port} " in text, text
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        for path in ("/metrics", "/healthz", "/readyz", "/"):
            assert get(port, path)[0] == 200, path
        index = get(port, "/")[1].decode()
        if runtime == "native":
            assert "personal-data routes: on" in index and "GET /customers/<id>: " in index
            for path in ("/customers/c1", "/segments/loyal/members", "/definitions"):
                assert get(port, path)[0] == 401 and get(port, path, "wrong-" + TOKEN)[0] == 401, path
            assert get(port, "/definitions", TOKEN)[0] == 200
            assert get(port, "/customers/c1", TOKEN)[0] == 404      # no such customer: asked with the token
        else:
            # Faust keeps its state in a Faust table, which the members and customer routes do not
            # read; it serves the definitions it follows, behind the token like the native worker.
            assert "personal-data routes: on" in index and "GET /definitions: " in index
            assert get(port, "/definitions")[0] == 401 and get(port, "/definitions", "wrong-" + TOKEN)[0] == 401
            assert get(port, "/definitions", TOKEN)[0] == 200
            for path in ("/customers/c1", "/segments/loyal/members"):
                assert get(port, path, TOKEN)[0] == 404, path
        started = time.monotonic()
        stop(proc, log)
        assert time.monotonic() - started < 20
    finally:
        held.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert TOKEN not in text and "Traceback" not in text, text
