"""`segments replay`: the engine over JSON lines, in file order. The reference driver: every other
driver must give the same segment changes for the same input."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable

from .changes import SegmentChange, encode_change
from .engine import Engine, Stats
from .events import DeadLetter, Decoder

_FLUSH_EVERY = 4096


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


def replay(lines: Iterable[bytes], engine: Engine, output: BinaryIO, dead_letters: BinaryIO,
           until: int | None = None, on_line: Callable[[int], None] | None = None) -> ReplaySummary:
    """Apply every line; write changes and dead letters as JSON lines. `on_line(n_bytes)` reports
    progress. Bad lines never stop the replay: they become dead letters with their line number."""
    decode = Decoder().decode
    apply = engine.apply
    events = dead = 0
    started = time.perf_counter()
    changes: list[SegmentChange] = []
    for number, line in enumerate(lines, 1):
        if on_line is not None:
            on_line(len(line))
        raw = line.rstrip(b"\r\n")
        if not raw:
            continue                 # a blank line carries no event (e.g. a trailing newline)
        event = decode(raw)
        if type(event) is DeadLetter:
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


def write_changes(output: BinaryIO, changes: list[SegmentChange]) -> None:
    if changes:
        output.write(b"".join([encode_change(c) + b"\n" for c in changes]))
        changes.clear()
