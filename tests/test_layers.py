"""The layout of stream/ holds: no import cycle, dependencies point down the layers, and the
heavy libraries stay in the package that owns them.

Every import counts: module level, inside a function (a lazy import is still a dependency), under
`if TYPE_CHECKING:`, and `from package import name` where the name is a module. The checker reads
the source (ast), imports nothing, and is itself tested below on small synthetic packages.
"""
from __future__ import annotations

import ast
import sys
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = "stream"
SOURCE = Path(__file__).resolve().parent.parent / ROOT

# Bottom first: a module may import its own package or a package of a lower rank. Packages of the
# same rank (the two runtimes) never import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("model",),
    ("rules",),
    ("engine",),
    ("storage",),
    ("runtime",),
    ("replay",),
    ("definitions",),
    ("inspect",),
    ("kafka",),
    ("console",),
    ("worker", "faust_runtime"),
    ("backfill",),
    ("tools",),
    ("cli",),
)
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}

# Third-party (and stdlib) libraries only some layers may use: library -> the layers that may.
KAFKA_CLIENTS = frozenset({"kafka", "worker", "faust_runtime", "backfill", "tools", "cli"})
ONLY_IN: dict[str, frozenset[str]] = {
    "rocksdict": frozenset({"storage"}),
    "confluent_kafka": KAFKA_CLIENTS,
    "faust": frozenset({"faust_runtime"}),
    "mode": frozenset({"faust_runtime"}),        # Faust's service library
    "aiokafka": frozenset({"faust_runtime"}),    # Faust's Kafka client
    # A command parses its own flags; below the CLI, settings and requests are built from typed values.
    "argparse": frozenset({"cli"}),
}
# The standard library's ways to reach a clock, a file, a socket, a thread or a process: the pure
# core (the contracts and the engine) gets time and input from its drivers.
IO_MODULES = frozenset({"time", "os", "io", "pathlib", "shutil", "tempfile", "socket", "select", "selectors",
                        "ssl", "http", "urllib", "asyncio", "threading", "multiprocessing", "concurrent",
                        "subprocess", "signal", "logging", "sched", "random", "secrets", "uuid", "sqlite3"})
NEVER_IN: dict[str, frozenset[str]] = {
    "model": IO_MODULES,
    "engine": IO_MODULES,
}
# Calls that would hide an import from this checker, or do I/O without one.
DYNAMIC_IMPORTS = frozenset({"import_module", "__import__"})
# Layers that may use the standard library and these libraries only.
ONLY_STDLIB_AND: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "model": frozenset({"msgspec", "cython"}),   # cython: pure-mode types of the compiled modules (setup.py)
}


