"""What the replay driver (stream.replay.driver) writes, through `segments replay` run as the real
console script in a subprocess: the changes, the dead letters, the summary. The command's exit codes
and arguments are tested in tests/cli/test_replay.py."""
from __future__ import annotations

import base64
import json
import os
import subprocess

import msgspec
import pytest

from tests.helpers import HOUR, decode, event_bytes, instant, iso, run
from tests.replay_runs import EXAMPLE, jsonl, segments, summary, write_events


# ------------------------------------------------------------------------------------------------
# the example

@pytest.fixture(scope="module")
def example_run() -> subprocess.CompletedProcess:
    return segments("--input", str(EXAMPLE), "--output", "-")


def test_example_exit_code_and_summary(example_run):
    assert example_run.returncode == 0, example_run.stderr
    assert summary(example_run.stderr) == {"events": "16", "dead letters": "4", "duplicates": "1",
                                           "late": "0", "changes": "14"}


def test_example_changes(example_run):
    changes = jsonl(example_run.stdout)
    assert len(changes) == 14
    rows = [(c["customer_id"], c["segment"], c["change"], c["at"], c["cause"], c["event_id"]) for c in changes]
    # the cart was abandoned at 19:30 +03:00, i.e. 16:30Z; it expires exactly 24 hours later, by time
    assert ("c-dmitry", "cart-abandoner", "entered", "2025-03-05T16:30:00Z", "event", "k-3") in rows
    assert ("c-dmitry", "cart-abandoner", "exited", "2025-03-06T16:30:00Z", "time", None) in rows
    # three views of one phone, then ordering it
    assert ("c-aigerim", "window-shopper", "entered", "2025-03-04T12:00:00Z", "event", "v-3") in rows
    assert ("c-aigerim", "window-shopper", "exited", "2025-03-04T12:07:00Z", "event", "o-1") in rows
    # the duplicated payment p-1 moved her once; new-customer expired 30 days later, before erasure
    assert [r for r in rows if r[5] == "p-1"] == [
        ("c-aigerim", "high-value", "entered", "2025-03-04T12:08:00Z", "event", "p-1"),
        ("c-aigerim", "new-customer", "entered", "2025-03-04T12:08:00Z", "event", "p-1")]
    assert ("c-aigerim", "new-customer", "exited", "2025-04-03T12:08:00Z", "time", None) in rows
    assert rows[-1] == ("c-aigerim", "high-value", "exited", "2025-04-10T00:00:00Z", "event", "erase-1")
    # a cancelled second order takes c-marat back from repeat-buyer to new-customer
    assert [r[1:3] for r in rows if r[0] == "c-marat" and r[3] == "2025-03-22T08:00:00Z"] == [
        ("new-customer", "entered"), ("repeat-buyer", "exited")]
    assert all(c["definition_version"] == 1 and len(c["change_id"]) == 32 for c in changes)
    assert len({c["change_id"] for c in changes}) == 14
    # output order is stream order
    assert [c["at"] for c in changes] == sorted(c["at"] for c in changes)


def test_example_dead_letters_on_stderr(example_run):
    dead = [json.loads(line) for line in example_run.stderr.splitlines() if line.startswith(b"{")]
    assert [d["line"] for d in dead] == [16, 17, 18, 19]
    reasons = [d["reason"] for d in dead]
    assert "amount" in reasons[0]
    assert "occurred_at" in reasons[1] and "timezone" in reasons[1]
    assert "gift_card_bought" in reasons[2]
    assert reasons[3].startswith("not JSON")
    lines = EXAMPLE.read_bytes().splitlines()
    assert [d["raw"].encode() for d in dead] == [lines[15], lines[16], lines[17], lines[18]]


def test_dead_letter_file(tmp_path):
    dead_file = tmp_path / "dead.jsonl"
    out_file = tmp_path / "out.jsonl"
    result = segments("--input", str(EXAMPLE), "--output", str(out_file), "--dead-letter", str(dead_file))
    assert result.returncode == 0
    assert result.stdout == b""
    assert b'"reason"' not in result.stderr                     # dead letters went to the file only
    assert summary(result.stderr)["dead letters"] == "4"
    assert [d["line"] for d in jsonl(dead_file.read_bytes())] == [16, 17, 18, 19]
    assert len(jsonl(out_file.read_bytes())) == 14


def test_stdin_and_stdout_dash(example_run):
    piped = segments("--input", "-", "--output", "-", "--dead-letter", os.devnull, stdin=EXAMPLE.read_bytes())
    assert piped.returncode == 0
    assert piped.stdout == example_run.stdout


