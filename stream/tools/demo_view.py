"""What `segments demo` shows: segment sizes counted from the segment-change topic alone, each
size over the run as a sparkline, who entered and exited in the last interval, and the latest
changes with their cause (event, time, definition). A live view on a terminal; on anything else
(a pipe, a file) plain lines, without a single terminal control code.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import Any

from stream.model.time import DAY, format_rfc3339, parse_rfc3339

INTERVAL = 2.0              # seconds per interval: a plain line, a sample of the sizes, the moves counted
WINDOW = 5.0                # seconds the rates are averaged over
SPARK_WIDTH = 40            # characters of a sparkline
CAUSES = ("event", "time", "definition")
_BARS = "▁▂▃▄▅▆▇█"
_LATEST_PER_CAUSE = 4       # latest changes kept of each cause: time moves stay in sight among many


class History:
    """Samples over the whole run in bounded memory: when `2 * width` are held, every other one
    goes and a sample is kept half as often from then on. The latest sample is always shown."""

    def __init__(self, width: int = SPARK_WIDTH):
        self.width = width
        self.values: list[tuple[int, ...]] = []
        self.latest: tuple[int, ...] | None = None     # when not kept in values
        self.every = 1           # ticks per kept sample
        self._ticks = 0

    def add(self, sample: tuple[int, ...]) -> None:
        self._ticks += 1
        self.latest = sample
        if self._ticks < self.every:
            return
        self._ticks, self.latest = 0, None
        self.values.append(sample)
        if len(self.values) >= 2 * self.width:
            self.values = self.values[1::2]
            self.every *= 2

    def series(self, index: int) -> list[int]:
        """One column of the samples (0 before it had one), at most `width` of them spread over the
        run, the latest last."""
        samples = self.values if self.latest is None else [*self.values, self.latest]
        values = [sample[index] if index < len(sample) else 0 for sample in samples]
        if len(values) <= self.width:
            return values
        return [values[(i + 1) * len(values) // self.width - 1] for i in range(self.width)]


def sparkline(values: Sequence[int]) -> str:
    """Each value as one of eight bars, from 0 (the lowest) to the largest value (the highest)."""
    top = max(values, default=0)
    if top <= 0:
        return _BARS[0] * len(values)
    return "".join(_BARS[min(len(_BARS) - 1, value * len(_BARS) // top)] if value > 0 else _BARS[0]
                   for value in values)


class Feed:
    """What the view shows, fed by the worker thread (applied events) and the changes reader (changes)."""

    def __init__(self, segments: list[str], start: int):
        self.lock = threading.Lock()
        self.start = start               # when simulated time began (microseconds)
        self.events = 0                  # input events the worker applied (committed batches)
        self.changes = 0                 # segment changes read back from the changes topic
        self.segments = list(segments)
        # Current members per segment. A set rather than a counter: on Tansu, read_committed can
        # show a change twice (an aborted batch is re-sent), and adding a member twice is harmless.
        self.members: dict[str, set[str]] = {name: set() for name in segments}
        self.causes: collections.Counter[str] = collections.Counter()
        # (segment, "entered"|"exited") moves with cause time over the run: time at work, per segment.
        self.by_time: collections.Counter[tuple[str, str]] = collections.Counter()
        self.moves: collections.Counter[tuple[str, str]] = collections.Counter()   # this interval
        self.last_moves: collections.Counter[tuple[str, str]] = collections.Counter()
        self.latest: dict[str, collections.deque[dict[str, Any]]] = {
            cause: collections.deque(maxlen=_LATEST_PER_CAUSE) for cause in CAUSES}
        self.stream_time: int | None = None     # the newest change's time: how far the worker got
        # the customer who entered a segment last: one the stores hold now (the one a change was
        # about first may since have been erased, and the demo's commands name this one)
        self.customer: str | None = None
        self.history = History()
        self._samples: collections.deque[tuple[float, int, int]] = collections.deque()

    def on_batch(self, events: int, changes: int) -> None:
        with self.lock:
            self.events += events

    def on_change(self, change: dict[str, Any]) -> None:
        segment, move, cause = change["segment"], change["change"], change["cause"]
        members = self.members.get(segment)
        if members is None:                          # defined while the demo runs
            members = self.members[segment] = set()
            self.segments.append(segment)
        if move == "entered":
            members.add(change["customer_id"])
        else:
            members.discard(change["customer_id"])
        self.changes += 1
        self.causes[cause] += 1
        self.moves[segment, move] += 1
        if cause == "time":
            self.by_time[segment, move] += 1
        self.latest.setdefault(cause, collections.deque(maxlen=_LATEST_PER_CAUSE)).append(change)
        at = parse_rfc3339(change["at"])
        if self.stream_time is None or at > self.stream_time:
            self.stream_time = at
        if change["change"] == "entered":
            self.customer = change["customer_id"]

    def tick(self) -> None:
        """An interval ends: sample the sizes, and its moves become the ones shown."""
        sizes = self.sizes()
        self.history.add(tuple(sizes[name] for name in self.segments))
        self.last_moves, self.moves = self.moves, collections.Counter()

    def rates(self, now: float) -> tuple[float, float]:
        """Events/s and changes/s over the last few seconds."""
        with self.lock:
            events = self.events
        self._samples.append((now, events, self.changes))
        while len(self._samples) > 2 and now - self._samples[1][0] >= WINDOW:
            self._samples.popleft()
        t0, e0, c0 = self._samples[0]
        span = now - t0
        if span <= 0:
            return 0.0, 0.0
        return (events - e0) / span, (self.changes - c0) / span

    def sizes(self) -> dict[str, int]:
        return {name: len(self.members[name]) for name in self.segments}

    def spark(self, segment: str) -> str:
        return sparkline(self.history.series(self.segments.index(segment)))

    def simulated(self) -> str:
        """How far stream time got: the date and the simulated day it is."""
        if self.stream_time is None:
            return "no change yet"
        day = (self.stream_time - self.start) // DAY
        return f"{format_rfc3339(self.stream_time)[:16].replace('T', ' ')} (day {day})"

    def latest_changes(self) -> list[dict[str, Any]]:
        return sorted((c for kept in self.latest.values() for c in kept), key=lambda c: c["at"], reverse=True)


def cause_counts(feed: Feed) -> str:
    """"event 1,234, time 56" (and definition, once there is any)."""
    return ", ".join(f"{cause} {feed.causes[cause]:,}" for cause in CAUSES
                     if feed.causes[cause] or cause != "definition")


def time_moves(feed: Feed) -> str:
    """The moves time alone made over the run, per segment: "at-risk +12 -3, churned +5"."""
    return ", ".join(f"{name} {moved}" for name in feed.segments if (moved := _by_time(feed, name))) or "none yet"


def _by_time(feed: Feed, segment: str) -> str:
    """"+12 -3": how many entered and exited `segment` by time over the run ("" for none)."""
    entered, exited = feed.by_time[segment, "entered"], feed.by_time[segment, "exited"]
    return " ".join(([f"+{entered:,}"] if entered else []) + ([f"-{exited:,}"] if exited else []))


def plain_lines(feed: Feed, elapsed: float, rates: tuple[float, float]) -> list[str]:
    """One interval, for a reader that is not a terminal."""
    events_rate, changes_rate = rates
    moves = "  ".join(f"{name} {count:,} +{feed.last_moves[name, 'entered']}/-{feed.last_moves[name, 'exited']}"
                      for name, count in feed.sizes().items())
    lines = [f"[{elapsed:6.1f}s] stream time {feed.simulated()}  events {feed.events:,} ({events_rate:.0f}/s)  "
             f"changes {feed.changes:,} ({changes_rate:.0f}/s; {cause_counts(feed)})",
             f"          {moves}"]
    timed = list(feed.latest["time"])[-2:]
    if timed:
        lines.append("          by time: " + ", ".join(
            f"{c['customer_id']} {c['change']} {c['segment']} at {c['at'][:16]}" for c in timed))
    return lines


def summary_lines(feed: Feed) -> list[str]:
    """The run in a few lines: sizes, each over the run, and what time alone moved."""
    sizes = feed.sizes()
    widest = max((len(name) for name in sizes), default=0)
    return (["sizes: " + " ".join(f"{name}={count}" for name, count in sizes.items()),
             f"changes by cause: {cause_counts(feed)}; moved by time: {time_moves(feed)}",
             "sizes over the run:"]
            + [f"  {name:<{widest}}  {feed.spark(name):<{SPARK_WIDTH}}  {count:,}" for name, count in sizes.items()])


def live_view(feed: Feed, info: dict[str, Any], elapsed: float, rates: tuple[float, float]) -> Any:
    """The terminal's view (a rich renderable)."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"segments (moves: the last {INTERVAL:g} s)", title_justify="left", box=None,
                  pad_edge=False)
    table.add_column("segment", style="bold")
    table.add_column("members", justify="right")
    table.add_column("size over the run", no_wrap=True)
    table.add_column("entered", justify="right", style="green")
    table.add_column("exited", justify="right", style="red")
    table.add_column("by time (run)", justify="right", style="magenta")
    for name, count in feed.sizes().items():
        table.add_row(name, f"{count:,}", Text(feed.spark(name), style="cyan"),
                      f"+{feed.last_moves[name, 'entered']:,}", f"-{feed.last_moves[name, 'exited']:,}",
                      _by_time(feed, name))

    latest = Table(title="latest changes, of each cause", title_justify="left", box=None, pad_edge=False)
    for column in ("at (stream time)", "customer", "segment", "change", "cause"):
        latest.add_column(column, no_wrap=True)
    for change in feed.latest_changes():
        entered = change["change"] == "entered"
        latest.add_row(change["at"].replace("T", " ")[:19], change["customer_id"], change["segment"],
                       Text(change["change"], style="green" if entered else "red"),
                       Text(change["cause"], style="magenta" if change["cause"] == "time" else ""))

    events_rate, changes_rate = rates
    stats = Text.assemble(
        ("running ", "dim"), f"{elapsed:5.1f} s", ("   stream time ", "dim"), feed.simulated(),
        ("   events ", "dim"), f"{feed.events:,} ({events_rate:,.0f}/s)",
        ("   changes ", "dim"), f"{feed.changes:,} ({changes_rate:,.0f}/s: {cause_counts(feed)})")
    until = ("Ctrl-C stops it" if info["duration"] is None
             else f"stops after {info['duration']:g} s (or Ctrl-C)")
    header = Text.assemble(
        ("embedded broker ", "dim"), info["bootstrap"],
        (" (in memory: its topics vanish when the demo stops)", "dim"),
        ("\ngenerator ", "dim"), f"{info['customers']:,} customers, {info['pace']}",
        ("   view ", "dim"), f"{info['changes_topic']} (read_committed)")
    return Panel(Group(header, stats, Text(""), table, Text(""), latest),
                 title="segments demo", subtitle=until, border_style="blue")
