"""The steps of a definition change that the native and the Faust runtime tests share: the reference
(one engine per partition, redefined like a worker), `segments define`/`undefine` of a changed and
an added segment, and waiting for their moves on the changes topic."""
from __future__ import annotations

import json
import time

import yaml

from stream.cli.define import define, undefine
from stream.definitions.resolution import file_definitions
from stream.engine.core import Engine
from stream.engine.redefinition import Redefinition
from stream.model.changes import SegmentChange
from stream.model.decoding import Decoder
from stream.model.events import Event
from stream.rules.catalog import Catalog, compile_catalog, load_catalog

from . import conformance
from .workers import PARTITIONS

FILE = file_definitions(load_catalog())
LOYAL3 = {"when": {"all": [{"paid_orders": {"gte": 3}}, {"last_paid_at": {"within": "90d"}}]}}
BUYER = {"when": {"orders_placed": {"gte": 1}}}


class Reference:
    """One engine per partition over that partition's events, redefined like the worker."""

    def __init__(self, lines: list[bytes], partition_of: dict[str, int], catalog: Catalog | None = None):
        """`catalog`: the worker's segments file (default: the built-in catalog)."""
        self.definitions = file_definitions(catalog) if catalog is not None else dict(FILE)
        self.engines = {p: Engine(catalog or load_catalog()) for p in range(PARTITIONS)}
        decode = Decoder().decode
        for line in lines:
            event = decode(line)
            if isinstance(event, Event):
                self.engines[partition_of[event.customer_id]].apply(event)

    def redefine(self, name: str, definition: dict | None) -> list[SegmentChange]:
        new = {k: v for k, v in self.definitions.items() if k != name}
        if definition is not None:
            new[name] = definition
        old_catalog, catalog = compile_catalog(self.definitions, "old"), compile_catalog(new, "new")
        redefinition = Redefinition.between(old_catalog, catalog)
        out: list[SegmentChange] = []
        for engine in self.engines.values():
            engine.redefine(catalog)
            for customer_id, state in sorted(engine.store.items()):
                engine.reevaluate(customer_id, state, redefinition, out)
        self.definitions = new
        return out


def ids(changes) -> set[str]:
    return {c.change_id if isinstance(c, SegmentChange) else c["change_id"] for c in changes}


def definition_moves(bootstrap: str, topic: str) -> list[dict]:
    return [c for c in conformance.read_all(bootstrap, topic, PARTITIONS) if c["cause"] == "definition"]


def wait_for_moves(bootstrap: str, topic: str, want: set[str], timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        moves = definition_moves(bootstrap, topic)
        if want <= ids(moves) or time.monotonic() > deadline:
            return moves
        time.sleep(0.5)


def change_loyal(bootstrap: str, changes_topic: str, defs: str, path, reference: Reference) -> list[SegmentChange]:
    """`segments define` loyal changed: only its moves, with version 2, exactly the reference's."""
    path.write_text(yaml.safe_dump(LOYAL3))
    assert define("loyal", path, bootstrap, {}, defs, load_catalog()) == 0
    expected = reference.redefine("loyal", {**LOYAL3, "version": 2})
    assert expected, "the change should move someone"
    moves = wait_for_moves(bootstrap, changes_topic, ids(expected))
    assert ids(moves) == ids(expected)
    assert {(m["segment"], m["definition_version"], m["event_id"]) for m in moves} == {("loyal", 2, None)}
    return expected


def add_and_remove_buyer(bootstrap: str, changes_topic: str, defs: str, path,
                         reference: Reference) -> tuple[list[SegmentChange], list[dict]]:
    """A segment added, then removed: entries with version 1, then every member exits. The
    reference's moves, and every definition move in the changes topic by then."""
    path.write_text(json.dumps(BUYER))
    assert define("buyer", path, bootstrap, {}, defs, load_catalog()) == 0
    added = reference.redefine("buyer", {**BUYER, "version": 1})
    assert added and all(c.change == "entered" for c in added)
    wait_for_moves(bootstrap, changes_topic, ids(added))
    assert undefine("buyer", bootstrap, {}, defs, load_catalog()) == 0
    removed = reference.redefine("buyer", None)
    assert {(c.customer_id, c.change) for c in removed} == {(c.customer_id, "exited") for c in added}
    return added + removed, wait_for_moves(bootstrap, changes_topic, ids(removed))
