"""The engine's hot path runs compiled: a checkout where setup.py's modules were not built (or were
built for another Python) must fail here, not run several times slower unnoticed."""
from __future__ import annotations

import ast
import importlib
import importlib.machinery
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def native_modules() -> list[str]:
    """setup.py's NATIVE list, as dotted module names (read, not run: running it would build)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    (paths,) = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "NATIVE" for t in node.targets)]
    return [path.removesuffix(".py").replace("/", ".") for path in paths]


def test_the_engine_modules_are_listed():
    assert {"stream.engine.core", "stream.engine.fold", "stream.engine.timers"} <= set(native_modules())


@pytest.mark.parametrize("name", native_modules())
def test_module_is_compiled(name):
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), (
        f"{name} was imported from {module.__file__}, not its compiled extension: "
        "run `pip install -e .` (or `python setup.py build_ext --inplace`) in this checkout")
    # An extension built before its source last changed runs the old code: rebuild.
    source = ROOT / (name.replace(".", "/") + ".py")
    assert Path(module.__file__).stat().st_mtime >= source.stat().st_mtime, (
        f"{module.__file__} is older than {source.name}: rebuild (`python setup.py build_ext --inplace`)")


def test_every_module_typed_for_cython_is_compiled():
    """A module that imports cython is written for the compiler: it must be in setup.py's list."""
    typed = sorted(".".join(path.relative_to(ROOT).with_suffix("").parts)
                   for path in (ROOT / "stream").rglob("*.py")
                   if any(isinstance(node, ast.Import) and any(a.name == "cython" for a in node.names)
                          for node in ast.walk(ast.parse(path.read_text()))))
    assert set(typed) <= set(native_modules()), sorted(set(typed) - set(native_modules()))


def test_no_module_outside_the_list_is_compiled():
    """A leftover build of a module setup.py no longer lists would shadow its source unseen."""
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)   # .cpython-311-...so first
    built = set()
    for path in (ROOT / "stream").rglob("*.so"):
        suffix = next(s for s in suffixes if path.name.endswith(s))
        built.add(".".join(path.relative_to(ROOT).parent.parts + (path.name.removesuffix(suffix),)))
    assert built <= set(native_modules()), sorted(built - set(native_modules()))