@dataclass(frozen=True)
class Import:
    importer: str        # dotted module name, e.g. stream.model.state
    target: str          # a module of the package (dotted), or a library's top-level name


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_under(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package at `root`."""
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: Iterable[str]) -> list[Import]:
    """Every import in one module's source: modules of the package by their full name, anything
    else by its top-level name."""
    known = set(modules)
    top = name.partition(".")[0]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def add(target: str) -> None:
        library = target.partition(".")[0]
        if library != top:
            found.append(Import(name, library))
            return
        while target not in known and "." in target:     # a name inside a module: the module
            target = target.rpartition(".")[0]
        found.append(Import(name, target))

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if origin == "__future__":
                continue
            for alias in node.names:
                candidate = f"{origin}.{alias.name}"
                add(candidate if candidate in known else origin)
    return found


def layer_of(module: str) -> str:
    """stream.model.state -> model; stream.errors -> errors; the root package itself -> errors (it
    holds a docstring only, so it sits at the bottom)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "errors"


def short(module: str) -> str:
    return module.removeprefix(ROOT + ".")


def layer_violations(found: Iterable[Import]) -> list[str]:
    problems = []
    stdlib = sys.stdlib_module_names
    for imp in found:
        source = layer_of(imp.importer)
        where = f"{short(imp.importer)} -> {short(imp.target)}"
        if source not in RANK:
            problems.append(f"{where} (layer {source} is not in LAYERS: give it its place)")
            continue
        if imp.target.partition(".")[0] == ROOT:
            target = layer_of(imp.target)
            if target == source:
                continue
            if target not in RANK or RANK[target] >= RANK[source]:
                problems.append(f"{where} (layer {source} may not import layer {target})")
            continue
        library = imp.target
        if library in ONLY_IN and source not in ONLY_IN[library]:
            problems.append(f"{where} (layer {source} may not import {library})")
        elif library in NEVER_IN.get(source, ()):
            problems.append(f"{where} (layer {source} may not import {library})")
        elif source in ONLY_STDLIB_AND and library not in stdlib and library not in ONLY_STDLIB_AND[source]:
            problems.append(f"{where} (layer {source} may not import {library})")
    return sorted(set(problems))


def import_graph(found: Iterable[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in found:
        graph.setdefault(imp.importer, set())
        if imp.target.partition(".")[0] == ROOT and imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(_cycle_in(graph, component) for component in components)


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """The shortest way from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, set()) & component):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle in the component {sorted(component)}")


def scan(root: Path) -> list[Import]:
    modules = modules_under(root)
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


# ---- the product -------------------------------------------------------------------------------------

def test_no_import_cycle():
    found = cycles(import_graph(scan(SOURCE)))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(map(short, cycle)) for cycle in found)


def test_every_import_points_down_the_layers():
    problems = layer_violations(scan(SOURCE))
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def hidden_dependencies(root: Path) -> list[str]:
    """Imports the graph cannot see (importlib.import_module, __import__) anywhere, and open() in
    the pure core."""
    problems = []
    for name, path in modules_under(root).items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called in DYNAMIC_IMPORTS:
                problems.append(f"{short(name)}:{node.lineno}: {called}() (import it by name)")
            elif called == "open" and isinstance(node.func, ast.Name) and layer_of(name) in ("model", "engine"):
                problems.append(f"{short(name)}:{node.lineno}: open() in the pure core")
    return problems


def test_no_import_hidden_from_the_graph_and_no_file_opened_in_the_core():
    problems = hidden_dependencies(SOURCE)
    assert not problems, "\n".join(problems)


def test_every_package_has_a_layer():
    packages = {layer_of(name) for name in modules_under(SOURCE)}
    assert packages <= set(RANK), f"packages without a layer: {sorted(packages - set(RANK))}"


def test_no_test_module_imports_another():
    """Shared fixtures live in conftest.py, shared helpers in modules not named test_*."""
    tests = Path(__file__).resolve().parent
    modules = modules_under(tests)
    problems = [f"{short_test(imp.importer)} -> {short_test(imp.target)}"
                for name, path in modules.items() for imp in imports_of(name, path, modules)
                if imp.target.startswith("tests.") and imp.target.rpartition(".")[2].startswith("test_")]
    assert not problems, "test modules importing test modules:\n" + "\n".join(sorted(set(problems)))


def test_tests_import_their_helpers_as_the_tests_package():
    """`import helpers` works only with tests/ put on sys.path by hand: helpers are tests.helpers."""
    tests = Path(__file__).resolve().parent
    modules = modules_under(tests)
    local = {path.stem for path in tests.rglob("*.py")} | {path.name for path in tests.rglob("*") if path.is_dir()}
    problems = sorted({f"{short_test(imp.importer)} -> {imp.target}"
                       for name, path in modules.items() for imp in imports_of(name, path, modules)
                       if imp.target.partition(".")[0] in local - {"tests"} - sys.stdlib_module_names})
    assert not problems, "tests importing helpers through sys.path:\n" + "\n".join(problems)


def short_test(module: str) -> str:
    return module.removeprefix("tests.")


# ---- the checker, on synthetic packages ------------------------------------------------------------------

def package(tmp_path: Path, files: dict[str, str]) -> Path:
    """A package named like the product's (so the checker's rules apply) from path -> source."""
    root = tmp_path / ROOT
    for relative, text in {"__init__.py": "", **files}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        if path.parent != root and not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
    return root


def test_checker_finds_a_cycle_through_three_modules(tmp_path):
    root = package(tmp_path, {
        "model/a.py": "from stream.engine.b import B\n",
        "engine/b.py": "import stream.runtime.c\n",
        "runtime/c.py": "from stream.model import a\n",
        "runtime/d.py": "from stream.model.a import A\n",     # into the cycle, not part of it
    })
    assert cycles(import_graph(scan(root))) == [["stream.engine.b", "stream.runtime.c", "stream.model.a",
                                                "stream.engine.b"]]


def test_checker_finds_no_cycle_in_a_tree(tmp_path):
    root = package(tmp_path, {"model/a.py": "", "engine/b.py": "from stream.model import a\n",
                              "runtime/c.py": "from stream.model.a import x\nfrom stream.engine import b\n"})
    assert cycles(import_graph(scan(root))) == []


def test_checker_finds_an_upward_import_also_a_lazy_one(tmp_path):
    root = package(tmp_path, {
        "model/state.py": """
            def observe():
                from stream.runtime import metrics
                return metrics
            """,
        "runtime/metrics.py": "",
        "runtime/intake.py": "from stream.model.state import observe\n",     # downward: fine
        "engine/core.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from stream.storage.rocksdb_store import PartitionStore
            """,
        "storage/rocksdb_store.py": "",
    })
    assert layer_violations(scan(root)) == [
        "engine.core -> storage.rocksdb_store (layer engine may not import layer storage)",
        "model.state -> runtime.metrics (layer model may not import layer runtime)",
    ]


