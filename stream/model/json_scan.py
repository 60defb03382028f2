"""One pass over a message's bytes for the decoder's cheap checks (stream.model.events.Decoder),
compiled (setup.py): the opening brackets, the keys, and whether any byte is a backslash. Five
passes of bytes methods made these checks cost more than msgspec's decode itself."""
from __future__ import annotations

import cython


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
    i: cython.Py_ssize_t
    c: cython.char
    last: cython.char = 0            # the last byte that is not whitespace
    opens: cython.Py_ssize_t = 0
    keys: cython.Py_ssize_t = 0
    backslash: cython.bint = False
    for i in range(n):
        c = data[i]
        if c == 32 or c == 9 or c == 10 or c == 13:
            continue
        if c == 123 or c == 91:          # { [
            opens += 1
        elif c == 58:                    # :
            if last == 34:               # "
                keys += 1
        elif c == 92:                    # backslash
            backslash = True
        last = c
    return opens, keys, backslash
