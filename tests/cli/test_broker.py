"""`segments broker`: the embedded broker in the foreground, its address printed once it answers,
stopped cleanly by Ctrl-C; a port it cannot have is exit 1 with the broker's reason."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

ROOT = Path(__file__).resolve().parents[2]


def start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "stream.cli", "broker", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.timeout(60)
def test_broker_prints_its_address_answers_and_stops_on_ctrl_c():
    proc = start("--port", "0")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("embedded broker at 127.0.0.1:"), line
        bootstrap = line.split()[3]
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
        assert metadata.cluster_id.startswith("embedded-")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None and "embedded broker stopped" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.timeout(60)
def test_a_port_in_use_is_exit_1_with_the_reason():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start("--port", str(port))
        _out, err = proc.communicate(timeout=40)
    assert proc.returncode == 1
    assert f"segments broker: embedded broker exited with status 0 before it answered on 127.0.0.1:{port}" in err
    assert "Address in use" in err, err          # the broker's own log, quoted


@pytest.mark.parametrize("port", ["70000", "-1", "９０"])
def test_a_port_out_of_range_is_exit_2_as_the_console_s(port, capsys):
    """Refused by the argument parser (exit 2, before anything starts), in the console's words."""
    from stream.cli.main import main
    for command in ("broker", "console"):
        with pytest.raises(SystemExit) as exited:
            main([command, "--port", port])
        assert exited.value.code == 2
        assert f"a port is 0 to 65535, got {port!r}" in capsys.readouterr().err