def test_checker_keeps_the_two_runtimes_apart_and_resolves_relative_imports(tmp_path):
    root = package(tmp_path, {
        "worker/loop.py": "from ..faust_runtime import app\nfrom . import helper\n",
        "worker/helper.py": "",
        "faust_runtime/app.py": "from .. import errors\n",
        "errors.py": "",
    })
    assert layer_violations(scan(root)) == [
        "worker.loop -> faust_runtime.app (layer worker may not import layer faust_runtime)"]


def test_checker_confines_the_libraries(tmp_path):
    root = package(tmp_path, {
        "model/events.py": "import msgspec\nimport json\nimport yaml\n",
        "runtime/settings.py": "import argparse\n",
        "kafka/clients.py": "from confluent_kafka.admin import AdminClient\n",
        "engine/core.py": "def store():\n    import rocksdict\n",
        "inspect/members.py": "import confluent_kafka\n",
        "worker/loop.py": "import faust\n",
        "faust_runtime/app.py": "import faust\nimport aiokafka.client\n",
        "storage/rocksdb_store.py": "from rocksdict import Rdict\n",
    })
    assert layer_violations(scan(root)) == [
        "engine.core -> rocksdict (layer engine may not import rocksdict)",
        "inspect.members -> confluent_kafka (layer inspect may not import confluent_kafka)",
        "model.events -> yaml (layer model may not import yaml)",
        "runtime.settings -> argparse (layer runtime may not import argparse)",
        "worker.loop -> faust (layer worker may not import faust)",
    ]


def test_checker_keeps_argparse_in_the_cli(tmp_path):
    root = package(tmp_path, {
        "cli/backfill.py": "import argparse\n",                         # the command's own flags: fine
        "cli/settings_args.py": "from argparse import ArgumentParser\n",
        "backfill/request.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from argparse import Namespace
            """,
        "runtime/settings.py": "def load():\n    import argparse\n",
        "tools/bench/engine.py": "import argparse\n",
    })
    assert layer_violations(scan(root)) == [
        "backfill.request -> argparse (layer backfill may not import argparse)",
        "runtime.settings -> argparse (layer runtime may not import argparse)",
        "tools.bench.engine -> argparse (layer tools may not import argparse)",
    ]


def test_checker_keeps_clocks_files_and_sockets_out_of_the_core(tmp_path):
    root = package(tmp_path, {
        "engine/core.py": "import time\nfrom socket import socket\n",
        "model/state.py": "from os import path\n",
        "rules/compiler.py": "from pathlib import Path\n",      # rules reads a segments file: fine
        "runtime/intake.py": "import time\n",
    })
    assert layer_violations(scan(root)) == [
        "engine.core -> socket (layer engine may not import socket)",
        "engine.core -> time (layer engine may not import time)",
        "model.state -> os (layer model may not import os)",
    ]


def test_checker_finds_dynamic_imports_and_open_in_the_core(tmp_path):
    root = package(tmp_path, {
        "engine/core.py": "def load():\n    return open('x').read()\n",
        "runtime/batch.py": "import importlib\nm = importlib.import_module('stream.cli.main')\n",
        "rules/catalog.py": "def read(p):\n    return open(p).read()\n",          # not the core: fine
        "model/events.py": "x = __import__('stream.worker.loop')\n",
    })
    assert sorted(hidden_dependencies(root)) == [
        "engine.core:2: open() in the pure core",
        "model.events:1: __import__() (import it by name)",
        "runtime.batch:2: import_module() (import it by name)",
    ]


def test_checker_reports_a_package_without_a_layer(tmp_path):
    root = package(tmp_path, {"gadgets/thing.py": "from stream.model import events\n", "model/events.py": ""})
    assert layer_violations(scan(root)) == [
        "gadgets.thing -> model.events (layer gadgets is not in LAYERS: give it its place)"]


@pytest.mark.parametrize("source, target", [
    ("from stream.model import events", "stream.model.events"),           # a module named in a from-import
    ("from stream.model.events import Event", "stream.model.events"),     # a name in a module
    ("import stream.model.events as ev", "stream.model.events"),
    ("from stream import model", "stream.model"),
    ("from . import events", "stream.model.events"),
    ("from .events import Event", "stream.model.events"),
])
def test_checker_names_the_imported_module(tmp_path, source, target):
    root = package(tmp_path, {"model/events.py": "", "model/state.py": source + "\n"})
    modules = modules_under(root)
    assert [i.target for i in imports_of("stream.model.state", modules["stream.model.state"], modules)] == [target]
