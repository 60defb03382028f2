"""`segments demo`: the whole pipeline on one machine, watched live.

An embedded broker (in memory), a worker (in a thread, state in a temporary directory), the
synthetic shoppers of stream.tools.synth sent in real time, and a view of what comes out: segment sizes
computed from the segment-change topic alone (read_committed, by assign), the latest changes, and
the rates. Everything is gone when the demo stops.
"""
from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

INPUT_TOPIC = "shop-events"
PARTITIONS = 4
_PLAIN_EVERY = 2.0             # seconds between lines when stdout is not a terminal
_REFRESH = 0.25                # seconds between redraws of the live view
_WINDOW = 5.0                  # seconds the rates are averaged over


class _Feed:
    """What the view shows, fed by the worker thread (counts) and the changes reader (changes)."""

    def __init__(self, segments: list[str]):
        self.lock = threading.Lock()
        self.events = 0                  # input events the worker applied (committed batches)
        self.changes = 0                 # segment changes read back from the changes topic
        # Current members per segment. A set rather than a counter: on Tansu, read_committed can
        # show a change twice (an aborted batch is re-sent), and adding a member twice is harmless.
        self.members: dict[str, set[str]] = {name: set() for name in segments}
        self.latest: collections.deque[dict[str, Any]] = collections.deque(maxlen=10)
        self.samples: collections.deque[tuple[float, int, int]] = collections.deque()

    def on_batch(self, events: int, changes: int) -> None:
        with self.lock:
            self.events += events

    def on_change(self, change: dict[str, Any]) -> None:
        members = self.members.setdefault(change["segment"], set())
        if change["change"] == "entered":
            members.add(change["customer_id"])
        else:
            members.discard(change["customer_id"])
        self.changes += 1
        self.latest.append(change)

    def rates(self, now: float) -> tuple[float, float]:
        """Events/s and changes/s over the last few seconds."""
        with self.lock:
            events = self.events
        self.samples.append((now, events, self.changes))
        while len(self.samples) > 2 and now - self.samples[1][0] >= _WINDOW:
            self.samples.popleft()
        t0, e0, c0 = self.samples[0]
        span = now - t0
        if span <= 0:
            return 0.0, 0.0
        return (events - e0) / span, (self.changes - c0) / span

    def sizes(self) -> dict[str, int]:
        return {name: len(members) for name, members in self.members.items()}


def run_demo(console: Any, *, rate: float = 200.0, customers: int = 2000, duration: float | None = None,
             seed: int = 7) -> int:
    """Run broker, worker and generator until `duration` seconds have passed (None: until Ctrl-C),
    showing a live view on a terminal and plain periodic lines otherwise. Returns the exit code:
    0, 1 when a part failed, 2 for unusable arguments."""
    problems = []
    if not rate > 0:
        problems.append(f"rate must be above 0 events/s, not {rate}")
    if customers < 1:
        problems.append(f"customers must be at least 1, not {customers}")
    if duration is not None and not duration > 0:
        problems.append(f"duration must be above 0 seconds, not {duration}")
    if problems:
        for problem in problems:
            console.print(f"segments demo: {problem}", markup=False, highlight=False)
        return 2

    from stream.rules.catalog import load_catalog

    catalog = load_catalog()
    feed = _Feed([segment.name for segment in catalog.segments])
    out = _Output(console)
    work = Path(tempfile.mkdtemp(prefix="segments-demo-"))
    parts = _Parts()
    failed: str | None = None
    interrupted = False
    started = time.monotonic()
    try:
        # Ctrl-C and SIGTERM stop it alike, on a terminal or not, and so does the end of a pipe
        # its output goes to (`| head`): the summary on stderr then.
        with _stop_signals():
            failed = _run(out, parts, work, catalog, feed, rate=rate, customers=customers,
                          duration=duration, seed=seed)
        interrupted = out.closed
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:        # said in one line; the demo owes no traceback
        failed = f"{type(exc).__name__}: {exc}"
    # A second signal while shutting down must not leave threads, clients, the broker or the
    # temporary directory behind.
    with _signals_ignored():
        errors = parts.shut_down()
        return _finish(out, parts, feed, work, failed or errors, interrupted, time.monotonic() - started)


def _finish(out: _Output, parts: _Parts, feed: _Feed, work: Path, failed: str | None, interrupted: bool,
            elapsed: float) -> int:
    """The summary, and the temporary directory removed unless a part failed; the exit code."""
    say = out.say
    if not parts.broker_started:
        if interrupted:
            say("stopped (interrupted) before the broker was up")
    else:
        say(f"stopped after {elapsed:.1f} s{' (interrupted)' if interrupted else ''}: "
            f"{feed.events:,} events applied, {feed.changes:,} segment changes")
        say("sizes: " + " ".join(f"{name}={count}" for name, count in feed.sizes().items()))
        say("the embedded broker is stopped: its topics and everything in them are gone")
    if failed:
        say(f"segments demo: {failed}", style="bold red")
        say(f"kept for a look: {work} (broker log, worker state)")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


