"""Extra columns of a members export (`segments members --fields`, `?fields=` on the worker's route,
the console's CSV export): attributes, custom fields and traits (at each partition's stream time,
by the definitions it runs), CSV quoting of what customers wrote, and unknown fields refused
before any row."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.helpers import DAY, customer_updated, instant, iso, order_paid, order_placed, product_viewed
from stream.cli.main import main
from stream.console.backend import Backend, Sizes
from stream.console.history import History
from stream.console.segments import members_csv
from stream.definitions.resolution import Running, encode_running, file_definitions
from stream.engine.core import Engine
from stream.inspect.fields import GETTERS
from stream.inspect.members import FIELDS
from stream.inspect.routes import segment_routes
from stream.rules.attributes import ATTRS
from stream.rules.catalog import Catalog, compile_catalog, load_catalog
from stream.runtime.http import Request, Response
from stream.runtime.sessions import Session
from stream.storage.committed import CommittedStores
from stream.storage.keys import DEFINITIONS_KEY
from stream.storage.rocksdb_store import PartitionStore

T0 = instant("2025-03-01T00:00:00Z")
TIER = 'gold, "vip"\nsince 2020'            # a comma, quotes and a line break: CSV must quote it
SEGMENTS = """\
traits:
  orders_30d: {count: order_paid, within: 30d}
  top_view:   {most_frequent: product_viewed.category}
segments:
  buyers:
    version: 1
    when: {paid_orders: {gte: 1}}
