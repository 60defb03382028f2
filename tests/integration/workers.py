"""The workers the integration tests run, and what they read from a worker's HTTP endpoints.

A native worker in a thread of the test (`settings`, `Running`), or `segments worker` run as a user
runs it, a child process: native (`WorkerProcess`) or Faust (`FaustProcess`). The fixtures that
make child processes and kill what is left of them (`workers`, `start`) are in conftest.py.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from stream.kafka.embedded_broker import free_port
from stream.kafka.topic_admin import ensure_topics
from stream.rules.catalog import load_catalog
from stream.runtime.settings import WorkerConfig
from stream.worker.loop import Worker
from tests.helpers import segments_cli

from . import conformance

PARTITIONS = 3
SESSION_TIMEOUT_MS = 6000

_READY = re.compile(rb"partition (\d+) ready")


# ---- the native worker in a thread -------------------------------------------------------------------

def settings(bootstrap: str, prefix: str, state_dir: Path, **overrides) -> WorkerConfig:
    """A worker config with the names of one test (prefixed), no idle clock, no HTTP, a short session."""
    return WorkerConfig(**{
        "bootstrap_servers": bootstrap, "input_topics": (f"{prefix}-events",), "changes_topic": f"{prefix}-changes",
        "membership_topic": f"{prefix}-membership", "dead_letter_topic": f"{prefix}-dead",
        "group_id": f"{prefix}-group", "instance_id": "0", "state_dir": state_dir, "partitions": PARTITIONS,
        "idle_advance_ms": None, "session_timeout_ms": 6000, "max_poll_interval_ms": 10000, "metrics_port": None,
        **overrides})


class Running:
    """A worker in a thread until every expected input record is consumed."""

    def __init__(self, worker: Worker):
        self.worker, self.consumed = worker, 0
        worker.on_batch = self._count
        self.thread = threading.Thread(target=worker.run, daemon=True)

    def _count(self, events: int, changes: int) -> None:
        self.consumed += events

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def wait_for(self, events: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.consumed < events and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.1)
        assert self.consumed >= events, f"consumed {self.consumed} of {events}"

    def __exit__(self, *exc) -> None:
        self.worker.stop()
        self.thread.join(30)


# ---- `segments worker` child processes ---------------------------------------------------------------

def topic_config(bootstrap: str, prefix: str) -> WorkerConfig:
    """The names the workers of one test use; their topics are created before any input flows."""
    return WorkerConfig(bootstrap_servers=bootstrap, input_topics=(f"{prefix}-events",),
                        changes_topic=f"{prefix}-changes", membership_topic=f"{prefix}-membership",
                        dead_letter_topic=f"{prefix}-dead", group_id=f"{prefix}-group", instance_id="-",
                        partitions=PARTITIONS)


def create_topics(config: WorkerConfig) -> None:
    ensure_topics(config.bootstrap_servers, Worker(config, load_catalog()).topics())


def names(prefix: str) -> WorkerConfig:
    """The topic and group names of one test (the rest of this config is not used)."""
    return WorkerConfig(input_topics=(f"{prefix}-events",), changes_topic=f"{prefix}-changes",
                        membership_topic=f"{prefix}-membership", dead_letter_topic=f"{prefix}-dead",
                        group_id=f"{prefix}-group", partitions=PARTITIONS)


def child_env() -> dict[str, str]:
    """Settings come from the flags only: no SEGMENTS_* variable of the caller's may change them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTS_")}


