"""The storage layout (stream.storage.keys) is plain bytes: readable without the RocksDB binding."""
from __future__ import annotations

import subprocess
import sys

import pytest

from stream.model.time import AFTER_TIME, BEFORE_TIME
from stream.storage.keys import META, STREAM_TIME_KEY, pack_time, stream_time_record, unpack_time


def test_the_layout_does_not_import_rocksdict():
    program = "import sys, stream.storage.keys; print('rocksdict' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("value", [BEFORE_TIME, -1, 0, 1, AFTER_TIME])
def test_times_pack_into_eight_signed_big_endian_bytes(value):
    assert len(pack_time(value)) == 8 and unpack_time(pack_time(value)) == value
    assert stream_time_record(value) == (STREAM_TIME_KEY, pack_time(value))
    assert STREAM_TIME_KEY[:1] == META


def test_a_short_time_is_refused():
    with pytest.raises(ValueError, match="expected 8 bytes, got 2"):
        unpack_time(b"\x00\x01")