class _Output:
    """The console, until the reader of stdout goes away (a pipe's other end closed): from then
    on stderr, and `closed` tells the demo to stop."""

    def __init__(self, console: Any):
        self.console = console
        self.closed = False
        # rich's own answer to a closed pipe is SystemExit(1), from inside whatever printed: no
        # summary, and the temporary directory left behind.
        console.on_broken_pipe = self._stdout_gone

    @property
    def is_terminal(self) -> bool:
        return self.console.is_terminal

    def say(self, text: str, style: str | None = None) -> None:
        closed = self.closed
        try:
            self._print(text, style)
        except BrokenPipeError:          # a rich that does not call on_broken_pipe
            self._stdout_gone()
        if self.closed and not closed:
            self._print(text, style)     # it went nowhere: again, to stderr

    def _print(self, text: str, style: str | None) -> None:
        self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def _stdout_gone(self) -> None:
        if self.closed:
            return
        self.closed = True
        # What is still buffered for stdout would fail again when Python flushes it at exit.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        self.console.file = sys.stderr


class _Parts:
    """Everything the demo started, stopped in the right order whatever happened."""

    def __init__(self) -> None:
        self.broker: Any = None
        self.broker_started = False
        self.worker: Any = None
        self.worker_thread: threading.Thread | None = None
        self.producer_thread: threading.Thread | None = None
        self.reader: Any = None
        self.stop_producing = threading.Event()
        self.errors: list[str] = []

    def thread(self, name: str, target: Callable[[], Any]) -> threading.Thread:
        """A daemon thread whose exception is kept as a message, never printed as a traceback."""
        def run() -> None:
            try:
                result = target()
                if isinstance(result, int) and result != 0:
                    self.errors.append(f"{name} ended with status {result}")
            except BaseException as exc:    # reported to the user, not lost
                self.errors.append(f"{name} failed: {type(exc).__name__}: {exc}")
        thread = threading.Thread(target=run, name=f"demo-{name}", daemon=True)
        thread.start()
        return thread

    def shut_down(self) -> str | None:
        self.stop_producing.set()
        if self.producer_thread is not None:
            self.producer_thread.join(10)
        if self.worker is not None:
            self.worker.stop()
        if self.worker_thread is not None:
            # One batch to finish and the group to leave; longer only when the broker is gone.
            self.worker_thread.join(15)
            if self.worker_thread.is_alive():
                self.errors.append("the worker did not stop within 15 s; left behind")
        if self.reader is not None:
            with contextlib.suppress(Exception):
                self.reader.close()
            self.reader = None
        self.worker = None
        if self.broker is not None:
            self.broker.stop()
        return "; ".join(self.errors) or None


