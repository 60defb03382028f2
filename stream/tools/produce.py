"""`segments produce`: synthetic shoppers (stream.tools.synth.shop_records) published to Kafka.

Records are keyed by customer id, as the worker requires. With `realtime` every event carries the
wall-clock time at which it is sent, so a live worker's idle clock and timers behave as they would
in production; otherwise event times come from the simulated clock starting 2025-01-01 (or `start`)
and the same seed gives the same bytes. With `speed` the simulated clock is played against the wall
clock, that many simulated seconds a second: each record is sent when its simulated time is due.
Delivery is idempotent: every record reaches the topic once (the redeliveries in the stream are
deliberate, the same record sent twice).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from stream.kafka.clients import client_config
from stream.kafka.topic_admin import ensure_topics
from stream.runtime.settings import WorkerConfig
from stream.runtime.topics import input_configs
from stream.model.time import SECOND
from stream.tools.synth import START, shop_records


def produce(bootstrap: str, topic: str, *, rate: float | None = None, events: int | None = None,
            customers: int = 1000, seed: int = 7, bad_ratio: float = 0.001, realtime: bool = True,
            console: Any = None, partitions: int = 8, stop: threading.Event | None = None,
            kafka: dict[str, str] | None = None, flush_timeout: float = 30.0, speed: float | None = None,
            start: int | None = None) -> int:
    """Send `events` records (None: until Ctrl-C or `stop` is set) at `rate` records per second
    (None: as fast as possible) to `topic`, creating it with `partitions` partitions if it does not
    exist. Prints one summary line on `console` (a rich Console). Ctrl-C (or `stop`) ends the run
    cleanly: what was sent is flushed (for at most `flush_timeout` seconds) and summed up. `kafka`
    adds librdkafka producer properties. `speed` (simulated seconds per second; needs `realtime`
    off) paces the simulated clock, from `start` (microseconds; default: now), with `rate` then a
    ceiling: a simulation busier than `rate` runs slower than `speed`. Returns the exit code: 0
    (also when interrupted), 1 when Kafka could not be reached or records were not delivered, 2 for
    unusable arguments."""
    if console is None:
        from rich.console import Console
        console = Console(stderr=True, highlight=False)
    problems = []
    if rate is not None and not rate > 0:
        problems.append(f"rate must be above 0 events/s (or unlimited), not {rate}")
    if events is not None and events < 0:
        problems.append(f"events must be 0 or more, not {events}")
    if customers < 1:
        problems.append(f"customers must be at least 1, not {customers}")
    if not 0 <= bad_ratio <= 1:
        problems.append(f"bad ratio must lie in 0..1, not {bad_ratio}")
    if speed is not None and not speed > 0:
        problems.append(f"speed must be above 0 simulated seconds per second, not {speed}")
    if speed is not None and realtime:
        problems.append("a speed plays the simulated clock: it needs realtime off")
    if problems:
        for problem in problems:
            console.print(f"segments produce: {problem}", markup=False, soft_wrap=True)
        return 2

    try:
        # Created as a worker would create it (with the default erasure bound): a topic that exists
        # keeps its configs, so the first creator sets how long an erased customer's events stay.
        ensure_topics(client_config(bootstrap, kafka or {}), [(topic, partitions, input_configs(WorkerConfig()))],
                      timeout=15)
    except (KafkaException, TimeoutError) as exc:
        console.print(f"segments produce: cannot use topic {topic!r} at {bootstrap}: {_reason(exc)}", markup=False,
                      soft_wrap=True)
        return 1

    # murmur2_random: the Java client's partitioner, which the worker requires of keyed input.
    producer = Producer({"enable.idempotence": True, "linger.ms": 10, "partitioner": "murmur2_random",
                         **client_config(bootstrap, kafka or {})})
    tally = {"delivered": 0, "failed": 0}
    error = [""]            # the first delivery error, for the summary

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is None:
            tally["delivered"] += 1
        else:
            tally["failed"] += 1
            error[0] = error[0] or str(err)

    clock: Callable[[], int] | None = None
    run = ""
    if realtime:
        def wall_clock() -> int:
            return time.time_ns() // 1_000_000 * 1000          # milliseconds, as microseconds
        clock = wall_clock
    if realtime or speed is not None:
        # Event ids unique to this run: a second run is new traffic, not redeliveries of the first.
        run = f"{_base36(time.time_ns() // 1_000_000)}-"
    if start is None:
        start = START if speed is None else time.time_ns() // 1_000_000 * 1000
    records = shop_records(customers, seed, clock, bad_ratio=bad_ratio, run=run, start=start)

    sent = bad = redelivered = 0
    interrupted = False
    started = time.monotonic()

    def rate_allows() -> float:
        return 0.0 if rate is None else started + sent / rate
    try:
        while events is None or sent < events:
            if stop is not None and stop.is_set():
                break
            if speed is None:
                # Sleep first, then take the record: its time is when it is sent. Unpaced, no
                # clock is read at all: as fast as possible is the producer's loop alone.
                if rate is not None and _wait(rate_allows(), stop):
                    break
                record = next(records)
            else:
                # Take the record, then sleep until its simulated time is due (and the rate allows).
                record = next(records)
                if _wait(max(started + (record.at - start) / SECOND / speed, rate_allows()), stop):
                    break
            while True:
                try:
                    producer.produce(topic, key=record.key, value=record.value, on_delivery=delivered)
                    break
                except BufferError:                  # the local queue is full: let it drain
                    producer.poll(0.05)
            sent += 1
            if record.kind == "bad":
                bad += 1
            elif record.kind == "redelivery":
                redelivered += 1
            producer.poll(0)
    except KeyboardInterrupt:
        interrupted = True
    unflushed = 0
    try:
        unflushed = producer.flush(flush_timeout)
    except KeyboardInterrupt:
        interrupted = True
        unflushed = len(producer)
    elapsed = max(time.monotonic() - started, 1e-9)
    if unflushed:
        producer.purge()                          # give up on them; close() would wait for them
    close = getattr(producer, "close", None)      # only in newer confluent-kafka
    if close is not None:
        close()

    done = tally["delivered"]
    line = (f"{'interrupted: ' if interrupted else ''}sent {done:,} records to {topic} "
            f"({bad:,} bad, {redelivered:,} redelivered) in {elapsed:.1f} s: {done / elapsed:,.1f} records/s")
    failed = tally["failed"] + unflushed
    if failed:
        line += f"; {failed:,} NOT delivered"
        if error[0]:
            line += f" ({error[0]})"
    console.print(line, markup=False, soft_wrap=True)
    return 1 if failed else 0


def _wait(until: float, stop: threading.Event | None) -> bool:
    """Sleep until the monotonic clock reads `until` (not at all when it has); whether `stop` was set."""
    ahead = until - time.monotonic()
    if ahead <= 0.002:
        return False
    if stop is None:
        time.sleep(ahead)
        return False
    return stop.wait(ahead)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args:
        error = exc.args[0]
        return getattr(error, "str", lambda: str(error))()
    return str(exc)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = digits[digit] + out
        if not number:
            return out
