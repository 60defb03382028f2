"""`segments demo`: the whole pipeline on one machine, watched live, with time at work.

An embedded broker (in memory), a worker (in a thread, state in a temporary directory), the
synthetic shoppers of stream.tools.synth, and a view of what comes out (stream.tools.demo_view):
segment sizes computed from the segment-change topic alone (read_committed, by assign), their
history, the moves and the latest changes with their cause. The shoppers live in simulated time,
played faster than the wall clock (`speed`: two days a second by default), so that within two
minutes carts are abandoned and recovered, buyers repeat, go at risk and churn, time alone moving
them. Everything is gone when the demo stops.
"""
from __future__ import annotations

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

from stream.model.time import DAY, HOUR, MINUTE, SECOND, format_rfc3339
from stream.tools.demo_guide import command_lines, make_token_file, served_routes, where_lines
from stream.tools.demo_view import INTERVAL, Feed, live_view, plain_lines, summary_lines

INPUT_TOPIC = "shop-events"
PARTITIONS = 4
_REFRESH = 0.25                # seconds between redraws of the live view
DEFAULT_SPEED = 2 * DAY // SECOND   # simulated seconds per second: churn (180 days) within two minutes


def run_demo(console: Any, *, rate: float | None = None, customers: int = 2000, duration: float | None = None,
             seed: int = 7, speed: float = DEFAULT_SPEED) -> int:
    """Run broker, worker and generator until `duration` seconds have passed (None: until Ctrl-C),
    showing a live view on a terminal and plain periodic lines otherwise. `speed`: simulated
    seconds per second; `rate`: at most that many events a second (None: what `speed` needs).
    Returns the exit code: 0, 1 when a part failed, 2 for unusable arguments."""
    problems = []
    if rate is not None and not rate > 0:
        problems.append(f"rate must be above 0 events/s, not {rate}")
    if customers < 1:
        problems.append(f"customers must be at least 1, not {customers}")
    if duration is not None and not duration > 0:
        problems.append(f"duration must be above 0 seconds, not {duration}")
    if not speed >= 1:
        problems.append(f"speed must be at least 1 simulated second per second, not {speed:g}")
    if problems:
        for problem in problems:
            console.print(f"segments demo: {problem}", markup=False, highlight=False)
        return 2

    from stream.rules.catalog import load_catalog

    catalog = load_catalog()
    # Simulated time starts now, to the second, and runs ahead of the wall clock from there.
    feed = Feed([segment.name for segment in catalog.segments], start=time.time_ns() // 1_000_000_000 * SECOND)
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
                          duration=duration, seed=seed, speed=speed)
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


def _finish(out: _Output, parts: _Parts, feed: Feed, work: Path, failed: str | None, interrupted: bool,
            elapsed: float) -> int:
    """The summary, and the temporary directory removed unless a part failed; the exit code."""
    out.settle()
    say = out.say
    if not parts.broker_started:
        if interrupted:
            say("stopped (interrupted) before the broker was up")
    else:
        feed.tick()                      # the sizes as they end, the sparklines' last sample
        say(f"stopped after {elapsed:.1f} s{' (interrupted)' if interrupted else ''}: "
            f"{feed.events:,} events applied, {feed.changes:,} segment changes, stream time {feed.simulated()}")
        for line in summary_lines(feed):
            say(line)
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
        self._silenced = False           # stdout's descriptor is /dev/null now
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
        # Each step can be repeated, and they run in this order, because a Ctrl-C (a
        # KeyboardInterrupt, anywhere in the main thread) may cut this short: settle() then
        # finishes it. Cut short after the pipe was silenced but before the console moved, the
        # summary went to /dev/null without a word.
        self.closed = True
        self.console.file = sys.stderr
        if not self._silenced:
            # What is still buffered for stdout would fail again when Python flushes it at exit.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            self._silenced = True

    def settle(self) -> None:
        """Finish a move to stderr that a signal cut short (called with signals ignored)."""
        if self.closed:
            self._stdout_gone()


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


