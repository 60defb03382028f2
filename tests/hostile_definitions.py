"""Hostile segment definitions, one per class, each as the YAML (flow style) of one definition: a
topic record's value or a `segments define` file as is, or an entry of a segments file
(`as_segments_file`). `POISONS` maps a class to its text and a words its rejection must say."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
import traceback
from pathlib import Path
from collections.abc import Callable

LEAF = "{paid_orders: {gte: 1}}"


def alias_bomb(levels: int = 9, fan: int = 9) -> str:
    """Billion laughs inside `city: {in: ...}`: each list holds `fan` copies of the one before, so a
    few hundred bytes stand for fan**levels strings, and every value of the last lists is a list,
    which the compiler used to show in its error, expanded."""
    parts = [f"{{city: {{in: &a1 [&a0 lol{', *a0' * (fan - 1)}]}}}}"]
    parts += [f"{{city: {{in: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]}}}}" for i in range(2, levels + 1)]
    return f"{{version: 3, when: {{all: [{', '.join(parts)}]}}}}"


def alias_tree(levels: int = 7, fan: int = 9) -> str:
    """A valid condition tree of fan**levels leaves: each `any` holds `fan` copies of the one below."""
    node = f"&t0 {LEAF}"
    for i in range(1, levels + 1):
        node = f"&t{i} {{any: [{node}{f', *t{i - 1}' * (fan - 1)}]}}"
    return f"{{version: 3, when: {node}}}"


def nested_not(depth: int) -> str:
    return "{version: 3, when: " + "{not: " * depth + LEAF + "}" * depth + "}"


def oversized(size: int) -> str:
    """A valid definition of at least `size` bytes: a long `in:` list."""
    cities = ", ".join(f"city-{n}" for n in range(size // 8 + 1))
    return f"{{version: 3, when: {{city: {{in: [{cities}]}}}}}}"


POISONS: dict[str, tuple[str, str]] = {
    "alias-bomb": (alias_bomb(), "expands to more than"),
    "alias-tree-9^7": (alias_tree(), "expands to more than"),
    "nested-10k-not": (nested_not(10_000), "nested more than 64 levels deep"),
    "nested-1k-not": (nested_not(1_000), "nested more than 64 levels deep"),
    "oversized": (oversized(2 << 20), "larger than"),
    "recursive-alias": ("{version: 3, when: &r {all: [*r]}}", "inside its own anchor"),
    "conditions-3^7": (alias_tree(7, 3), "more than 1000 conditions"),
    "conditions-nested-40": (nested_not(40), "nested more than 32 levels deep"),
    "attr-list": ("{version: 3, when: {last_paid_at: {gte: {attr: [x]}}}}", "compare with a literal"),
    "event-list": ("{version: 3, when: {repeated: {event: [x], at_least: 1, within: 1d}}}", "event: one of"),
    "nan": ("{version: 3, when: {paid_total: {gte: .nan}}}", "expected a number value"),
    "custom-inf": ("{version: 3, when: {custom.score: {in: [1, .inf]}}}", "expected a string, number or boolean"),
    "huge-integer": ("{version: " + "9" * 5000 + ", when: " + LEAF + "}", "Exceeds the limit"),
}

# The classes that used to take the machine's memory or never end: run them only under bounds.
EXPANDING = ("alias-bomb", "alias-tree-9^7", "conditions-3^7")


def as_segments_file(definition: str, name: str = "poisoned") -> str:
    return f"segments:\n  {name}: {definition}\n"


MEMORY_LIMIT = 1 << 30


def run_bounded(args: list[str], timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """A command with at most MEMORY_LIMIT of address space beyond what Python starts with and
    `timeout` seconds: a regression fails the test instead of eating the machine."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT + (512 << 20), MEMORY_LIMIT + (512 << 20)))
    return subprocess.run(args, capture_output=True, timeout=timeout, preexec_fn=limit, cwd=cwd)


def in_bounded_child(body: Callable[[], None], timeout: float = 60) -> None:
    """`body` in a forked child that may grow by at most MEMORY_LIMIT and run `timeout` seconds:
    its failure (an assertion, MemoryError, an abort, the timeout) fails the caller, and a
    regression that expands a document takes down the child only, not the test session."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # the child: never returns into pytest
        os.close(read)
        code = 0
        try:
            with open("/proc/self/statm") as statm:
                used = int(statm.read().split()[0]) * resource.getpagesize()
            resource.setrlimit(resource.RLIMIT_AS, (used + MEMORY_LIMIT, resource.getrlimit(resource.RLIMIT_AS)[1]))
            body()
        except BaseException:
            os.write(write, traceback.format_exc()[-8000:].encode(errors="replace"))
            code = 1
        os._exit(code)
    os.close(write)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            raise AssertionError(f"did not finish within {timeout}s")
        time.sleep(0.02)
    with os.fdopen(read, "rb") as report:
        failure = report.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    assert code == 0, f"exit {code}:\n{failure}"
