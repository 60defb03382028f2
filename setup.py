"""Compiles the engine's hot path with Cython (pure Python mode: the modules stay plain, typed
Python that ruff and mypy check). Everything else about the package is in pyproject.toml."""
from Cython.Build import cythonize
from setuptools import setup

# The modules every applied event runs through; tests/engine/test_native.py fails if any of them
# is imported as Python instead.
NATIVE = [
    "stream/engine/core.py",
    "stream/engine/fold.py",
    "stream/engine/timers.py",
    "stream/engine/trait_fold.py",
    "stream/model/decoding.py",
    "stream/model/json_scan.py",
    "stream/model/time.py",
    "stream/rules/predicates.py",
    "stream/rules/traits.py",
]

setup(ext_modules=cythonize(NATIVE, language_level=3, compiler_directives={"binding": False}))