def _run(out: _Output, parts: _Parts, work: Path, catalog: Any, feed: Feed, *, rate: float | None,
         customers: int, duration: float | None, seed: int, speed: float) -> str | None:
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
    token_file = make_token_file(work)
    settings = WorkerConfig(
        bootstrap_servers=bootstrap, input_topics=(INPUT_TOPIC,), group_id="segments-demo", instance_id="demo",
        state_dir=work / "state", partitions=PARTITIONS, session_timeout_ms=6000, max_poll_interval_ms=10000,
        metrics_port=metrics_port, http_token_file=token_file,
        http_host="127.0.0.1",     # a demo on this machine: nothing for the network to see
        # Simulated time: stream time is what the events say, ahead of the wall clock. In production
        # an idle partition follows the wall clock and events far ahead of it are refused; here
        # either would mix two clocks, so this worker has both off.
        idle_advance_ms=None, max_future_skew_ms=None)
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
        realtime=False, speed=speed, start=feed.start, console=quiet, partitions=PARTITIONS,
        stop=parts.stop_producing, flush_timeout=5))
    pace = f"{_speed_text(speed)} of simulated time per second" + (
        "" if rate is None else f" at most (events capped at {rate:g}/s)")
    say(f"worker: group {settings.group_id}, {PARTITIONS} partitions, reading {INPUT_TOPIC}, writing "
        f"{settings.changes_topic}; generator: {customers:,} customers")
    say(f"simulated time from {format_rfc3339(feed.start)}, {pace}: stream time is the "
        f"events' time alone (this worker runs with idle_advance_ms and max_future_skew_ms off; a "
        f"production worker keeps both)")
    url = f"http://127.0.0.1:{metrics_port}"
    for line in where_lines(settings, url, token_file, served_routes(url)):
        say(line)
    say("segment sizes below are counted from the segment changes the worker publishes; the first "
        "ones appear once the worker has joined its consumer group (a few seconds)")
    if not out.is_terminal:
        say(f"every {INTERVAL:g} s: stream time, events and changes (by cause), then per segment its members "
            f"and +entered/-exited in those {INTERVAL:g} s, then the latest moves made by time")

    started = time.monotonic()
    deadline = None if duration is None else started + duration
    info = {"bootstrap": bootstrap, "customers": customers, "duration": duration, "pace": pace,
            "changes_topic": settings.changes_topic}
    decode = msgspec.json.Decoder().decode
    failed: str | None = None
    pointed = False

    def pump(timeout: float) -> None:
        nonlocal pointed
        for msg in parts.reader.consume(500, timeout):
            if msg.error() is None and msg.value() is not None:
                with contextlib.suppress(msgspec.DecodeError, KeyError, TypeError):
                    feed.on_change(decode(msg.value()))
        if not pointed and feed.customer is not None:
            # A customer of this run exists now: commands that work against the running demo.
            pointed = True
            say(f"while the demo runs (its state dir goes when it stops), try, about customer {feed.customer}:")
            for line in command_lines(settings, url, token_file, feed.customer, "repeat-buyer"):
                say(f"  {line}")

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

    next_tick = started + INTERVAL
    if out.is_terminal:
        from rich.live import Live
        with Live(live_view(feed, info, 0.0, (0.0, 0.0)), console=out.console, auto_refresh=False,
                  transient=False, redirect_stdout=False, redirect_stderr=False) as live:
            next_draw = 0.0
            while not finished():
                pump(0.05)
                now = time.monotonic()
                if now >= next_tick:
                    feed.tick()
                    next_tick = now + INTERVAL
                if now >= next_draw:
                    live.update(live_view(feed, info, now - started, feed.rates(now)), refresh=True)
                    next_draw = now + _REFRESH
    else:
        while not finished():
            pump(0.1)
            now = time.monotonic()
            if now >= next_tick:
                feed.tick()
                for line in plain_lines(feed, now - started, feed.rates(now)):
                    say(line)
                next_tick = now + INTERVAL
    return failed


def _speed_text(speed: float) -> str:
    """2d, 12h, 90s: the simulated time a second of the wall clock holds."""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if speed * SECOND >= size:
            return f"{speed * SECOND / size:g}{unit}"
    return f"{speed:g}s"


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
