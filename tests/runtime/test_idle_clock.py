"""The idle clock's caught-up rule (stream.runtime.idle_clock.CatchUp, idle, advance_idle), which both
runtimes use: a partition's clock follows the wall clock only once every topic-partition its engine
reads was read to its end, with no input for the idle threshold since; never while input it was
assigned (a backlog) or has fetched is unread, however long that takes.

The model below is a consumer over a few topic-partitions: records are appended, reading starts at
some committed offset (assignment, or a seek back after a failed batch), messages are read one by
one, and the end-of-partition signal is delivered only at the end (librdkafka's PARTITION_EOF, or
Faust's applied position at the high watermark).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.engine.core import Engine
from stream.rules.catalog import load_catalog
from stream.runtime.idle_clock import CatchUp, advance_idle, idle

IDLE_MS = 1000
KEYED = [("events", 0), ("repartition", 0)]     # engine 0's own topic-partitions
ROUTED = [("orders", 0)]                        # feed every engine
CATALOG = load_catalog()


@dataclass
class Source:
    end: int = 0
    position: int = 0
    assigned: bool = False
    backlog_end: int = 0          # the end when reading (re)started: all of it must be read first
    last_read: int = -1           # step of the last message read or (re)assignment
    last_eof: int = -2            # step of the last end-of-partition signal
    last_eof_at: float = 0.0      # monotonic time of it


@dataclass
class Model:
    engine: CatchUp = field(default_factory=CatchUp)
    routed: CatchUp = field(default_factory=CatchUp)
    sources: dict[tuple[str, int], Source] = field(default_factory=lambda: {k: Source() for k in KEYED + ROUTED})
    now: float = 100.0
    step: int = 0
    routed_floor: float = 0.0     # the catch-up time revoked routed sources leave behind

    def tracker(self, key: tuple[str, int]) -> CatchUp:
        return self.routed if key in ROUTED else self.engine

    def apply(self, op: tuple) -> None:
        self.step += 1
        kind, key, n = op
        source = self.sources[key]
        if kind == "append":
            source.end += n
        elif kind == "assign":
            source.assigned, source.position = True, max(0, source.end - n)   # committed: n records back
            source.backlog_end, source.last_read = source.end, self.step
            self.tracker(key).assigned(key)
        elif kind == "read" and source.assigned and source.position < source.end:
            source.position = min(source.end, source.position + n)
            source.last_read = self.step
            self.tracker(key).read(key)
        elif kind == "eof" and source.assigned and source.position == source.end and source.last_eof < source.last_read:
            # (delivered once each time the end is reached: after new records, a seek, an assignment)
            source.last_eof, source.last_eof_at = self.step, self.now
            self.tracker(key).reached_end(key, self.now)
        elif kind == "wait":
            self.now += n / 10
        elif kind == "rewind":                  # a failed batch: every source read again
            for other in self.sources.values():
                if other.assigned:
                    other.position = max(0, other.position - n)
                    other.backlog_end, other.last_read = other.end, self.step
            self.engine.rewind()
            self.routed.rewind()
        elif kind == "revoke" and key in ROUTED and source.assigned:
            source.assigned = False
            # the routed tracker's catch-up time stays: when the source caught up, or now if it had not
            caught_up_at = self.now if source.last_eof < source.last_read else source.last_eof_at
            self.routed_floor = max(self.routed_floor, caught_up_at)
            self.routed.revoked(key, self.now)

    def may_advance(self) -> bool:
        """What the rule promises: every assigned source signalled its end after its last read
        (so what it held then, the backlog included, is read), and the idle threshold passed
        since the last of those signals."""
        assigned = [s for s in self.sources.values() if s.assigned]
        if any(s.last_eof < s.last_read for s in assigned):
            return False
        return all((self.now - at) * 1000 >= IDLE_MS for at in [s.last_eof_at for s in assigned] + [self.routed_floor])


ops = st.tuples(st.sampled_from(["append", "assign", "read", "eof", "wait", "rewind", "revoke"]),
                st.sampled_from(KEYED + ROUTED), st.integers(1, 30))


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=60))
def test_the_idle_clock_never_advances_a_partition_with_unread_input(steps):
    model = Model()
    for op in steps:
        model.apply(op)
        allowed = idle((model.engine, model.routed), IDLE_MS, model.now)
        assert allowed == model.may_advance(), (op, model)
        if allowed:
            assert all(s.position >= s.backlog_end for s in model.sources.values() if s.assigned), \
                "idle with part of the backlog unread"
        engine = Engine(CATALOG)
        before = engine.now
        advance_idle(engine, IDLE_MS, (model.engine, model.routed), model.now, [])
        assert (engine.now != before) == allowed


def test_opening_slowly_does_not_make_a_partition_idle():
    """The restart case: assigned with a backlog, nothing read yet, any time later: not idle."""
    catch_up = CatchUp()
    catch_up.assigned(("events", 0))
    assert not idle([catch_up], IDLE_MS, 1e9)
    catch_up.read(("events", 0))
    catch_up.reached_end(("events", 0), 50.0)
    assert not idle([catch_up], IDLE_MS, 50.999)
    assert idle([catch_up], IDLE_MS, 51.0)


def test_an_engine_waits_for_all_of_its_sources():
    engine, routed = CatchUp(), CatchUp()
    engine.assigned(("events", 0))
    engine.assigned(("repartition", 0))
    routed.assigned(("orders", 0))
    engine.reached_end(("events", 0), 1.0)
    engine.reached_end(("repartition", 0), 2.0)
    assert not idle([engine, routed], IDLE_MS, 100.0), "the routed topic still has unread input"
    routed.reached_end(("orders", 0), 3.0)
    assert not idle([engine, routed], IDLE_MS, 3.5)
    assert idle([engine, routed], IDLE_MS, 4.0)
    engine.read(("events", 0))            # input after catching up: idle time counts anew
    assert not idle([engine, routed], IDLE_MS, 100.0)


def test_no_source_at_all_is_caught_up():
    """A worker without routed topics: its routed tracker holds nothing back."""
    assert idle([CatchUp()], IDLE_MS, 1.0)


def test_a_tracker_made_with_its_sources_is_behind_until_they_reach_their_ends():
    """Faust makes an engine's tracker on first use, maybe for a tick still in flight from before
    a restart: it must not be idle before its sources were seen at their ends."""
    catch_up = CatchUp([("events", 0), ("repartition", 0)])
    assert not idle([catch_up], IDLE_MS, 1e9)
    catch_up.reached_end(("events", 0), 5.0)
    assert not idle([catch_up], IDLE_MS, 1e9)
    catch_up.reached_end(("repartition", 0), 6.0)
    assert idle([catch_up], IDLE_MS, 7.0)
