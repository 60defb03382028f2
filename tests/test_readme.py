"""The README's commands, run as written, so that they cannot drift from the product.

Every fenced ```bash block of README.md is run in order by bash (-e -o pipefail), in a fresh
directory that holds what the README's commands use from the repository: `.venv/bin/segments` and
`.venv/bin/python` (wrappers running this checkout with the interpreter of the tests), `examples/`.
The conventions, visible in the README itself:
- a block with a comment saying `runs until Ctrl-C` is a long-running command (one terminal of the
  quick start): it is started in the background, waited for until it is ready (READY), and at the
  end stopped with Ctrl-C (SIGINT), when it must exit 0;
- a ```text output block right after a bash block is that block's exact standard output;
- a ```json TOPIC block is a record the quick start says comes out on TOPIC: the run must have
  printed a record with the same fields and the same values but for the instants and ids of the run
  (a membership record's segments are compared by name, their member-since being the run's);
- ```text blocks (usage synopses, illustrations) and ```yaml ones are not run;
- the set-up commands (SETUP) are not run here: CI runs them (scripts/test.sh runs this test).
So that the test does not collide with anything else on the machine, the broker's port 9092 is
replaced by a free one in every block, and the worker's HTTP port (9308 by default) is another free
one, given in its environment variable SEGMENTS_METRICS_PORT.
Every relative link of the README must name a file of the repository.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.kafka.embedded_broker import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SETUP = ("bash scripts/demo.sh", "bash scripts/test.sh")
BACKGROUND = re.compile(r"#.*\bruns until Ctrl-C")
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.M | re.S)
# Fields whose values belong to the run (when it ran, ids derived from that), not to the README.
RUN_VALUES = {"change_id", "at"}
# Fields holding segment -> instant: the segments are the README's claim, the instants the run's.
RUN_INSTANTS = {"segments"}


@dataclass
class Block:
    info: str           # the fence's info string: "bash", "text output", "json segment-changes", ...
    text: str


def blocks(markdown: str) -> list[Block]:
    return [Block(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(markdown)]


def workspace(tmp: Path) -> None:
    """What the README's commands take from a checkout, pointing at this one."""
    bin_dir = tmp / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, tail in (("python", '"$@"'), ("segments", '-m stream.cli "$@"')):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" {tail}\n')
        wrapper.chmod(0o755)
    (tmp / "examples").symlink_to(ROOT / "examples")


def _broker_ready(proc: subprocess.Popen[str], ports: dict[str, int]) -> bool:
    assert proc.stdout is not None
    return proc.stdout.readline().startswith("embedded broker at ")


def _worker_ready(proc: subprocess.Popen[str], ports: dict[str, int]) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        time.sleep(0.3)
        return False


# How to tell that a long-running command of the README is ready for the next ones.
READY: dict[str, Callable[[subprocess.Popen[str], dict[str, int]], bool]] = {
    "segments broker": _broker_ready, "segments worker": _worker_ready}


def start(block: str, tmp: Path, env: dict[str, str], ports: dict[str, int]) -> subprocess.Popen[str]:
    ready = [check for name, check in READY.items() if name in block]
    assert len(ready) == 1, f"a long-running README command the test cannot wait for (READY):\n{block}"
    proc = subprocess.Popen(["bash", "-c", block], cwd=tmp, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    try:
        while not ready[0](proc, ports):
            if proc.poll() is not None:
                raise AssertionError(f"{block} exited with {proc.returncode}:\n{proc.communicate()[0][-3000:]}")
            assert time.monotonic() < deadline, f"{block} not ready within 60 s"
    except BaseException:
        stop(proc)          # not left running after the test
        raise
    return proc


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)    # Ctrl-C in its terminal
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return proc.returncode, out


def records(output: str) -> list[dict[str, object]]:
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                pass
    return found


