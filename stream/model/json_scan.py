"""One pass over a message's bytes for the decoder's cheap checks (stream.model.decoding.Decoder),
compiled (setup.py): the opening brackets, the keys, and whether any byte is a backslash. Five
passes of bytes methods made these checks cost more than msgspec's decode itself."""
from __future__ import annotations

import cython

# What each byte is to the scan: most bytes of a message are none of these, and one table lookup
# per byte (one branch, nearly always the same way) costs less than comparing it with each.
_OTHER: int = cython.declare(cython.char, 0)
_SPACE: int = cython.declare(cython.char, 1)
_OPEN: int = cython.declare(cython.char, 2)
_COLON: int = cython.declare(cython.char, 3)
_BACKSLASH: int = cython.declare(cython.char, 4)
_KINDS: bytes = bytes(_SPACE if c in b" \t\r\n" else _OPEN if c in b"{[" else _COLON if c == 0x3A
                      else _BACKSLASH if c == 0x5C else _OTHER for c in range(256))


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def scan(raw: bytes) -> tuple[int, int, bool]:
    """In all of `raw`, strings included: how many `{` and `[` open a container, how many keys
    there are (a `"` then a `:`, with only whitespace between), and whether there is any backslash.
    The same counts as raw.count(b"{") + raw.count(b"["), raw.translate(None, b" \\t\\r\\n").count(b'":')
    and b"\\\\" in raw, in one pass instead of five."""
    n: cython.Py_ssize_t = len(raw)
    data: cython.p_char = raw
    kinds: cython.p_char = _KINDS
    i: cython.Py_ssize_t
    c: cython.Py_ssize_t
    kind: cython.char
    last: cython.Py_ssize_t = 0      # the last byte that is not whitespace
    opens: cython.Py_ssize_t = 0
    keys: cython.Py_ssize_t = 0
    backslash: cython.bint = False
    for i in range(n):
        c = data[i] & 255            # (char is signed)
        kind = kinds[c]
        if kind != _OTHER:
            if kind == _SPACE:
                continue
            if kind == _OPEN:
                opens += 1
            elif kind == _COLON:
                if last == 34:       # "
                    keys += 1
            else:
                backslash = True
        last = c
    return opens, keys, backslash