def test_output_is_byte_identical_across_runs_and_hash_seeds(tmp_path):
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"out-{seed}.jsonl"
        result = segments("--input", str(EXAMPLE), "--output", str(out), "--until", "2025-12-31T00:00:00Z",
                          "--dead-letter", str(tmp_path / f"dead-{seed}.jsonl"), env={"PYTHONHASHSEED": seed})
        assert result.returncode == 0
        outs.append((out.read_bytes(), (tmp_path / f"dead-{seed}.jsonl").read_bytes()))
    assert outs[0] == outs[1]
    assert len(outs[0][0].splitlines()) > 14


# ------------------------------------------------------------------------------------------------
# --until

def test_until_fires_timers_up_to_and_including_that_instant(tmp_path):
    t = instant("2025-03-05T16:30:00.000001Z")
    events = write_events(tmp_path / "in.jsonl", event_bytes("cart_abandoned", "c", t, "k", cart_id="x", value=1.0))
    expiry = t + 24 * HOUR
    before = segments("--input", str(events), "--output", "-", "--until", iso(expiry - 1))
    at = segments("--input", str(events), "--output", "-", "--until", iso(expiry))
    offset = segments("--input", str(events), "--output", "-", "--until", "2025-03-06T19:30:00.000001+03:00")
    assert before.returncode == at.returncode == offset.returncode == 0
    assert [c["change"] for c in jsonl(before.stdout)] == ["entered"]
    exit_ = jsonl(at.stdout)[-1]
    assert (exit_["change"], exit_["at"], exit_["cause"], exit_["event_id"]) == ("exited", iso(expiry), "time", None)
    assert offset.stdout == at.stdout          # the same instant written with an offset
    earlier = segments("--input", str(events), "--output", "-", "--until", "2000-01-01T00:00:00Z")
    assert earlier.returncode == 0 and earlier.stdout == before.stdout   # time never goes back


def test_example_until_end_of_year(example_run):
    result = segments("--input", str(EXAMPLE), "--output", "-", "--until", "2025-12-31T00:00:00Z")
    assert result.returncode == 0
    assert result.stdout.startswith(example_run.stdout)
    extra = jsonl(result.stdout[len(example_run.stdout):])
    assert [(c["customer_id"], c["segment"], c["change"], c["at"], c["cause"]) for c in extra] == [
        ("c-marat", "churned", "entered", "2025-09-02T10:01:00Z", "time")]     # 180 days after 03-06 10:01


# ------------------------------------------------------------------------------------------------
# bad input never changes the exit code

def test_bytes_that_are_not_utf8_come_back_as_raw_base64(tmp_path):
    garbage = b"\xff\xfe not json \x80\x00 at all"
    good = event_bytes("order_paid", "c", "2025-03-01T00:00:00Z", "p-1", order_id="o", amount=1.0)
    text = "{\"type\": \"\u0441\u043e\u0431\u044b\u0442\u0438\u0435\"}".encode("utf-8")   # UTF-8, unknown type
    src = write_events(tmp_path / "in.jsonl", garbage, good, text)
    dead_file = tmp_path / "dead.jsonl"
    result = segments("--input", str(src), "--output", "-", "--dead-letter", str(dead_file))
    assert result.returncode == 0
    dead = jsonl(dead_file.read_bytes())
    assert [d["line"] for d in dead] == [1, 3]
    assert "raw" not in dead[0] and base64.b64decode(dead[0]["raw_base64"]) == garbage
    assert "raw_base64" not in dead[1] and dead[1]["raw"].encode("utf-8") == text
    assert [c["event_id"] for c in jsonl(result.stdout)] == ["p-1"]   # the good line in between still counts


def test_invalid_utf8_inside_a_json_string_is_a_dead_letter(tmp_path):
    bad = b'{"type":"product_viewed","event_id":"e","customer_id":"c\xff","occurred_at":"2025-03-01T00:00:00Z",' \
          b'"product_id":"p","category":"x"}'
    good = event_bytes("order_paid", "c", "2025-03-01T00:00:00Z", "p-1", order_id="o", amount=1.0)
    src = write_events(tmp_path / "in.jsonl", bad, good)
    dead_file = tmp_path / "dead.jsonl"
    result = segments("--input", str(src), "--output", "-", "--dead-letter", str(dead_file))
    assert result.returncode == 0, result.stderr[-500:]
    dead = jsonl(dead_file.read_bytes())
    assert [d["line"] for d in dead] == [1]
    assert "UTF-8" in dead[0]["reason"]
    assert base64.b64decode(dead[0]["raw_base64"]) == bad
    assert [c["event_id"] for c in jsonl(result.stdout)] == ["p-1"]


@pytest.mark.parametrize("when", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"],
                         ids=["after-9999", "before-0001"])
