"""The worker's HTTP answers about segments, beside /metrics on --metrics-port, behind its bearer token
(stream.runtime.http):

    GET /segments/<name>/members[?format=jsonl|csv][&fields=a,b]
                                                      members, streamed (JSON lines by default), with
                                                      extra columns (stream.inspect.fields)
    GET /customers/<id>                               the explanation (stream.rules.explanation) as JSON
    GET /definitions                                  the definitions running, rejected, being taken up

Only the partitions the worker owns now (restored and assigned) are read, through the same
secondary RocksDB instances as `segments members` and `explain` (stream.storage.committed): never the
write-back cache the worker thread mutates, so the answer is as of each partition's last committed
batch and reading cannot race the engine. Unknown segment or customer: 404 with {"error": ...}; an
unknown field: 400, before any row.
"""
from __future__ import annotations

from pathlib import Path
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import msgspec

from stream.storage.committed import CommittedStores, NoStores
from stream.rules.explanation import explain
from stream.runtime.http import Request, Response, Route, json_error
from stream.inspect.fields import Columns, FieldError, columns
from stream.inspect.members import CONTENT_TYPES, FIELDS, FORMATS, encode_rows, export_rows
from stream.inspect.running import explaining
from stream.rules.catalog import Catalog


def segment_routes(state_dir: Path, group_id: str, catalog: Callable[[], Catalog],
                   partitions: Callable[[], Iterable[int]], definitions: Callable[[], Any]) -> list[Route]:
    """Routes for stream.runtime.metrics.serve, all personal data (behind the bearer token). `catalog`,
    `partitions` and `definitions` (stream.definitions.live' description) are asked on every
    request: all change while the worker runs."""

    def stores() -> CommittedStores:
        return owned_stores(state_dir, group_id, partitions())

    def members(request: Request) -> Response:
        (segment,) = request.args
        fmt = request.query.get("format", ["jsonl"])[-1]
        current = catalog()
        if segment not in current.by_name:
            return json_error(404, f"unknown segment {segment!r}; segments: {', '.join(current.by_name)}")
        if fmt not in FORMATS:
            return json_error(400, f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        try:
            opened = stores()
        except NoStores as exc:
            return json_error(503, str(exc))
        try:
            extra = export_columns(request, opened, current)
        except FieldError as exc:
            opened.close()
            return json_error(400, f"fields: {exc}")
        return members_export(opened, segment, fmt, extra)

    def customer(request: Request) -> Response:
        (customer_id,) = request.args
        try:
            opened = stores()
        except NoStores as exc:
            return json_error(503, str(exc))
        with opened:
            found = opened.find(customer_id)
            if found is None:
                return json_error(404, f"no customer {customer_id!r} on this worker's partitions")
            partition, state = found
            running = explaining(partition, catalog())
        answer = explain(customer_id, state, running, partition.stream_time or 0, partition.number)
        return Response(200, msgspec.json.encode(answer))

    return [
        Route("/segments/<name>/members", "members, streamed; ?format=jsonl (default) or csv, "
              "?fields=a,b extra columns", members),
        Route("/customers/<id>", "why a customer is where it is (as `segments explain --format json`)", customer),
        definitions_route(definitions),
    ]


def owned_stores(state_dir: Path, group_id: str, partitions: Iterable[int]) -> CommittedStores:
    """The committed stores of the partitions a worker owns now (its routes' and its console's);
    NoStores while it owns none."""
    owned = list(partitions)
    if not owned:
        raise NoStores("this worker owns no partitions yet (not in a group, or restoring)")
    return CommittedStores(state_dir, group_id, only=owned)


def export_columns(request: Request, opened: CommittedStores, catalog: Catalog) -> Columns:
    """The extra columns a request's ?fields= names (several: one list), checked against the traits
    the partitions of `opened` run and `catalog`'s; FieldError when one is no column."""
    return columns(",".join(request.query.get("fields", [])), FIELDS, opened.partitions, catalog)


def members_export(opened: CommittedStores, segment: str, fmt: str, extra: Columns,
                   headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """The members of `segment` in `opened` as `fmt`, with the `extra` columns, streamed (chunked):
    memory does not grow with the segment; the stores close when the server closes the body, also
    when the client hangs up half-way. Also the console's CSV export (stream.console)."""
    return Response(200, _Rows(opened, encode_rows(export_rows(opened, segment, extra), fmt, extra.names)),
                    CONTENT_TYPES[fmt], headers)


def definitions_route(definitions: Callable[[], Any]) -> Route:
    """GET /definitions (LiveDefinitions.describe), which both runtimes serve."""
    return Route("/definitions", "the definitions running, rejected, being taken up",
                 lambda _: Response(200, msgspec.json.encode(definitions())))


class _Rows:
    """A members export that closes its stores when the server closes it."""

    def __init__(self, opened: CommittedStores, chunks: Generator[bytes, None, None]):
        self._opened, self._chunks = opened, chunks

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._chunks.close()       # a generator: ends the iteration over the stores first
        self._opened.close()