"""
# a trait a worker took up from the definitions topic: only in the stores' records
TOPIC_TRAIT = {"trait.spend_7d": {"version": 1, "sum": "order_paid.amount", "within": "7d"}}
FIELDS_ASKED = ("last_paid_at,email_opt_in,categories_bought,custom.tier,custom.absent,"
                "trait.orders_30d,trait.top_view,trait.spend_7d")


def build(tmp_path: Path, text: str = SEGMENTS) -> tuple[Path, Catalog]:
    """Stores of two partitions with different stream times, run with the file's definitions (`text`)
    and a trait of the topic; the segments file (without that trait)."""
    segments = tmp_path / "segments.yaml"
    segments.write_text(text, encoding="utf-8")
    file_catalog = load_catalog(segments)
    running = compile_catalog({**file_definitions(file_catalog), **TOPIC_TRAIT}, "running")
    stores = [PartitionStore(tmp_path / "state" / "grp" / f"p{n}") for n in (0, 1)]
    engines = [Engine(running, store) for store in stores]
    p0, p1 = engines
    p0.apply(order_placed("c-a", T0, "a-o1", [("p1", "shoes"), ("p2", "bags")]))
    p0.apply(order_paid("c-a", T0, "a-o1", 10.0))
    p0.apply(order_paid("c-a", T0 + 20 * DAY, "a-o2", 5.5))
    p0.apply(customer_updated("c-a", T0 + 20 * DAY, custom={"tier": TIER}, email_opt_in=True))
    p0.apply(product_viewed("c-a", T0 + 21 * DAY, "p3", "hats"))
    p0.apply(product_viewed("c-view", T0 + 40 * DAY, "p3", "hats"))        # p0's clock: T0 + 40d
    p1.apply(order_paid("c-b", T0, "b-o1", 1.0))
    p1.apply(order_paid("c-b", T0 + 5 * DAY, "b-o2", 2.0))
    p1.apply(product_viewed("c-b-view", T0 + 10 * DAY, "p9", "socks"))     # p1's clock: T0 + 10d
    for store, eng in zip(stores, engines, strict=True):
        store.set_stream_time(eng.now)
        store.set_meta(DEFINITIONS_KEY, encode_running(Running(file_definitions(running))))
        store.commit(1)
        store.close()
    return segments, file_catalog


def flags(tmp_path: Path, segments: Path) -> list[str]:
    return ["--state-dir", str(tmp_path / "state"), "--group-id", "grp", "--segments", str(segments)]


# each partition at its own clock: c-a's first payment left the 30-day window by T0 + 40d, neither
# of c-b's by T0 + 10d; spend_7d (the topic's trait) likewise
EXPECTED = {
    "c-a": {"last_paid_at": iso(T0 + 20 * DAY), "email_opt_in": True, "categories_bought": ["shoes", "bags"],
            "custom.tier": TIER, "custom.absent": None, "trait.orders_30d": 1, "trait.top_view": "hats",
            "trait.spend_7d": 0.0},
    "c-b": {"last_paid_at": iso(T0 + 5 * DAY), "email_opt_in": None, "categories_bought": [],
            "custom.tier": None, "custom.absent": None, "trait.orders_30d": 2, "trait.top_view": None,
            "trait.spend_7d": 2.0},
}


def test_fields_follow_the_fixed_columns_in_jsonl_and_csv(tmp_path, capsysbinary):
    segments, _ = build(tmp_path)
    assert main(["members", "buyers", "--format", "jsonl", "--fields", FIELDS_ASKED, *flags(tmp_path, segments)]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    objects = [json.loads(line) for line in lines]
    assert [list(o) for o in objects] == [[*FIELDS, *FIELDS_ASKED.split(",")]] * 2
    assert [o["customer_id"] for o in objects] == ["c-a", "c-b"]       # merged in id order across partitions
    for o in objects:
        assert {k: v for k, v in o.items() if k not in FIELDS} == EXPECTED[o["customer_id"]]
    assert objects[0]["paid_orders"] == 2 and objects[1]["paid_total"] == 3.0

    assert main(["members", "buyers", "--fields", FIELDS_ASKED, *flags(tmp_path, segments)]) == 0
    text = capsysbinary.readouterr().out.decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == [*FIELDS, *FIELDS_ASKED.split(",")]
    extra = {row[0]: row[len(FIELDS):] for row in rows[1:]}
    assert extra == {
        "c-a": [iso(T0 + 20 * DAY), "true", '["shoes","bags"]', TIER, "", "1", "hats", "0.0"],
        "c-b": [iso(T0 + 5 * DAY), "", "[]", "", "", "2", "", "2.0"],
    }
    assert '"gold, ""vip""\nsince 2020"' in text          # RFC 4180: quoted, quotes doubled


def test_without_fields_the_export_is_what_it_was(tmp_path, capsysbinary):
    segments, _ = build(tmp_path)
    assert main(["members", "buyers", *flags(tmp_path, segments)]) == 0
    plain = capsysbinary.readouterr().out
    assert main(["members", "buyers", "--fields", " ", *flags(tmp_path, segments)]) == 0
    assert capsysbinary.readouterr().out == plain
    assert plain.splitlines()[0].decode() == ",".join(FIELDS)


def test_every_attribute_of_the_definitions_is_a_field(tmp_path, capsys):
    segments, _ = build(tmp_path)
    assert set(ATTRS) <= set(GETTERS)              # (and what is added beside them: rfm.* ...)
    assert main(["members", "buyers", "--format", "jsonl", "--fields", ",".join(a for a in ATTRS if a not in FIELDS),
                 *flags(tmp_path, segments)]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first["first_paid_at"] == iso(T0) and first["first_seen_at"] == iso(T0)
    assert first["last_viewed_at"] == iso(T0 + 21 * DAY) and first["orders_placed"] == 1


def test_unknown_fields_exit_2_naming_each_before_any_row(tmp_path, capsys):
    segments, _ = build(tmp_path)
    out = tmp_path / "out.csv"
    asked = "first_paid,orders_30d,trait.orders_3d,custm.tier,city,email_opt_in,email_opt_in,,trait.unheard_of,custom."
    assert main(["members", "buyers", "--fields", asked, "--output", str(out), *flags(tmp_path, segments)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    err = captured.err.splitlines()
    assert err[:9] == [
        "segments members: --fields: unknown field 'first_paid' (did you mean 'first_paid_at'?)",
        "segments members: --fields: unknown field 'orders_30d' (did you mean 'trait.orders_30d'?)",
        "segments members: --fields: unknown field 'trait.orders_3d' (did you mean 'trait.orders_30d'?)",
        "segments members: --fields: unknown field 'custm.tier' (did you mean 'custom.tier'?)",
        "segments members: --fields: field 'city' is always a column",
        "segments members: --fields: field 'email_opt_in' is given twice",
        "segments members: --fields: field 8 is empty (a list of names separated by commas, like city,trait.x)",
        "segments members: --fields: unknown field 'trait.unheard_of'",
        "segments members: --fields: field 'custom.' needs a name after the prefix, like custom.tier",
    ]
    assert "custom.<field>, trait.<name> (traits: orders_30d, spend_7d, top_view)" in err[9]
    # an unknown segment too: both said
    assert main(["members", "buyer", "--fields", "first_paid", *flags(tmp_path, segments)]) == 2
    err2 = capsys.readouterr().err
    assert "unknown segment 'buyer'" in err2 and "unknown field 'first_paid'" in err2


# c-a at p0's clock T0 + 40d: last paid 20d ago, 2 orders, 15.5 -> R 3 (past 7d and 14d), F 2, M 4;
# c-b at p1's clock T0 + 10d: last paid 5d ago, 2 orders, 3.0 -> R 5, F 2, M 2 (3 is a cut: >= counts)
RFM_SEGMENTS = SEGMENTS + """\
rfm:
  cuts:
    recency: [7d, 14d, 21d, 28d]
    frequency: [2, 3, 4, 5]
    monetary: [3, 10, 15, 20]
