"""The worker's HTTP answers about segments, beside /metrics on --metrics-port:

    GET /segments/<name>/members[?format=jsonl|csv]   members, streamed (JSON lines by default)
    GET /customers/<id>                               the explanation (stream.explain) as JSON
    GET /definitions                                  the definitions running, rejected, being taken up

Only the partitions the worker owns now (restored and assigned) are read, through the same
secondary RocksDB instances as `segments members` and `explain` (stream.committed): never the
write-back cache the worker thread mutates, so the answer is as of each partition's last committed
batch and reading cannot race the engine. Unknown segment or customer: 404 with {"error": ...}.
"""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec

from .committed import CommittedStores, NoStores
from .explain import explain
from .members import CONTENT_TYPES, FORMATS, encode_rows, member_rows
from .rules import Catalog

Route = Callable[[BaseHTTPRequestHandler], bool]


def segment_routes(state_dir: Path, group_id: str, catalog: Callable[[], Catalog],
                   partitions: Callable[[], Iterable[int]], definitions: Callable[[], Any]) -> Route:
    """A route for stream.metrics.serve: answers the paths above, returns False for any other.
    `catalog`, `partitions` and `definitions` (stream.live_definitions' description) are asked on
    every request: all change while the worker runs."""

    def route(handler: BaseHTTPRequestHandler) -> bool:
        url = urlsplit(handler.path)
        parts = url.path.split("/")
        if len(parts) == 4 and parts[1] == "segments" and parts[3] == "members":
            fmt = parse_qs(url.query).get("format", ["jsonl"])[-1]
            _members(handler, unquote(parts[2]), fmt)
        elif len(parts) == 3 and parts[1] == "customers" and parts[2]:
            _customer(handler, unquote(parts[2]))
        elif url.path == "/definitions":
            _send(handler, 200, msgspec.json.encode(definitions()))
        else:
            return False
        return True

    def stores() -> CommittedStores:
        owned = list(partitions())
        if not owned:
            raise NoStores("this worker owns no partitions yet (not in a group, or restoring)")
        return CommittedStores(state_dir, group_id, only=owned)

    def _members(handler: BaseHTTPRequestHandler, segment: str, fmt: str) -> None:
        current = catalog()
        if segment not in current.by_name:
            return _error(handler, 404, f"unknown segment {segment!r}; segments: {', '.join(current.by_name)}")
        if fmt not in FORMATS:
            return _error(handler, 400, f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        try:
            opened = stores()
        except NoStores as exc:
            return _error(handler, 503, str(exc))
        with opened:
            handler.send_response(200)
            handler.send_header("Content-Type", CONTENT_TYPES[fmt])
            handler.end_headers()          # HTTP/1.0: the body ends when the connection closes
            try:
                for chunk in encode_rows(member_rows(opened.items(), segment), fmt):
                    handler.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass                       # the client stopped reading: nothing more to send

    def _customer(handler: BaseHTTPRequestHandler, customer_id: str) -> None:
        try:
            opened = stores()
        except NoStores as exc:
            return _error(handler, 503, str(exc))
        with opened:
            found = opened.find(customer_id)
        if found is None:
            return _error(handler, 404, f"no customer {customer_id!r} on this worker's partitions")
        partition, state = found
        answer = explain(customer_id, state, catalog(), partition.stream_time or 0, partition.number)
        _send(handler, 200, msgspec.json.encode(answer))

    return route


def _error(handler: BaseHTTPRequestHandler, status: int, message: str) -> None:
    _send(handler, status, msgspec.json.encode({"error": message}))


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