def _run(out: _Output, parts: _Parts, work: Path, catalog: Any, feed: _Feed, *, rate: float,
         customers: int, duration: float | None, seed: int) -> str | None:
    """Start everything and show the view until the time is up or a part fails (the message)."""
    from confluent_kafka import Consumer, TopicPartition
    from rich.console import Console

    from stream.kafka.embedded_broker import BrokerStartError, EmbeddedBroker, free_port
    from stream.kafka.topic_admin import ensure_topics
    from stream.runtime.settings import WorkerConfig
    from stream.tools.produce import produce
    from stream.worker.loop import Worker

    say = out.say
    say("starting the embedded broker (Tansu) ...")
    parts.broker = EmbeddedBroker(log_dir=work / "broker")
    try:
        parts.broker.start()
    except BrokerStartError as exc:
        return str(exc)
    parts.broker_started = True
    bootstrap = parts.broker.bootstrap
    say(f"embedded broker on {bootstrap}. It keeps everything in memory: its topics and every record "
        f"in them vanish when the demo stops.")

    # The worker's usual metrics port, unless something on this machine (a real worker) has it.
    metrics_port = 9308 if _port_free(9308) else free_port()
    settings = WorkerConfig(
        bootstrap_servers=bootstrap, input_topics=(INPUT_TOPIC,), group_id="segments-demo", instance_id="demo",
        state_dir=work / "state", partitions=PARTITIONS, idle_advance_ms=1000,
        session_timeout_ms=6000, max_poll_interval_ms=10000, metrics_port=metrics_port,
        http_host="127.0.0.1")   # a demo on this machine: nothing for the network to see
    parts.worker = Worker(settings, catalog, on_batch=feed.on_batch)
    ensure_topics(bootstrap, parts.worker.topics(), replication_factor=settings.replication_factor)

    parts.reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "segments-demo-view",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50})
    parts.reader.assign([TopicPartition(settings.changes_topic, p, 0) for p in range(PARTITIONS)])

    worker_thread = parts.worker_thread = parts.thread("worker", parts.worker.run)
    quiet = Console(quiet=True)
    parts.producer_thread = parts.thread("generator", lambda: produce(
        bootstrap, INPUT_TOPIC, rate=rate, events=None, customers=customers, seed=seed, bad_ratio=0.001,
        realtime=True, console=quiet, partitions=PARTITIONS, stop=parts.stop_producing, flush_timeout=5))
    say(f"worker: group {settings.group_id}, {PARTITIONS} partitions, reading {INPUT_TOPIC}, writing "
        f"{settings.changes_topic}; generator: {rate:g} events/s from {customers:,} customers, event times "
        f"= now")
    say(f"metrics: http://127.0.0.1:{metrics_port}/metrics")
    say("segment sizes below are counted from the segment changes the worker publishes; the first "
        "ones appear once the worker has joined its consumer group (a few seconds)")

    started = time.monotonic()
    deadline = None if duration is None else started + duration
    info = {"bootstrap": bootstrap, "rate": rate, "customers": customers, "duration": duration,
            "changes_topic": settings.changes_topic}
    decode = msgspec.json.Decoder().decode
    failed: str | None = None

    def pump(timeout: float) -> None:
        for msg in parts.reader.consume(500, timeout):
            if msg.error() is None and msg.value() is not None:
                with contextlib.suppress(msgspec.DecodeError):
                    feed.on_change(decode(msg.value()))

    def finished() -> bool:
        nonlocal failed
        if parts.errors:
            failed = "; ".join(parts.errors)
            return True
        if not parts.broker.running:
            failed = "the embedded broker exited unexpectedly"
            return True
        if not worker_thread.is_alive():
            failed = "the worker stopped unexpectedly"
            return True
        return out.closed or deadline is not None and time.monotonic() >= deadline

    if out.is_terminal:
        from rich.live import Live
        with Live(_view(feed, info, 0.0, (0.0, 0.0)), console=out.console, auto_refresh=False,
                  transient=False, redirect_stdout=False, redirect_stderr=False) as live:
            next_draw = 0.0
            while not finished():
                pump(0.05)
                now = time.monotonic()
                if now >= next_draw:
                    live.update(_view(feed, info, now - started, feed.rates(now)), refresh=True)
                    next_draw = now + _REFRESH
    else:
        next_line = started + _PLAIN_EVERY
        while not finished():
            pump(0.1)
            now = time.monotonic()
            if now >= next_line:
                events_rate, changes_rate = feed.rates(now)
                say(f"[{now - started:6.1f}s] events {feed.events:,} ({events_rate:.0f}/s)  changes "
                    f"{feed.changes:,} ({changes_rate:.0f}/s)  sizes: "
                    + " ".join(f"{name}={count}" for name, count in feed.sizes().items()))
                next_line = now + _PLAIN_EVERY
    return failed


def _view(feed: _Feed, info: dict[str, Any], elapsed: float, rates: tuple[float, float]) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    sizes = feed.sizes()
    widest = max(sizes.values(), default=0) or 1
    table = Table(title="segment sizes", title_justify="left", expand=False, box=None, pad_edge=False)
    table.add_column("segment", style="bold")
    table.add_column("members", justify="right")
    table.add_column("", no_wrap=True)
    for name, count in sizes.items():
        table.add_row(name, f"{count:,}", Text("█" * round(40 * count / widest), style="cyan"))

    latest = Table(title="latest changes", title_justify="left", box=None, pad_edge=False)
    for column in ("at", "customer", "segment", "change", "cause"):
        latest.add_column(column, no_wrap=True)
    for change in sorted(feed.latest, key=lambda c: c["at"], reverse=True):
        entered = change["change"] == "entered"
        latest.add_row(change["at"].replace("T", " ")[:23], change["customer_id"], change["segment"],
                       Text(change["change"], style="green" if entered else "red"), change["cause"])

    events_rate, changes_rate = rates
    stats = Text.assemble(
        ("running ", "dim"), f"{elapsed:5.1f} s", ("   events ", "dim"), f"{feed.events:,}",
        f" ({events_rate:,.0f}/s)", ("   changes ", "dim"), f"{feed.changes:,}", f" ({changes_rate:,.0f}/s)")
    until = ("Ctrl-C stops it" if info["duration"] is None
             else f"stops after {info['duration']:g} s (or Ctrl-C)")
    header = Text.assemble(
        ("embedded broker ", "dim"), info["bootstrap"],
        (" (in memory: its topics vanish when the demo stops)", "dim"),
        ("\ngenerator ", "dim"), f"{info['rate']:g} events/s, {info['customers']:,} customers, event time = now",
        ("   view ", "dim"), f"{info['changes_topic']} (read_committed)")
    return Panel(Group(header, stats, Text(""), table, Text(""), latest),
                 title="segments demo", subtitle=until, border_style="blue")


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _stop_signals():
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread: a stop, summary included,
    whether or not the demo runs on a terminal (SIGTERM would otherwise end it unannounced)."""
    with _signal_handlers(signal.default_int_handler):
        yield


@contextlib.contextmanager
def _signals_ignored():
    with _signal_handlers(signal.SIG_IGN):
        yield


@contextlib.contextmanager
def _signal_handlers(handler: Any):
    if threading.current_thread() is not threading.main_thread():
        yield          # signal handlers can only be set there; run_demo runs there in the CLI
        return
    previous = {signum: signal.signal(signum, handler) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0
