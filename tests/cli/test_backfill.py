"""`segments backfill` (stream.cli.backfill) without a broker: its flags, the offsets it parses, and
the arguments it refuses with exit 2, every problem listed."""
from __future__ import annotations

import argparse

import pytest

from stream.cli.backfill import ArgumentProblems, add_parser, parse_offsets
from stream.cli.main import main
from stream.errors import Problems


def test_offsets_parse_topics_with_colons_and_dots():
    assert parse_offsets("a.b:0=5, a.b:1=0,c-d:12=7") == {("a.b", 0): 5, ("a.b", 1): 0, ("c-d", 12): 7}


def test_every_bad_offset_item_is_named():
    with pytest.raises(ArgumentProblems) as caught:
        parse_offsets("a:0=5,a:x=1,b=3,a:0=6,:1=2,a:1=-4")
    assert len(caught.value.problems) == 5
    text = "\n".join(caught.value.problems)
    assert str(caught.value) == text and isinstance(caught.value, Problems)
    for item in ("'a:x=1'", "'b=3'", "a:0 is given more than once", "':1=2'", "'a:1=-4'"):
        assert item in text


def test_unusable_arguments_exit_2_with_every_problem_listed(capsys):
    code = main(["backfill", "--output", "out.jsonl", "--from", "yesterday", "--until", "2025-13-01",
                 "--seek-margin", "0", "--max-message-bytes", "0", "--jobs", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("segments backfill: unusable arguments:\n  - "), err
    for expected in ("--max-message-bytes: must be positive", "--from: not an RFC 3339 timestamp: 'yesterday'",
                     "--until: not an RFC 3339 timestamp: '2025-13-01'", "--seek-margin: a duration is",
                     "--jobs: '0' is not a whole number, 1 or more"):
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
    code = main(["backfill", "--bootstrap-servers", "127.0.0.1:1", "--output", "kafka:segment-definitions"])
    assert code == 2
    assert "'segment-definitions' is an input or a live worker topic" in capsys.readouterr().err


def test_the_backfill_subcommand_runs_the_backfill(capsys):
    """What `segments` registers through stream.cli.backfill.add_parser: the flags' defaults, and
    the command the parsed flags run (here it refuses them, as `segments backfill` does)."""
    parser = argparse.ArgumentParser(prog="segments")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["backfill", "--output", "out.jsonl", "--from", "yesterday"])
    assert (args.until, args.seek_margin, args.isolation, args.handoff, args.jobs) == \
        ("now", "1h", "read_committed", None, None)
    assert args.run(args) == 2
    assert "--from: not an RFC 3339 timestamp: 'yesterday'" in capsys.readouterr().err
