"""Every Kafka client the product creates takes its configuration from here.

`client_config` is the one place the connection settings are put together: the bootstrap servers,
the librdkafka properties passed through (`-X`, `SEGMENTS_KAFKA_*`, `kafka:`; security settings
such as SASL and SSL among them), no topic auto-creation, and librdkafka's own log lines routed
through a rate-bounded logger instead of printed to stderr. Worker, definitions feed, restore and
partition-end probes, topic set-up, backfill, `segments define`/`undefine` and `segments produce`
all build their clients on it, so a secured cluster works for every one of them alike.

`BrokerWatch` tells whether the brokers answer: said once when they stop, then at most once per
REPORT_EVERY seconds while they stay away, and once when they answer again; also on the
`segments_broker_up` gauge and in /readyz (stream.runtime.metrics.Health).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from stream.runtime import metrics
from stream.kafka.topic_admin import TopicSpec, admin_client, topic_problems
from stream.runtime.settings import WorkerConfig

REPORT_EVERY = 30.0             # seconds between two reports of the same ongoing broker trouble
# How long one start-up step waits for the brokers before it is retried: the first "unreachable"
# is said within it, and a stop requested meanwhile waits no longer.
ATTEMPT_SECONDS = 10.0

_kafka_log = logging.getLogger("segments.kafka")


class RateBound:
    """librdkafka's `logger`: each kind of line (its facility, such as FAIL or CONNECT) at most
    once per `every` seconds, with a count of the lines held back since the last one shown. A
    broker that refuses connections makes librdkafka write one line per reconnect attempt, many a
    second per client."""

    def __init__(self, target: logging.Logger = _kafka_log, every: float = REPORT_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.target, self.every, self.clock = target, every, clock
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()      # clients of several threads share one

    def log(self, level: int, fmt: str, *args: object) -> None:
        """The logging.Logger.log signature confluent-kafka calls: (level, "%s [%s] %s", facility, client, text)."""
        suffix = self.admit(f"{level}:{args[0] if args else fmt}")
        if suffix is not None:
            self.target.log(level, fmt + suffix, *args)

    def admit(self, key: str) -> str | None:
        """None: hold this line of kind `key` back; else what to add to it (the count held back)."""
        now = self.clock()
        with self._lock:
            if now < self._next.get(key, float("-inf")):
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._next[key] = now + self.every
            held = self._held.pop(key, 0)
        return f" ({held} similar lines in the last {self.every:.0f} s not shown)" if held else ""


class LibraryLogBound(logging.Filter):
    """For a log handler: the warnings and errors of libraries that log every failed retry (the
    Faust runtime's aiokafka, Faust and mode: hundreds of "OffsetCommit failed" lines a minute
    while a topic is missing), each kind (logger, level, message template) at most once per
    `every` seconds, as RateBound does for librdkafka. Other lines pass untouched."""

    def __init__(self, libraries: tuple[str, ...] = ("aiokafka", "faust", "mode"), every: float = REPORT_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.libraries = libraries
        self._bound = RateBound(every=every, clock=clock)

    def filter(self, record: logging.LogRecord) -> bool:
        root = record.name.partition(".")[0]
        if record.levelno < logging.WARNING or root not in self.libraries:
            return True
        suffix = self._bound.admit(f"{record.name}:{record.levelno}:{record.msg}")
        if suffix:
            record.msg = f"{record.msg}{suffix}"
        return suffix is not None


class BrokerWatch:
    """Whether the brokers answer, said plainly and at a bounded rate (see the module docstring).

    Only requests that wait for a broker's answer (start-up steps, BrokerProbe's metadata requests)
    move it: librdkafka's error callbacks arrive late (served on the next poll, after the brokers may
    have answered again), so they only add their text to the reason."""

    def __init__(self, bootstrap: str, target: logging.Logger = _kafka_log, every: float = REPORT_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.bootstrap, self.target, self.every, self.clock = bootstrap, target, every, clock
        self._since: float | None = None          # when the brokers stopped answering
        self._reported = False                    # this outage was said (so its end is said too)
        self._reason = ""
        self._client_error = ""                   # the clients' latest word on it
        self._next_report = float("-inf")         # one line per `every` seconds, across outages too
        self._lock = threading.Lock()
        self.suspect = threading.Event()          # a client saw every broker go: check now
        metrics.BROKER_UP.set(1)

    def problem(self) -> str | None:
        """Why the brokers count as unreachable now, or None."""
        with self._lock:
            if self._since is None:
                return None
            return (f"brokers at {self.bootstrap} unreachable for {self.clock() - self._since:.0f} s "
                    f"({self._why()}); retrying")

    def _why(self) -> str:
        return f"{self._reason}; {self._client_error}" if self._client_error else self._reason

    def down(self, reason: str) -> None:
        now = self.clock()
        with self._lock:
            if self._since is None:
                self._since, self._reported = now, False
            self._reason = reason
            if now < self._next_report:
                metrics.BROKER_UP.set(0)
                return
            self._next_report = now + self.every
            again, self._reported = self._reported, True
            lasted, why = now - self._since, self._why()
        metrics.BROKER_UP.set(0)
        if again:
            self.target.warning("brokers at %s still unreachable after %.0f s (%s); retrying",
                                self.bootstrap, lasted, why)
        else:
            self.target.warning("brokers at %s unreachable (%s); retrying with backoff, next report in %.0f s "
                                "unless they answer", self.bootstrap, why, self.every)

    def up(self) -> None:
        with self._lock:
            since, reported = self._since, self._reported
            self._since, self._reported, self._client_error = None, False, ""
        metrics.BROKER_UP.set(1)
        if reported and since is not None:
            self.target.warning("brokers at %s answer again, after %.0f s unreachable",
                                self.bootstrap, self.clock() - since)

    def on_error(self, error: KafkaError) -> None:
        """librdkafka's error_cb: "every broker down" and failed authentication become part of the
        reason and make the probe check at once (the watch says it, in its words); other errors go
        to the log at the bounded rate."""
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._AUTHENTICATION):
            with self._lock:
                self._client_error = error.str()
            self.suspect.set()
        else:
            _log_error(error)


# One bound for all clients of the process: a dozen clients failing alike still make one line.
_ERRORS = RateBound()
_LIBRDKAFKA = RateBound()


def _log_error(error: KafkaError) -> None:
    _ERRORS.log(logging.WARNING, "%s [client] %s", error.name(), error.str())


def client_config(bootstrap: str, kafka: Mapping[str, str], watch: BrokerWatch | None = None) -> dict[str, object]:
    """The settings every client starts from: where the brokers are, the passthrough properties
    (security settings among them), no topic auto-creation (a topic the worker needs but cannot find
    is a fault to report, never one to paper over with a broker-default topic: wrong partition
    count, no compaction), and the bounded log."""
    return {"bootstrap.servers": bootstrap, **kafka, "allow.auto.create.topics": "false",
            "logger": _LIBRDKAFKA, "error_cb": watch.on_error if watch is not None else _log_error}


def worker_client_config(config: WorkerConfig, watch: BrokerWatch | None = None) -> dict[str, object]:
    """client_config of the worker's settings: what every client of the worker and of the commands
    that read its settings (backfill) starts from."""
    if config.bootstrap_servers is None:
        raise ValueError("no bootstrap servers resolved yet (the embedded broker is started by stream.cli)")
    return client_config(config.bootstrap_servers, config.kafka, watch)


class _Silent:
    def log(self, *args: object) -> None:
        pass


def kafka_problems(kafka: Mapping[str, str], is_secret: Callable[[str], bool]) -> list[str]:
    """librdkafka's verdict on the passthrough properties, from a throwaway consumer and producer
    built with them (no bootstrap servers: nothing connects): an unknown property or a bad value is
    named here, at start, instead of failing the first real client later. Secret values never
    appear in what is returned."""
    if not kafka:
        return []
    problems = []
    for name, build in (("consumer", lambda conf: Consumer({**conf, "group.id": "config-check"})),
                        ("producer", Producer)):
        try:
            client = build({**kafka, "logger": _Silent()})
        except KafkaException as exc:
            text = exc.args[0].str() if isinstance(exc.args[0], KafkaError) else str(exc)
            for key, value in kafka.items():
                if is_secret(key) and value:
                    text = text.replace(value, "***")
            problem = f"librdkafka properties: {text.strip()}"
            if problem not in problems:
                problems.append(problem)
            continue
        if name == "consumer":
            client.close()
    return problems


# Errors that mean "the brokers cannot be reached (or not yet)": worth waiting out, never a crash.
_UNREACHABLE = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._RESOLVE,
                KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.LEADER_NOT_AVAILABLE,
                KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
                KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.REQUEST_TIMED_OUT}


def unreachable(exc: BaseException) -> str | None:
    """Why `exc` means the brokers are out of reach (its text), or None when it means something else."""
    if isinstance(exc, TimeoutError):
        return str(exc)
    if isinstance(exc, KafkaException) and isinstance(exc.args[0], KafkaError):
        error = exc.args[0]
        if not error.fatal() and (error.code() in _UNREACHABLE or error.retriable()):
            return error.str()
    return None


T = TypeVar("T")


def until_reachable(step: Callable[[], T], watch: BrokerWatch, stop: threading.Event,
                    on_wait: Callable[[float], None] = lambda pause: None, first_pause: float = 1.0) -> T | None:
    """step(), again after each failure that means the brokers are out of reach, with a pause that
    doubles from `first_pause` up to 30 s (said through the watch, at its bounded rate). None when
    `stop` is set first; any other failure is raised."""
    pause = first_pause
    while True:
        try:
            result = step()
        except (KafkaException, TimeoutError) as exc:
            reason = unreachable(exc)
            if reason is None:
                raise
            watch.down(reason)
            on_wait(pause)
            if stop.wait(pause):
                return None
            pause = min(pause * 2, 30.0)
            continue
        watch.up()
        return result


class BrokerProbe:
    """A thread that asks the brokers for the topics every `every` seconds: whether they answer
    (for the watch) and whether the topics are as they were at start (topic_problems: present,
    same partition counts, compaction kept). A topic problem counts once seen in `confirm` rounds
    in a row, so that a broker still loading its metadata after a restart is not taken for one
    that lost the topics."""

    def __init__(self, client: Mapping[str, object], watch: BrokerWatch, specs: list[TopicSpec],
                 partitions: Mapping[str, int], every: float = 5.0, confirm: int = 2):
        self.watch, self.specs, self.partitions = watch, specs, dict(partitions)
        self.every, self.confirm = every, confirm
        self.topics_problem: str | None = None
        self._admin = admin_client(client)
        self._seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-probe", daemon=True)

    def start(self) -> BrokerProbe:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.watch.suspect.set()
        self._thread.join(self.every + 15)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.watch.suspect.wait(self.every)      # the period, or sooner when a client saw the brokers go
            self.watch.suspect.clear()
            if not self._stop.is_set():
                self.check()

    def check(self) -> None:
        try:
            problems = topic_problems(self._admin, self.specs, self.partitions, timeout=self.every)
        except (KafkaException, TimeoutError) as exc:
            reason = unreachable(exc)
            if reason is not None:
                self.watch.down(reason)
            else:
                _ERRORS.log(logging.WARNING, "%s [probe] topics could not be checked: %s", "PROBE", exc)
            return
        self.watch.up()
        self._seen = self._seen + 1 if problems else 0
        if not problems:
            self.topics_problem = None
        elif self._seen >= self.confirm and self.topics_problem is None:
            self.topics_problem = ("topics not as the worker needs them (" + "; ".join(problems)
                                   + "): was the broker wiped, or a topic deleted or changed?")
            _kafka_log.error("%s", self.topics_problem)


def partition_counts(client: Mapping[str, object], names: list[str], timeout: float = 30.0) -> dict[str, int]:
    """Each topic's partition count now (those that exist)."""
    found = admin_client(client).list_topics(timeout=timeout).topics
    return {name: len(found[name].partitions) for name in names if name in found and found[name].partitions}