class WorkerProcess:
    """One `segments worker` child process. Each start() is a new incarnation with its own stderr
    log (the worker's logging and librdkafka's both write there)."""

    def __init__(self, name: str, config: WorkerConfig, state_dir: Path, log_dir: Path, *,
                 instance_id: str, idle_advance_ms: int = 0, segments: Path | None = None):
        self.name, self.state_dir, self.log_dir = name, state_dir, log_dir
        self.args = [
            *segments_cli(), "worker",
            "--bootstrap-servers", config.bootstrap_servers,
            "--input-topics", ",".join(config.input_topics),
            "--changes-topic", config.changes_topic,
            "--membership-topic", config.membership_topic,
            "--dead-letter-topic", config.dead_letter_topic,
            "--group-id", config.group_id,
            "--instance-id", instance_id,          # fixed: a restart fences the previous incarnation
            "--state-dir", str(state_dir),
            "--partitions", str(PARTITIONS),
            "--session-timeout-ms", str(SESSION_TIMEOUT_MS), "--max-poll-interval-ms", "10000",
            "--idle-advance-ms", str(idle_advance_ms),
            "--metrics-port", "0",
            "--commit-interval-ms", "50", "--batch-size", "200",   # many small transactions
        ]
        if segments is not None:
            self.args += ["--segments", str(segments)]
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []

    def start(self) -> WorkerProcess:
        assert not self.alive, f"{self.name} is already running"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{self.name}-{len(self.logs)}.stderr"
        self.logs.append(log)
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, env={**child_env(), "PYTHONUNBUFFERED": "1"},
                                         cwd=self.log_dir)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> bytes:
        """The stderr of the current incarnation."""
        return self.logs[-1].read_bytes() if self.logs else b""

    def all_logs(self) -> str:
        return "".join(f"--- {path.name}\n" + path.read_text(errors="replace") for path in self.logs)

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.log().decode(errors="replace").splitlines()[-lines:])

    def ready_count(self) -> int:
        """Partitions this incarnation took over so far (each assignment logs one line each)."""
        return len(_READY.findall(self.log()))

    def ready_partitions(self, since: int = 0) -> set[int]:
        """The partitions of the ready lines after the first `since` ones of this incarnation."""
        return {int(n) for n in _READY.findall(self.log())[since:]}

    def restored(self) -> list[list[int]]:
        """Per incarnation, the changelog records each partition assignment restored."""
        return [[int(n) for n in re.findall(rb"partition \d+ ready: (\d+) changelog records", path.read_bytes())]
                for path in self.logs]

    def wait_owns(self, partitions: set[int], since: int, timeout: float = 40) -> None:
        """Until this incarnation took over `partitions` after its first `since` ready lines."""
        deadline = time.monotonic() + timeout
        while not partitions <= self.ready_partitions(since):
            assert self.alive, f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
            assert time.monotonic() < deadline, \
                f"{self.name} did not take over {sorted(partitions)} within {timeout}s:\n{self.tail()}"
            time.sleep(0.05)

    def wait_ready(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.ready_count() < count:
            assert self.alive, f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
            assert time.monotonic() < deadline, \
                f"{self.name}: {self.ready_count()} of {count} partitions ready after {timeout}s:\n{self.tail()}"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, maybe in the middle of a transaction."""
        assert self.alive, f"{self.name} died before it could be killed:\n{self.tail()}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, the clean stop: the worker finishes its batch and leaves the group."""
        assert self.alive, f"{self.name} exited with {self.proc.returncode} before SIGTERM:\n{self.tail()}"
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(f"{self.name} did not stop within {timeout}s of SIGTERM:\n{self.tail()}") from None

    def close(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


class FaustProcess:
    """One `segments worker --runtime faust` child process, its stderr kept in a file."""

    def __init__(self, bootstrap: str, s: WorkerConfig, state_dir: Path, log: Path, *options: str):
        self.bootstrap, self.s, self.log = bootstrap, s, log
        self.metrics_port = free_port()
        args = [*segments_cli(), "worker", "--runtime", "faust", "--guarantee", "at_least_once",
                "--bootstrap-servers", bootstrap, "--input-topics", ",".join(s.input_topics),
                "--changes-topic", s.changes_topic, "--membership-topic", s.membership_topic,
                "--dead-letter-topic", s.dead_letter_topic, "--group-id", s.group_id,
                "--state-dir", str(state_dir), "--partitions", str(PARTITIONS),
                # Tansu holds a group join for the rebalance timeout, which this runtime takes from
                # max.poll.interval.ms as librdkafka does: short, so that the join takes seconds.
                "--session-timeout-ms", "6000", "--max-poll-interval-ms", "10000",
                "--metrics-port", str(self.metrics_port), *options]
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         env=child_env(), cwd=log.parent)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_committed(self, counts: dict[str, int], timeout: float = 60) -> None:
        """Until the group's committed offsets cover `counts[topic]` records of each topic: the
        runtime commits an event's offset only once its output and state are in Kafka."""
        # the routed topics of these tests have one partition (their input stays in order)
        sizes = {t: 1 if t in self.s.routed_topics else PARTITIONS for t in counts}
        deadline = time.monotonic() + timeout
        while True:
            done = {t: sum((conformance.committed_offsets(self.bootstrap, self.s.group_id, t, n) or {}).values())
                    for t, n in sizes.items()}
            if all(done[t] >= n for t, n in counts.items()):
                return
            assert self.proc.poll() is None, f"the worker exited with {self.proc.returncode}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"committed {done} of {counts}:\n{self.tail()}"
            time.sleep(0.1)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"the worker exited with {self.proc.returncode}:\n{self.tail()}"
            with contextlib.suppress(OSError):       # not listening yet
                if self.get("/readyz")[0] == 200:
                    return
            assert time.monotonic() < deadline, f"not ready within {timeout} s:\n{self.tail()}"
            time.sleep(0.1)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def terminate(self) -> None:
        """SIGTERM, the user's clean stop: exit status 0 within a few seconds."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(30) == 0, f"exit status {self.proc.returncode}:\n{self.tail()}"
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(f"no exit within 30 s of SIGTERM:\n{self.tail()}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ---- a worker's HTTP endpoints --------------------------------------------------------------------------

def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError:
        return 0, ""          # not listening (yet)


def series(text: str, name: str) -> dict[str, float]:
    """Samples of one metric from the exposition text, by their label string."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            out[labels[len(name):]] = float(value)
    return out
