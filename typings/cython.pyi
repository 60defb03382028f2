"""The part of Cython's pure Python mode (the `cython` shim module) that stream/ uses, typed for
mypy: the shim itself is untyped. Under the interpreter the decorators return what they are given
and the C types are the Python types they convert to; setup.py compiles the modules that use them."""
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")


bint: TypeAlias = bool
longlong: TypeAlias = int
Py_ssize_t: TypeAlias = int


def cclass(cls: _T) -> _T: ...
def final(obj: _T) -> _T: ...
def cfunc(func: _F) -> _F: ...
def locals(**types: object) -> Callable[[_F], _F]: ...
# A C variable (module level, with its value) or a cclass attribute; what it holds is said by the
# annotation beside it: `store: StateStore = declare(object)`, `_DAY: int = declare(longlong, DAY)`.
def declare(kind: object, value: object = ..., *, visibility: str = ...) -> Any: ...
def cast(kind: type[_T], value: object) -> _T: ...
