"""The members of a segment, with the fields marketers export, as CSV or JSON lines, streamed.

Rows come out in customer id order (the bytes of the UTF-8 ids) as the stores are read: nothing is
gathered in memory, so a million members cost no more memory than ten. Fields (empty in CSV, null
in JSON, when unknown):

    customer_id, member_since (entry into the segment), paid_orders, paid_total,
    average_order_value, last_order_at (the last order_placed), city, country

Instants are RFC 3339 in UTC, as everywhere in the product. Extra columns, named by --fields or
?fields= (stream.inspect.fields), follow these; without them a row costs what it did before they
existed (the partitions merged by key, non-members skipped undecoded, no getter called).
"""
from __future__ import annotations

import csv
import heapq
import io
from collections.abc import Generator, Iterable, Iterator
from operator import itemgetter
from typing import Any

import msgspec

from stream.inspect.fields import Columns, Extra
from stream.model.state import load_state
from stream.model.time import format_rfc3339
from stream.storage.committed import CommittedStores

FORMATS = ("csv", "jsonl")
FIELDS = ("customer_id", "member_since", "paid_orders", "paid_total", "average_order_value",
          "last_order_at", "city", "country")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
_CHUNK = 2000                     # rows per encoded chunk: few writes, little memory


def export_rows(stores: CommittedStores, segment: str, columns: Columns) -> Iterator[tuple[Any, ...]]:
    """The rows of the members of `segment` in `stores`, in customer id order: FIELDS, then
    `columns` (each partition's members with its own stream time and traits, merged by id)."""
    if not columns.names:
        return member_rows(stores.items(), segment)
    return heapq.merge(*(member_rows(p.items(), segment, columns.of(p)) for p in stores.partitions),
                       key=itemgetter(0))       # (a str's order is its UTF-8 bytes' order: the keys')


def member_rows(items: Iterable[tuple[bytes, bytes]], segment: str, extra: Extra | None = None
                ) -> Iterator[tuple[Any, ...]]:
    """One tuple of FIELDS, then what `extra` gives, per stored customer who is a member of `segment`."""
    # A member's record holds the segment name as a msgpack string (its `member` key): a record
    # without those bytes cannot be a member, and most non-members are skipped without decoding.
    needle = msgspec.msgpack.encode(segment)
    for key, data in items:
        if needle not in data:
            continue
        customer_id = key.decode()
        st = load_state(data, customer_id)
        since = st.member.get(segment)
        if since is None:
            continue
        count = st.paid_count
        row = (customer_id, format_rfc3339(since), count, st.paid_total, st.paid_total / count if count else None,
               None if st.last_placed is None else format_rfc3339(st.last_placed), st.city, st.country)
        yield row if extra is None else row + extra(st)


def encode_rows(rows: Iterable[tuple[Any, ...]], fmt: str, extra: tuple[str, ...] = ()
                ) -> Generator[bytes, None, None]:
    """The rows (FIELDS, then the columns named `extra`) as `fmt` (csv: a header line, RFC 4180
    quoting; jsonl: one object per line), in chunks of bytes; a generator, so a reader stopping
    half-way can close it."""
    if fmt == "csv":
        return _csv(rows, extra)
    if fmt == "jsonl":
        return _jsonl(rows, FIELDS + extra)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _csv_cell(value: Any) -> Any:
    """An extra column's value as CSV writes it: a bool as the definitions write it, a list (a set
    attribute's) as JSON; the rest as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return msgspec.json.encode(value).decode()
    return value


def _csv(rows: Iterable[tuple[Any, ...]], extra: tuple[str, ...]) -> Generator[bytes, None, None]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)             # quotes fields holding commas, quotes or line breaks
    writer.writerow(FIELDS + extra)
    fixed = len(FIELDS)
    for n, row in enumerate(rows, 1):
        # None is written as an empty field; the fixed fields are numbers and strings as they are
        writer.writerow(row if not extra else row[:fixed] + tuple(map(_csv_cell, row[fixed:])))
        if n % _CHUNK == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _jsonl(rows: Iterable[tuple[Any, ...]], names: tuple[str, ...]) -> Generator[bytes, None, None]:
    encode = msgspec.json.Encoder().encode
    chunk: list[bytes] = []
    for row in rows:
        chunk.append(encode(dict(zip(names, row, strict=True))))
        if len(chunk) == _CHUNK:
            yield b"\n".join(chunk) + b"\n"
            chunk.clear()
    if chunk:
        yield b"\n".join(chunk) + b"\n"
