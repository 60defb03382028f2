"""`segments replay` (stream.cli.replay), run as the real console script in a subprocess: unusable
arguments exit 2, I/O errors exit 1, each named and without a traceback; --segments is the catalog used."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.replay_runs import EXAMPLE, jsonl, segments


@pytest.mark.parametrize("until", ["yesterday", "2025-03-01T00:00:00", "2025-13-01T00:00:00Z", ""])
def test_bad_until_exits_2(tmp_path, until):
    out = tmp_path / "out.jsonl"
    result = segments("--input", str(EXAMPLE), "--output", str(out), "--until", until)
    assert result.returncode == 2
    assert b"--until" in result.stderr
    assert not out.exists()


def test_invalid_segments_file_exits_2_naming_the_segment(tmp_path):
    seg = tmp_path / "segs.yaml"
    seg.write_text("segments:\n  good:\n    when: {paid_orders: {gte: 1}}\n"
                   "  vip-buyers:\n    when: {paid_order: {gte: 1}}\n  other:\n    version: 0\n"
                   "    when: {paid_orders: {gte: 1}}\n")
    out = tmp_path / "out.jsonl"
    result = segments("--input", str(EXAMPLE), "--output", str(out), "--segments", str(seg))
    assert result.returncode == 2
    err = " ".join(result.stderr.decode().split())      # the console may wrap long lines
    assert "segment 'vip-buyers'" in err and "paid_order" in err
    assert "segment 'other'" in err and "version" in err
    assert not out.exists()
    assert b"Traceback" not in result.stderr


def test_missing_segments_file_exits_2(tmp_path):
    result = segments("--input", str(EXAMPLE), "--output", "-", "--segments", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert b"nope.yaml" in result.stderr
    assert result.stdout == b""


def test_segments_file_with_impossible_date_exits_2(tmp_path):
    seg = tmp_path / "segs.yaml"
    seg.write_text("segments:\n  bday:\n    when: {birth_date: {eq: 1990-13-01}}\n")
    result = segments("--input", str(EXAMPLE), "--output", "-", "--segments", str(seg))
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr


def test_custom_segments_file_is_used(tmp_path):
    seg = tmp_path / "segs.yaml"
    seg.write_text("segments:\n  kz:\n    version: 4\n    when: {country: {eq: KZ}}\n")
    result = segments("--input", str(EXAMPLE), "--output", "-", "--segments", str(seg))
    assert result.returncode == 0
    rows = [(c["customer_id"], c["segment"], c["change"], c["event_id"], c["definition_version"])
            for c in jsonl(result.stdout)]
    assert rows == [("c-aigerim", "kz", "entered", "u-1", 4), ("c-aigerim", "kz", "exited", "erase-1", 4)]


def test_missing_input_exits_1(tmp_path):
    out = tmp_path / "out.jsonl"
    result = segments("--input", str(tmp_path / "missing.jsonl"), "--output", str(out))
    assert result.returncode == 1
    assert b"missing.jsonl" in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize("where", ["no-such-dir", "a-directory"])
def test_unwritable_output_exits_1(tmp_path, where):
    out = tmp_path / "no" / "such" / "out.jsonl" if where == "no-such-dir" else tmp_path
    result = segments("--input", str(EXAMPLE), "--output", str(out))
    assert result.returncode == 1
    assert str(out).encode() in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_that_fails_on_write_exits_1():
    result = segments("--input", str(EXAMPLE), "--output", "/dev/full", "--dead-letter", os.devnull)
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr


def test_unwritable_dead_letter_file_exits_1(tmp_path):
    result = segments("--input", str(EXAMPLE), "--output", os.devnull,
                      "--dead-letter", str(tmp_path / "no" / "dead.jsonl"))
    assert result.returncode == 1
    assert b"dead.jsonl" in result.stderr


def test_missing_required_arguments_exit_2():
    assert segments("--input", str(EXAMPLE)).returncode == 2
    assert segments("--output", "-").returncode == 2
