"""`segments members` and `segments explain` over real partition stores (a worker's, left or kept
open): CSV and JSON lines, what an empty segment, an unknown one or missing stores give, and the
explanation of a customer."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import (DAY, instant, iso, order_paid, order_placed, product_viewed)
from stream.cli.main import main
from stream.engine.core import Engine
from stream.inspect.members import FIELDS
from stream.rules.catalog import load_catalog
from stream.storage.rocksdb_store import PartitionStore

T0 = instant("2025-01-01T00:00:00Z")

CITY = 'Almaty, "centre"\nblock 2'          # a comma, quotes and a line break: CSV must quote it


def build_stores(state_dir: Path) -> list[PartitionStore]:
    """Two partitions under <state_dir>/grp, committed; plus an uncommitted member in p0."""
    stores = [PartitionStore(state_dir / "grp" / f"p{n}") for n in (0, 1)]
    engines = [Engine(load_catalog(), store) for store in stores]
    plan = {"c-b": 0, "c-a": 1, "c-c": 0, "c-d": 1}
    for cid, p in plan.items():
        engines[p].apply(order_placed(cid, T0, f"{cid}-o1", city=CITY if cid == "c-b" else None, country="KZ"))
        engines[p].apply(order_paid(cid, T0 + 1, f"{cid}-o1", 100.0))
        if cid != "c-d":
            engines[p].apply(order_paid(cid, T0 + DAY, f"{cid}-o2", 50.5))
    engines[0].apply(product_viewed("c-view", T0 + DAY, "p1"))
    for store, engine in zip(stores, engines, strict=True):
        store.set_stream_time(engine.now)
        store.commit(1)
    # not committed: a reader must not see it
    engines[0].apply(order_paid("c-0-uncommitted", T0 + 2 * DAY, "x1", 1.0))
    engines[0].apply(order_paid("c-0-uncommitted", T0 + 2 * DAY, "x2", 1.0))
    return stores


def settings_flags(tmp_path: Path) -> list[str]:
    return ["--state-dir", str(tmp_path / "state"), "--group-id", "grp"]


def test_members_csv_and_jsonl_while_the_stores_are_open(tmp_path):
    stores = build_stores(tmp_path / "state")
    out_csv, out_jsonl = tmp_path / "m.csv", tmp_path / "m.jsonl"
    assert main(["members", "repeat-buyer", "--format", "csv", "--output", str(out_csv),
                 *settings_flags(tmp_path)]) == 0
    assert main(["members", "repeat-buyer", "--format", "jsonl", "--output", str(out_jsonl),
                 *settings_flags(tmp_path)]) == 0
    with open(out_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(FIELDS)
    since = iso(T0 + DAY)
    assert rows[1:] == [
        ["c-a", since, "2", "150.5", "75.25", iso(T0), "", "KZ"],      # sorted by id across partitions
        ["c-b", since, "2", "150.5", "75.25", iso(T0), CITY, "KZ"],
        ["c-c", since, "2", "150.5", "75.25", iso(T0), "", "KZ"],
    ]
    objects = [json.loads(line) for line in out_jsonl.read_text(encoding="utf-8").splitlines()]
    assert [o["customer_id"] for o in objects] == ["c-a", "c-b", "c-c"]
    assert objects[0] == {"customer_id": "c-a", "member_since": since, "paid_orders": 2, "paid_total": 150.5,
                          "average_order_value": 75.25, "last_order_at": iso(T0), "city": None, "country": "KZ"}
    assert objects[1]["city"] == CITY
    for store in stores:
        store.close()


def test_members_of_an_empty_segment_is_a_header(tmp_path, capsysbinary):
    build_stores(tmp_path / "state")
    assert main(["members", "champion", *settings_flags(tmp_path)]) == 0
    out = capsysbinary.readouterr()
    assert out.out == (b"customer_id,member_since,paid_orders,paid_total,average_order_value,last_order_at,city,"
                       b"country\r\n")
    assert b"0 members of champion; as of p0 " in out.err


def test_unknown_segment_and_missing_stores_are_both_named(tmp_path, capsys):
    assert main(["members", "repeat-buyers", *settings_flags(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown segment 'repeat-buyers'" in err and "repeat-buyer," in err
    assert f"no partition stores under {tmp_path / 'state' / 'grp'}" in err
    assert main(["explain", "c-a", *settings_flags(tmp_path)]) == 2
    assert "no partition stores" in capsys.readouterr().err
    assert not (tmp_path / "state").exists(), "looking must not create the state dir"


def test_bad_settings_exit_2(tmp_path, capsys):
    assert main(["members", "loyal", "--state-dir", "", "--group-id", "grp"]) == 2
    assert "--state-dir: must not be empty" in capsys.readouterr().err


def test_explain_shows_state_segments_conditions_and_the_next_move(tmp_path, capsys):
    build_stores(tmp_path / "state")
    assert main(["explain", "c-a", "--format", "json", *settings_flags(tmp_path)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["customer_id"] == "c-a" and answer["partition"] == 1 and answer["as_of"] == iso(T0 + DAY)
    assert answer["segments"] == {"repeat-buyer": iso(T0 + DAY)}
    assert answer["next_move"] == {"segment": "at-risk", "due": iso(T0 + DAY + 60 * DAY)}
    assert answer["attributes"]["paid_orders"] == 2 and answer["attributes"]["city"] is None
    assert answer["state"]["paid_count"] == 2
    by_name = {c["segment"]: c for c in answer["conditions"]}
    assert set(by_name) == {s.name for s in load_catalog().segments}
    assert all(c["holds"] == c["member"] for c in answer["conditions"])
    repeat = by_name["repeat-buyer"]
    assert repeat["member_since"] == iso(T0 + DAY) and repeat["next_move_due"] == iso(T0 + 61 * DAY)
    assert repeat["when"] == {"condition": "all", "holds": True, "parts": [
        {"condition": "paid_orders >= 2", "holds": True, "value": 2},
        {"condition": "last_paid_at within 60d", "holds": True, "value": iso(T0 + DAY),
         "changes_at": iso(T0 + 61 * DAY)}]}

    assert main(["explain", "c-a", *settings_flags(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "segments: repeat-buyer since 2025-01-02T00:00:00Z" in text
    assert "      paid_orders >= 2: true (2)\n" in text
    assert "not a member; re-evaluated by time at" in text


def test_explain_of_an_unknown_or_uncommitted_customer_exits_2(tmp_path, capsys):
    stores = build_stores(tmp_path / "state")
    assert main(["explain", "c-0-uncommitted", *settings_flags(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no customer 'c-0-uncommitted' in any store; as of p0 2025-01-02T00:00:00Z, p1 2025-01-02T00:00:00Z" in err
    stores[0].set_stream_time(T0 + 2 * DAY)
    stores[0].commit(2)
    assert main(["explain", "c-0-uncommitted", "--format", "json", *settings_flags(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["segments"] == {"repeat-buyer": iso(T0 + 2 * DAY)}


def test_a_segment_the_stores_run_but_the_file_lacks_is_listed_and_explained(tmp_path, capsys):
    """A segment added through the definitions topic (`segments define`) is only in the Running record
    the worker keeps in each store: members and explain read it there, without --segments."""
    from stream.definitions.resolution import Running, encode_running, file_definitions
    from stream.rules.catalog import compile_catalog
    from stream.storage.keys import DEFINITIONS_KEY

    extra = {"big-spender": {"version": 3, "when": {"paid_total": {"gte": 150}}}}
    running = compile_catalog({**file_definitions(load_catalog()), **extra}, "running")
    store = PartitionStore(tmp_path / "state" / "grp" / "p0")
    engine = Engine(running, store)
    engine.apply(order_paid("c-rich", T0, "o1", 200.0))
    engine.apply(order_paid("c-poor", T0, "o2", 20.0))
    store.set_stream_time(engine.now)
    store.set_meta(DEFINITIONS_KEY, encode_running(Running(file_definitions(running))))
    store.commit(1)

    assert main(["members", "big-spender", "--format", "jsonl", *settings_flags(tmp_path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["customer_id"] for row in rows] == ["c-rich"]
    assert main(["explain", "c-rich", "--format", "json", *settings_flags(tmp_path)]) == 0
    by_name = {c["segment"]: c for c in json.loads(capsys.readouterr().out)["conditions"]}
    assert by_name["big-spender"]["member"] and by_name["big-spender"]["version"] == 3
    assert main(["members", "small-spender", *settings_flags(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown segment 'small-spender'" in err and err.rstrip().endswith("window-shopper, big-spender")
    store.close()


def test_members_and_explain_take_no_kafka_properties(tmp_path, capsys):
    """They read local stores only: -X would be accepted and ignored, so it is not offered."""
    for command in (["members", "loyal"], ["explain", "c-a"]):
        with pytest.raises(SystemExit) as info:
            main([*command, *settings_flags(tmp_path), "-X", "client.id=x"])
        assert info.value.code == 2
        assert "unrecognized arguments: -X" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        assert "-X" not in capsys.readouterr().out


def test_a_partition_without_events_is_said_so(tmp_path, capsys):
    """A worker commits the clock of a partition that has had no event yet as BEFORE_TIME, an
    instant no format can write: the answer says the partition has no event yet."""
    from stream.model.time import BEFORE_TIME

    build_stores(tmp_path / "state")
    empty = PartitionStore(tmp_path / "state" / "grp" / "p2")
    empty.set_stream_time(BEFORE_TIME)
    empty.commit(1)
    assert main(["members", "repeat-buyer", *settings_flags(tmp_path)]) == 0
    assert "3 members of repeat-buyer; as of p0 2025-01-02T00:00:00Z, p1 2025-01-02T00:00:00Z, p2 no event yet" in \
        capsys.readouterr().err
    empty.close()


def test_a_file_segment_the_stores_no_longer_run_is_unknown(tmp_path, capsys):
    """A segment of the file removed through the definitions topic (`segments undefine`) is absent
    from the Running records: `members` says it is unknown, as the worker's HTTP route and the console
    do, instead of listing no one as if it ran."""
    from stream.definitions.resolution import Running, encode_running, file_definitions
    from stream.storage.keys import DEFINITIONS_KEY

    stores = build_stores(tmp_path / "state")
    running = {k: v for k, v in file_definitions(load_catalog()).items() if k != "champion"}
    for store in stores:
        store.set_meta(DEFINITIONS_KEY, encode_running(Running(running)))
        store.commit(2)
    assert main(["members", "champion", *settings_flags(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown segment 'champion'" in err and "repeat-buyer" in err and "champion," not in err
    assert main(["members", "repeat-buyer", "--format", "jsonl", *settings_flags(tmp_path)]) == 0
    assert '"customer_id":"c-a"' in capsys.readouterr().out
    for store in stores:
        store.close()


def test_the_http_route_explains_by_the_definitions_the_customer_s_partition_committed(tmp_path):
    """GET /customers/<id> (and the console's customer page, through the same choice) explains a
    customer by the definitions their partition's last committed batch ran, as `segments explain`:
    here a segment of the topic that the catalog asked for does not hold yet."""
    from stream.definitions.resolution import Running, encode_running, file_definitions
    from stream.inspect.routes import segment_routes
    from stream.rules.catalog import compile_catalog
    from stream.runtime.http import Request
    from stream.storage.keys import DEFINITIONS_KEY

    extra = {"big-spender": {"version": 3, "when": {"paid_total": {"gte": 150}}}}
    running = compile_catalog({**file_definitions(load_catalog()), **extra}, "running")
    store = PartitionStore(tmp_path / "state" / "grp" / "p0")
    engine = Engine(running, store)
    engine.apply(order_paid("c-rich", T0, "o1", 200.0))
    store.set_stream_time(engine.now)
    store.set_meta(DEFINITIONS_KEY, encode_running(Running(file_definitions(running))))
    store.commit(1)
    routes = {r.path: r for r in segment_routes(tmp_path / "state", "grp", load_catalog, lambda: [0], dict)}
    answer = json.loads(routes["/customers/<id>"].handler(Request(("c-rich",), {})).body)  # type: ignore[arg-type]
    by_name = {c["segment"]: c for c in answer["conditions"]}
    assert by_name["big-spender"]["member"] and by_name["big-spender"]["version"] == 3
    store.close()
