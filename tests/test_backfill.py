"""segments backfill without a broker: the offset verification and argument checks."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.backfill import ArgumentProblems, parse_offsets, trusted_start
from stream.cli import main


@given(st.lists(st.integers(0, 50), max_size=30), st.integers(0, 5), st.integers(-1, 60), st.integers(-1, 40))
def test_a_verified_start_never_skips_a_record_at_or_after_the_target(stamps, low, target, answer):
    """Record timestamps ascending (as with LogAppendTime) from offset `low`; whatever the broker
    answers, no record stamped at or after the target lies before the start, and a right answer
    is kept (the fast path on Kafka)."""
    stamps.sort()
    end = low + len(stamps)
    asked = end if answer < 0 or answer > end else answer     # -1: no record that late, i.e. the end
    before = stamps[asked - 1 - low] if asked > low else None
    start = trusted_start(answer, low, end, before, target)
    assert low <= start <= end
    assert all(ts < target for ts in stamps[:start - low])
    right = next((low + i for i, ts in enumerate(stamps) if ts >= target), end)
    if answer == right or (answer == -1 and right == end):
        assert start == right


@pytest.mark.parametrize("answer, before, expected", [
    (0, None, 3),            # the embedded broker's 0, below the first offset: read from the first
    (3, None, 3),
    (7, 999, 7),             # the record before is older than the target: trusted
    (7, 1000, 3),            # as old as the target: the answer may skip records, read from the first
    (7, None, 3),            # nothing readable before it (a transaction marker): not trusted
    (-1, 999, 10),           # no record that late, and the last one is older: start at the end
    (-1, 1000, 3),
    (12, 999, 10),           # past the end: the end, verified like any answer
])
def test_trusted_start(answer, before, expected):
    assert trusted_start(answer, low=3, end=10, before_ms=before, target_ms=1000) == expected


def test_offsets_parse_topics_with_colons_and_dots():
    assert parse_offsets("a.b:0=5, a.b:1=0,c-d:12=7") == {("a.b", 0): 5, ("a.b", 1): 0, ("c-d", 12): 7}


def test_every_bad_offset_item_is_named():
    with pytest.raises(ArgumentProblems) as caught:
        parse_offsets("a:0=5,a:x=1,b=3,a:0=6,:1=2,a:1=-4")
    assert len(caught.value.problems) == 5
    text = "\n".join(caught.value.problems)
    for item in ("'a:x=1'", "'b=3'", "a:0 is given more than once", "':1=2'", "'a:1=-4'"):
        assert item in text


def test_unusable_arguments_exit_2_with_every_problem_listed(capsys):
    code = main(["backfill", "--output", "out.jsonl", "--from", "yesterday", "--until", "2025-13-01",
                 "--seek-margin", "0", "--max-message-bytes", "0"])
    err = capsys.readouterr().err
    assert code == 2
    for expected in ("--max-message-bytes: must be positive", "--from: not an RFC 3339 timestamp: 'yesterday'",
                     "--until: not an RFC 3339 timestamp: '2025-13-01'", "--seek-margin: a duration is"):
        assert expected in err, err


def test_the_live_namespace_is_never_written(capsys):
    code = main(["backfill", "--until", "2025-02-01T00:00:00Z", "--from", "2025-03-01T00:00:00Z",
                 "--handoff", "segments", "--output", "kafka:segment-changes"])
    err = capsys.readouterr().err
    assert code == 2
    for expected in ("--bootstrap-servers: a backfill reads the history of an existing cluster",
                     "--handoff needs --until now", "is not after --from",
                     "--handoff segments: that is the live workers' group",
                     "'segment-changes' is an input or a live worker topic"):
        assert expected in err, err
    code = main(["backfill", "--bootstrap-servers", "127.0.0.1:1", "--handoff", "new",
                 "--output", "kafka:new-state-changelog"])
    assert code == 2
    assert "'new-state-changelog' is an input or a live worker topic" in capsys.readouterr().err
