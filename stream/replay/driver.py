"""`segments replay`: the engine over JSON lines, in file order. The reference driver: every other
driver must give the same segment changes for the same input."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from stream.engine.core import Engine, Stats
from stream.model.changes import SegmentChange, encode_change
from stream.model.decoding import Decoder
from stream.model.events import DeadLetter, oversized
from stream.runtime import metrics
from stream.runtime.intake import too_far_ahead

_FLUSH_EVERY = 4096
# What a dead letter keeps of a line over the size limit: enough to tell what it was (the input
# file has the rest, at the line number the dead letter names).
PREFIX_BYTES = 4096
_CHUNK = 1 << 20


@dataclass
class ReplaySummary:
    events: int
    dead_letters: int
    seconds: float
    engine: Stats

    def lines(self) -> list[str]:
        rate = self.events / self.seconds if self.seconds > 0 else 0.0
        return [
            f"events        {self.events}",
            f"dead letters  {self.dead_letters}",
            f"duplicates    {self.engine.duplicates}",
            f"late          {self.engine.late}",
            f"changes       {self.engine.changes}",
            f"elapsed       {self.seconds:.2f} s ({rate:,.0f} events/s)",
        ]


def replay(source: BinaryIO, engine: Engine, output: BinaryIO, dead_letters: BinaryIO,
           until: int | None = None, on_line: Callable[[int], None] | None = None,
           max_bytes: int = 1 << 20, clock: int | None = None, skew: int | None = None) -> ReplaySummary:
    """Apply every line; write changes and dead letters as JSON lines. `on_line(n_bytes)` reports
    progress. Bad lines never stop the replay: they become dead letters with their line number.
    A line over `max_bytes` is never held whole; an event more than `skew` microseconds after
    `clock` (the wall clock when the replay started, as a worker checks it) is a dead letter."""
    metrics.count_sheds()          # what state bounds shed, counted and logged as in the workers
    decode = Decoder(max_bytes).decode
    apply = engine.apply
    events = dead = 0
    started = time.perf_counter()
    changes: list[SegmentChange] = []
    for number, (line, size) in enumerate(bounded_lines(source, max_bytes), 1):
        if on_line is not None:
            on_line(size)
        if size > len(line):
            dead += 1
            dead_letters.write(oversized(line, size, max_bytes).to_json_line(line=number))
            continue
        raw = line.rstrip(b"\r\n")
        if not raw:
            continue                 # a blank line carries no event (e.g. a trailing newline)
        event = decode(raw)
        if skew is not None and clock is not None and not isinstance(event, DeadLetter):
            event = too_far_ahead(event, raw, clock, skew)
        if isinstance(event, DeadLetter):
            dead += 1
            dead_letters.write(event.to_json_line(line=number))
            continue
        events += 1
        apply(event, changes)
        if len(changes) >= _FLUSH_EVERY:
            write_changes(output, changes)
    if until is not None:
        engine.advance(until, changes)
    write_changes(output, changes)
    output.flush()
    dead_letters.flush()
    return ReplaySummary(events, dead, time.perf_counter() - started, engine.stats)


def bounded_lines(source: BinaryIO, limit: int) -> Iterator[tuple[bytes, int]]:
    """Each line with its size in bytes. A line longer than `limit` (its line ending aside) comes
    as its first PREFIX_BYTES with the size of the line without its ending; the rest is read past
    in chunks, never held whole."""
    readline = source.readline
    while True:
        line = readline(limit + 2)              # the longest line allowed, with \r\n
        if not line:
            return
        if len(line) < limit + 2 or line.endswith(b"\n"):
            yield line, len(line)
            continue
        head, size = line[:PREFIX_BYTES], len(line)
        while not line.endswith(b"\n"):
            line = readline(_CHUNK)
            if not line:
                break
            size += len(line)
        yield head, size - (len(line) - len(line.rstrip(b"\r\n")))


def write_changes(output: BinaryIO, changes: list[SegmentChange]) -> None:
    if changes:
        output.write(b"".join([encode_change(c) + b"\n" for c in changes]))
        changes.clear()
