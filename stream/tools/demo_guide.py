"""What `segments demo` prints so that its worker can be looked at while it runs: its state dir,
group and broker, every HTTP route its worker serves (as the server itself lists them), and
commands, CLI and curl, that work against it with a customer id from the run.
"""
from __future__ import annotations

import os
import secrets
import shlex
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from stream.runtime.settings import WorkerConfig

TOKEN_FILE = "http-token"


def make_token_file(work: Path) -> Path:
    """A fresh bearer token in `work`, readable by this user only (the personal-data routes' key)."""
    path = work / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_hex(32) + "\n")
    return path


def served_routes(url: str, timeout: float = 15.0) -> list[str]:
    """The worker's own list of its routes (GET / in plain text), once its server answers; [] if it
    does not in time, or answers otherwise."""
    deadline = time.monotonic() + timeout
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # this machine: never via a proxy
    while True:
        try:
            with direct.open(url + "/", timeout=2) as answer:
                if answer.headers.get_content_type() != "text/plain":
                    return []
                return [line.strip() for line in answer.read().decode().splitlines()[1:] if line.strip()]
        except (OSError, urllib.error.URLError):
            if time.monotonic() >= deadline:
                return []
            time.sleep(0.1)


def where_lines(settings: WorkerConfig, url: str, token_file: Path, routes: list[str]) -> list[str]:
    lines = [f"state dir:  {settings.state_dir}",
             f"group id:   {settings.group_id}",
             f"bootstrap:  {settings.bootstrap_servers}",
             f"HTTP:       {url}, personal-data routes ([token]) with the bearer token in {token_file}",
             f"console:    {url}/console/ (a browser; log in with the token in {token_file})"]
    return lines + [f"  {route}" for route in routes or [f"(not listed here: see {url}/)"]]


def command_lines(settings: WorkerConfig, url: str, token_file: Path, customer: str, segment: str) -> list[str]:
    """Commands that work while the demo runs, about `customer` (from the run) and `segment`."""
    stores = f"--state-dir {shlex.quote(str(settings.state_dir))} --group-id {shlex.quote(settings.group_id)}"
    auth = f'-H "Authorization: Bearer $(cat {shlex.quote(str(token_file))})"'
    who, which = shlex.quote(customer), shlex.quote(segment)
    segments = program()
    return [f"{segments} explain {who} {stores}",
            f"{segments} members {which} {stores}",
            f"curl -s {auth} {url}/customers/{who}",
            f"curl -s {auth} '{url}/segments/{segment}/members?format=csv'",
            f"curl -s {url}/metrics"]


def program() -> str:
    """How to call `segments` from any directory: its name when that is on PATH, else its path (or
    `python -m stream.cli` when it runs so)."""
    here = os.path.abspath(sys.argv[0])
    if os.path.basename(here) != "segments":
        return f"{shlex.quote(sys.executable)} -m stream.cli"
    found = shutil.which("segments")
    return "segments" if found is not None and os.path.abspath(found) == here else shlex.quote(here)
