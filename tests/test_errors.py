"""One error root: every public exception class the product defines is a stream.errors.SegmentsError,
so the `segments` command can tell the product's refusals from bugs. Private ones (a leading _)
are control flow inside a module and never leave it."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

from stream.errors import SegmentsError

SOURCE = Path(__file__).resolve().parent.parent / "stream"


def _exception_classes() -> list[tuple[str, str]]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        module = ".".join(path.relative_to(SOURCE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.bases and not node.name.startswith("_"):
                found.append((module, node.name))
    return found


def test_every_public_exception_of_the_product_is_a_segments_error():
    outside = []
    checked = 0
    for module, name in _exception_classes():
        cls = getattr(importlib.import_module(module), name)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            checked += 1
            if not issubclass(cls, SegmentsError):
                outside.append(f"{module}.{name}")
    assert checked >= 8, "the scan lost the product's exception classes"
    assert not outside, f"exceptions outside stream.errors.SegmentsError: {outside}"
