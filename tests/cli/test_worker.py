"""`segments worker` (stream.cli.worker) refusing to start: an unusable token file is exit 2 before
anything starts, a metrics port it cannot bind exit 1 naming the port, on both runtimes (the
runtimes raise, the command says why)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import LOOPBACK


def test_segments_worker_refuses_an_unusable_token_file_before_starting_anything(tmp_path):
    (tmp_path / "token").write_text("too-short")
    for path in (tmp_path / "absent", tmp_path / "token"):
        done = subprocess.run([sys.executable, "-m", "stream.cli", "worker", "--http-token-file", str(path),
                               "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and f"http_token_file {path}" in done.stderr, done.stderr
        assert "too-short" not in done.stderr and "embedded broker" not in done.stderr


@pytest.mark.parametrize("runtime", ["native", "faust"])
def test_segments_worker_exits_1_naming_a_metrics_port_it_cannot_bind(serving, tmp_path, runtime):
    """The runtimes raise; the command says why and exits 1 (no SystemExit from inside a runtime)."""
    taken = serving()
    done = subprocess.run([sys.executable, "-m", "stream.cli", "worker", "--runtime", runtime,
                           "--guarantee", "at_least_once", "--bootstrap-servers", "127.0.0.1:1",
                           "--metrics-port", str(taken.port), "--http-host", LOOPBACK,
                           "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert f"segments worker: cannot serve HTTP on 127.0.0.1 port {taken.port}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
