"""`segments replay` run as a user runs it, in a subprocess from the repository's root, and readers
of what it writes: for the tests of the replay driver's output and of the command."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.helpers import segments_cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "shop.jsonl"


def segments(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*segments_cli(), "replay", *args], input=stdin, capture_output=True, timeout=60,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def summary(stderr: bytes) -> dict[str, str]:
    """The summary block on stderr: label -> first value."""
    found = {}
    for line in stderr.decode("utf-8", "replace").splitlines():
        for label in ("events", "dead letters", "duplicates", "late", "changes"):
            if line.startswith(label + " ") and line[len(label):].strip()[:1].isdigit():
                found[label] = line[len(label):].split()[0]
    return found


def write_events(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path