def test_instant_outside_the_calendar_does_not_kill_the_replay(tmp_path, when):
    out_of_range = event_bytes("order_paid", "c-far", when, "p-far", order_id="o", amount=1.0)
    good = event_bytes("order_paid", "c", "2025-03-01T00:00:00Z", "p-1", order_id="o", amount=1.0)
    src = write_events(tmp_path / "in.jsonl", out_of_range, good)
    result = segments("--input", str(src), "--output", "-", "--dead-letter", str(tmp_path / "dead.jsonl"))
    assert b"Traceback" not in result.stderr, result.stderr[-300:]
    assert result.returncode == 0
    assert "p-1" in [c["event_id"] for c in jsonl(result.stdout)]


def test_only_bad_lines_still_exit_0(tmp_path):
    src = write_events(tmp_path / "in.jsonl", b"nope", b"[]", b"{}", b'{"type":"order_paid"}', b"\x00\x01")
    result = segments("--input", str(src), "--output", "-")
    assert result.returncode == 0
    assert result.stdout == b""
    assert summary(result.stderr)["dead letters"] == "5"
    assert summary(result.stderr)["events"] == "0"


def test_blank_lines_crlf_and_a_missing_final_newline(tmp_path):
    a = event_bytes("cart_abandoned", "c", "2025-03-01T00:00:00Z", "k-1", cart_id="x", value=1.0)
    b = event_bytes("order_paid", "d", "2025-03-01T01:00:00Z", "p-1", order_id="o", amount=1.0)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n" + a + b"\r\n\r\n" + b"oops\r\n" + b)
    result = segments("--input", str(src), "--output", "-")
    assert result.returncode == 0
    assert [c["event_id"] for c in jsonl(result.stdout)] == ["k-1", "p-1"]
    dead = [json.loads(line) for line in result.stderr.splitlines() if line.startswith(b"{")]
    assert [(d["line"], d["raw"]) for d in dead] == [(4, "oops")]
    assert summary(result.stderr)["events"] == "2"


# ------------------------------------------------------------------------------------------------
# the driver and the engine agree

def test_replay_equals_engine(tmp_path):
    lines = [event_bytes("order_paid", "c", "2025-03-01T00:00:00Z", "a", order_id="o-1", amount=100000.0),
             event_bytes("product_viewed", "c", "2025-03-02T00:00:00+05:00", "b", product_id="p", category="x"),
             event_bytes("cart_abandoned", "d", "2025-03-03T00:00:00.5Z", "c", cart_id="k", value=3.5)]
    src = write_events(tmp_path / "in.jsonl", *lines)
    until = instant("2025-06-01T00:00:00Z")
    result = segments("--input", str(src), "--output", "-", "--until", iso(until))
    expected = run([decode(line) for line in lines], until=until)
    assert len(expected) == 5
    assert jsonl(result.stdout) == [msgspec.structs.asdict(c) for c in expected]


def test_far_future_events_and_overlong_lines_are_dead_letters_by_default(tmp_path):
    """The worker's limits, with the worker's defaults: a year-8999 event (more than 6 h ahead of the
    clock) would fire every timer; `--max-future-skew-ms 0` lifts the bound. A line over
    --max-message-bytes is a dead letter keeping its size and a prefix."""
    future = event_bytes("order_paid", "c", "8999-01-01T00:00:00Z", "p-far", order_id="o-far", amount=1.0)
    good = event_bytes("order_paid", "c", "2025-03-01T00:00:00Z", "p-1", order_id="o", amount=1.0)
    long = event_bytes("order_paid", "c", "2025-03-01T00:00:00Z", "p-2", order_id="o-long", amount=1.0,
                       note="x" * 5000)   # an unknown field: only its size is wrong
    src = write_events(tmp_path / "in.jsonl", future, good, long)
    dead_file = tmp_path / "dead.jsonl"
    result = segments("--input", str(src), "--output", "-", "--dead-letter", str(dead_file),
                      "--max-message-bytes", "4096")
    assert result.returncode == 0, result.stderr[-300:]
    dead = jsonl(dead_file.read_bytes())
    assert [d["line"] for d in dead] == [1, 3]
    assert "max_future_skew_ms" in dead[0]["reason"]
    assert dead[1]["bytes"] == len(long) and dead[1]["truncated"] is True and long.startswith(dead[1]["raw"].encode())
    assert {c["event_id"] for c in jsonl(result.stdout)} == {"p-1"}
    lifted = segments("--input", str(src), "--output", "-", "--dead-letter", str(dead_file),
                      "--max-future-skew-ms", "0")
    assert [d["line"] for d in jsonl(dead_file.read_bytes())] == []
    assert "p-far" in {c["event_id"] for c in jsonl(lifted.stdout)}