def _same_claim(key: str, shown: object, printed: object) -> bool:
    if key in RUN_VALUES:
        return True
    if key in RUN_INSTANTS and isinstance(shown, dict) and isinstance(printed, dict):
        return set(shown) == set(printed)
    return shown == printed


def shown_record_was_printed(shown: dict[str, object], printed: list[dict[str, object]]) -> bool:
    return any(set(shown) == set(record) and all(_same_claim(k, v, record[k]) for k, v in shown.items())
               for record in printed)


def test_a_shown_record_matches_a_printed_one_but_for_the_run_s_instants_and_ids():
    shown = {"customer_id": "c-42", "at": "2026-12-02T06:23:42Z", "segments": {"high-value": "2026-12-02T06:23:42Z"}}
    later = {"customer_id": "c-42", "at": "2027-01-05T10:00:00Z", "segments": {"high-value": "2027-01-05T10:00:00Z"}}
    assert shown_record_was_printed(shown, [later])
    # the segments a membership record names are what the README claims: another set is not it
    assert not shown_record_was_printed(shown, [{**later, "segments": {}}])
    assert not shown_record_was_printed(shown, [{**later, "segments": {"high-value": "x", "churned": "x"}}])
    assert not shown_record_was_printed(shown, [{**later, "customer_id": "c-7"}])


def run_readme(markdown: str, tmp: Path) -> tuple[str, list[Block]]:
    """Run every bash block of `markdown` in `tmp`; the standard output of all, and the blocks run."""
    workspace(tmp)
    ports = {"9092": free_port(), "http": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTS_")}
    env["SEGMENTS_METRICS_PORT"] = str(ports["http"])
    found = blocks(markdown)
    background: list[tuple[str, subprocess.Popen[str]]] = []
    output, ran = [], []
    try:
        for i, block in enumerate(found):
            commands = [line.split("#")[0].strip() for line in block.text.splitlines()]
            if block.info != "bash" or all(c in SETUP for c in commands if c):
                continue
            text = block.text.replace("9092", str(ports["9092"]))
            ran.append(block)
            if BACKGROUND.search(text):
                background.append((block.text, start(text, tmp, env, ports)))
                continue
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", text], cwd=tmp, env=env, text=True,
                                  capture_output=True, timeout=120)
            assert done.returncode == 0, f"README block failed ({done.returncode}):\n{block.text}\n{done.stderr}"
            following = found[i + 1] if i + 1 < len(found) else None
            if following is not None and following.info == "text output":
                assert done.stdout == following.text, f"README block's output differs:\n{block.text}"
            output.append(done.stdout)
    finally:
        for text, proc in reversed(background):
            code, out = stop(proc)
            assert code == 0, f"{text} exited {code} on Ctrl-C:\n{out[-3000:]}"
    return "".join(output), ran


def test_relative_links_name_files_of_the_repository():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert targets, "the README links docs/"
    assert [t for t in targets if not (ROOT / t).exists()] == []


@pytest.mark.timeout(240)
def test_readme_commands_run_and_their_claims_hold(tmp_path):
    markdown = README.read_text(encoding="utf-8")
    started = time.monotonic()
    output, ran = run_readme(markdown, tmp_path)
    assert any(BACKGROUND.search(b.text) and "segments worker" in b.text for b in ran), "the quick start runs a worker"
    printed = records(output)
    for block in blocks(markdown):
        if block.info.startswith("json "):
            for line in block.text.splitlines():
                shown = json.loads(line)
                assert shown_record_was_printed(shown, printed), f"not printed by the README's commands: {line}"
    changes = [r for r in printed if "change_id" in r]
    assert {r["cause"] for r in changes} >= {"event", "definition"}, "the quick start shows both causes live"
    assert not [r for r in printed if r.get("customer_id") == "c-7"], "the erased c-7 was in no segment: nothing out"
    assert re.search(r"^c-42,", output, re.M), "segments members lists the quick start's customer"
    assert "customer c-42" in output, "segments explain explains it"
    assert time.monotonic() - started < 180