"""


def test_rfm_scores_as_fields_at_each_partition_s_time(tmp_path, capsys):
    segments, _ = build(tmp_path, RFM_SEGMENTS)
    assert main(["members", "buyers", "--format", "jsonl", "--fields", "rfm.r,rfm.f,rfm.m,rfm.cell",
                 *flags(tmp_path, segments)]) == 0
    rows = {o["customer_id"]: [o["rfm.r"], o["rfm.f"], o["rfm.m"], o["rfm.cell"]]
            for o in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows == {"c-a": [3, 2, 4, "about-to-sleep"], "c-b": [5, 2, 2, "potential-loyalist"]}


def test_rfm_fields_without_cut_points_are_refused(tmp_path, capsys):
    segments, _ = build(tmp_path)                  # no rfm section
    assert main(["members", "buyers", "--fields", "rfm.r,rfm.cel", *flags(tmp_path, segments)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("segments members: --fields: field 'rfm.r' needs an rfm section with cut points "
                      "(docs/rfm.md: `segments rfm calibrate` computes them)")
    assert err[1] == "segments members: --fields: unknown field 'rfm.cel' (did you mean 'rfm.cell'?)"


def _body(answer: Response) -> bytes:
    assert not isinstance(answer.body, bytes)
    try:
        return b"".join(answer.body)
    finally:
        answer.body.close()      # type: ignore[attr-defined]   # _Rows: closes the stores


def _console(tmp_path: Path, catalog: Catalog) -> Backend:
    def never() -> object:
        raise AssertionError("not read by the export")

    return Backend("test", lambda: catalog, lambda: CommittedStores(tmp_path / "state", "grp"), never,  # type: ignore[arg-type]
                   lambda: Sizes({}, ""), History(), False, None)


@pytest.mark.parametrize("fields", [None, FIELDS_ASKED])
def test_the_route_and_the_console_export_are_the_cli_s_bytes(tmp_path, capsysbinary, fields):
    segments, file_catalog = build(tmp_path)
    asked = [] if fields is None else ["--fields", fields]
    query = {} if fields is None else {"fields": fields.split(",")}      # ?fields=a&fields=b...: one list
    routes = {r.path: r for r in segment_routes(tmp_path / "state", "grp", lambda: file_catalog, lambda: [0, 1], dict)}
    members = routes["/segments/<name>/members"].handler
    for fmt in ("csv", "jsonl"):
        assert main(["members", "buyers", "--format", fmt, *asked, *flags(tmp_path, segments)]) == 0
        cli = capsysbinary.readouterr().out
        answer = members(Request(("buyers",), {"format": [fmt], **query}))
        assert answer.status == 200 and _body(answer) == cli
        if fmt == "csv":
            exported = members_csv(_console(tmp_path, file_catalog), Request(("buyers",), {**query}))
            assert exported.status == 200 and _body(exported) == cli
            assert exported.headers == (("Content-Disposition", 'attachment; filename="buyers-members.csv"'),)


def test_the_route_refuses_an_unknown_field_with_400(tmp_path):
    _, file_catalog = build(tmp_path)
    routes = {r.path: r for r in segment_routes(tmp_path / "state", "grp", lambda: file_catalog, lambda: [0, 1], dict)}
    answer = routes["/segments/<name>/members"].handler(Request(("buyers",), {"fields": ["trait.spend_7, city"]}))
    assert answer.status == 400 and isinstance(answer.body, bytes)
    error = json.loads(answer.body)["error"]
    assert error.startswith("fields: unknown field 'trait.spend_7' (did you mean 'trait.spend_7d'?); "
                            "field 'city' is always a column; known fields: first_paid_at, last_paid_at, ")
    many = routes["/segments/<name>/members"].handler(Request(("buyers",), {"fields": [",".join(["city"] * 101)]}))
    assert many.status == 400 and json.loads(many.body)["error"] == "fields: at most 100 fields, got 101"  # type: ignore[arg-type]
    page = members_csv(_console(tmp_path, file_catalog), Request(("buyers",), {"fields": ["trait.spend_7"]},
                                                                 session=Session("csrf", 0.0, 0.0)))
    assert page.status == 400 and isinstance(page.body, bytes)
    assert b"fields: unknown field &#x27;trait.spend_7&#x27; (did you mean &#x27;trait.spend_7d&#x27;?)" in page.body
