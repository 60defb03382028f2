"""stream.model.json_scan.scan: the decoder's one-pass counts are exactly those of the bytes
methods they replace, for any bytes (the duplicate-key check relies on the key count)."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream.model.json_scan import scan

_JSONISH = st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"', b":", b",", b"\\", b" ", b"\t", b"\r", b"\n",
                                     b"a", b"1", b"\x00", b"\xff", b"\xc3\xa9"]), max_size=60).map(b"".join)


def reference(raw: bytes) -> tuple[int, int, bool]:
    return raw.count(b"{") + raw.count(b"["), raw.translate(None, b" \t\r\n").count(b'":'), b"\\" in raw


@given(st.one_of(_JSONISH, st.binary(max_size=200)))
def test_scan_counts_what_the_bytes_methods_count(raw):
    assert scan(raw) == reference(raw)


def test_keys_across_whitespace_and_the_edges():
    assert scan(b"") == (0, 0, False)
    assert scan(b'{"a" \t\r\n: 1, "b":[2]}') == (2, 2, False)
    assert scan(b'":') == (0, 1, False)                  # a key at the very start
    assert scan(b'"x": "y\\":"') == (0, 2, True)        # inside a string it counts too (see _values_held)
    assert scan(b'" \xff:') == (0, 0, False)             # any other byte between breaks a key
