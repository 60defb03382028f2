"""`segments rfm calibrate`: quantile cut points (ties made strictly ascending and said), from real
partition stores (read as `segments members` reads them) or a replay's final state; printed with the
distribution; written as a segments file that loads, or handed to the definitions topic's
publishing; a clear error and exit 2 without stores or population."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stream.cli.main import main
from stream.engine.core import Engine
from stream.rules.catalog import load_catalog, parse_catalog
from stream.rules.rfm import RFM_KEY
from stream.rules.rfm_calibration import Population, calibrate
from stream.storage.rocksdb_store import PartitionStore
from tests.helpers import DAY, event_bytes, instant, order_paid, product_viewed

T0 = instant("2025-01-01T00:00:00Z")
HOUR = DAY // 24
SEGMENTS = """
rfm:
  levels: 4
segments:
  recent: {when: {rfm.r: {gte: 3}}}
  loyal:  {when: {paid_orders: {gte: 5}}}
"""


def test_quantiles_at_k_over_levels():
    found = Population(ages=[h * HOUR for h in range(1, 101)], frequency=list(range(1, 101)),
                       monetary=[float(v) for v in range(100, 0, -1)])
    cal = calibrate(found, 4)
    assert cal.cuts == {"recency": ["26h", "51h", "76h"], "frequency": [26, 51, 76], "monetary": [26.0, 51.0, 76.0]}
    assert cal.notes == []


def test_ties_are_raised_to_the_next_value_and_said():
    # 60 customers with one order, 20 with two, 10 with three, 10 with seven
    found = Population(ages=[DAY] * 100, frequency=[1] * 60 + [2] * 20 + [3] * 10 + [7] * 10, monetary=[5] * 100)
    cal = calibrate(found, 5)
    assert cal.cuts["frequency"] == [2, 3, 7, 8]           # score 1: one order; 5: nobody (above every value)
    assert cal.cuts["recency"] == ["25h", "26h", "27h", "28h"]
    assert cal.cuts["monetary"] == [6, 7, 8, 9]
    frequency = next(n for n in cal.notes if n.startswith("frequency"))
    assert "raised 4 of 4 cuts" in frequency and "the top 1 score(s) hold no customer" in frequency
    assert "the lowest 4 score(s) hold no customer" in next(n for n in cal.notes if n.startswith("recency"))


def _events(path: Path) -> Path:
    lines = []
    for i in range(10):                      # customer i paid i + 1 orders of 100 * (i + 1), the last i days ago
        for k in range(i + 1):
            lines.append(event_bytes("order_paid", f"c{i}", T0 + (30 - i) * DAY - k * HOUR, f"e{i}-{k}",
                                     order_id=f"o{i}-{k}", amount=100.0 * (i + 1)))
    lines.append(event_bytes("product_viewed", "c-browser", T0 + 30 * DAY, "v1", product_id="p", category="x"))
    path.write_bytes(b"\n".join(sorted(lines, key=lambda raw: raw.split(b'"occurred_at":')[1])) + b"\n")
    return path


def test_from_a_replay_written_as_a_segments_file_that_loads(tmp_path, capsys):
    segments = tmp_path / "segments.yaml"
    segments.write_text(SEGMENTS)
    out = tmp_path / "calibrated.yaml"
    assert main(["rfm", "calibrate", "--replay", str(_events(tmp_path / "e.jsonl")), "--segments", str(segments),
                 "--write", str(out)]) == 0
    printed = capsys.readouterr()
    assert "10 customers with all three measures (1 without: no scores)" in printed.out
    assert "frequency  paid_orders" in printed.out and f"wrote {out}" in printed.err
    catalog = load_catalog(out)
    assert catalog.rfm is not None and catalog.rfm.levels == 4 and set(catalog.by_name) == {"recent", "loyal"}
    written = yaml.safe_load(out.read_text())
    # ages 0..9 days, orders 1..10, totals 100 (i + 1)^2: the values at indexes 2, 5 and 7 of 10
    assert written["rfm"]["cuts"] == {"recency": ["2d", "5d", "7d"], "frequency": [3, 6, 8],
                                      "monetary": [900.0, 3600.0, 6400.0]}


def test_without_write_or_publish_a_dry_run(tmp_path, capsys):
    assert main(["rfm", "calibrate", "--replay", str(_events(tmp_path / "e.jsonl"))]) == 0
    printed = capsys.readouterr()
    assert "cells: " in printed.out and "nothing written (a dry run)" in printed.err


def _stores(state_dir: Path) -> None:
    stores = [PartitionStore(state_dir / "grp" / f"p{n}") for n in (0, 1)]
    engines = [Engine(load_catalog(), store) for store in stores]
    for i in range(8):
        for k in range(i % 4 + 1):
            engines[i % 2].apply(order_paid(f"c{i}", T0 + i * DAY + k, f"o{i}-{k}", 1000.0 * (i + 1)))
    engines[0].apply(product_viewed("c-browser", T0 + 8 * DAY, "p1"))
    for store, engine in zip(stores, engines, strict=True):
        store.set_stream_time(engine.now)
        store.commit(1)
    for store in stores:
        store.close()


def test_from_the_stores_each_at_its_stream_time(tmp_path, capsys):
    _stores(tmp_path / "state")
    out = tmp_path / "calibrated.yaml"
    assert main(["rfm", "calibrate", "--state-dir", str(tmp_path / "state"), "--group-id", "grp",
                 "--write", str(out)]) == 0
    assert "8 customers with all three measures (1 without: no scores)" in capsys.readouterr().out
    catalog = load_catalog(out)          # the built-in catalog, with an rfm section now
    assert catalog.rfm is not None and catalog.rfm.cuts is not None
    assert set(catalog.by_name) == set(load_catalog().by_name)
    assert catalog.rfm.cuts[1] == (2, 3, 4, 5)            # 1, 2, 3, 4 orders, two customers each


def test_no_stores_or_no_population_exit_2(tmp_path, capsys):
    assert main(["rfm", "calibrate", "--state-dir", str(tmp_path / "none"), "--group-id", "grp"]) == 2
    assert "no partition stores under" in capsys.readouterr().err
    views = tmp_path / "views.jsonl"
    views.write_bytes(event_bytes("product_viewed", "c", T0, "v1", product_id="p", category="x") + b"\n")
    assert main(["rfm", "calibrate", "--replay", str(views)]) == 2
    assert "no customer has all three measures (last_paid_at, paid_orders, paid_total; 1 without)" in \
        capsys.readouterr().err
    assert main(["rfm", "calibrate", "--replay", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: No such file" in capsys.readouterr().err


def test_a_bad_section_or_publish_without_a_broker_exit_2(tmp_path, capsys):
    segments = tmp_path / "s.yaml"
    segments.write_text("rfm: {levels: 1}\nsegments: {a: {when: {paid_orders: {gte: 1}}}}\n")
    assert main(["rfm", "calibrate", "--replay", str(_events(tmp_path / "e.jsonl")), "--segments",
                 str(segments)]) == 2
    assert "rfm.levels: a whole number from 2 to 9" in capsys.readouterr().err
    assert main(["rfm", "calibrate", "--replay", str(tmp_path / "e.jsonl"), "--publish"]) == 2
    assert "--publish needs --bootstrap-servers" in capsys.readouterr().err


def test_publish_hands_the_section_to_define_segment(tmp_path, capsys, monkeypatch):
    from stream.kafka import publishing
    published: list[tuple[str, dict[str, Any], Any]] = []

    def define_segment(name: str, definition: dict[str, Any], topic: Any) -> publishing.Outcome:
        published.append((name, definition, topic))
        return publishing.Outcome(publishing.PUBLISHED, f"{name} version 3 published", version=3)
    monkeypatch.setattr(publishing, "define_segment", define_segment)
    segments = tmp_path / "segments.yaml"
    segments.write_text(SEGMENTS.replace("levels: 4", "levels: 4\n  version: 2"))
    assert main(["rfm", "calibrate", "--replay", str(_events(tmp_path / "e.jsonl")), "--segments", str(segments),
                 "--publish", "--bootstrap-servers", "localhost:1", "-X", "client.id=calibrating"]) == 0
    assert "rfm.scores version 3 published" in capsys.readouterr().out
    (name, definition, topic), = published
    assert name == RFM_KEY and "version" not in definition and definition["levels"] == 4
    assert topic.kafka["client.id"] == "calibrating" and topic.name == "segment-definitions"
    # the file's section as it runs (its version counts, and it is what the new one changes)
    assert topic.file_catalog.rfm is not None and topic.file_catalog.rfm.cuts is None
    assert topic.file_catalog.rfm.definition["version"] == 2
    parse_catalog(yaml.safe_dump({"rfm": definition, "segments": {"r": {"when": {"rfm.r": {"gte": 1}}}}}))


def test_a_last_order_in_the_future_of_stream_time_is_age_zero():
    # A partition's stream time can lag a customer's last order (late partitions, clock skew): the
    # age now - last is negative. It scores like age 0 (R = levels), so it calibrates as 0, and every
    # cut is a positive duration that the grammar reads back.
    catalog = parse_catalog(SEGMENTS.replace("rfm.r: {gte: 3}", "paid_orders: {gte: 1}"), "s.yaml")
    assert catalog.rfm is not None
    found = Population()
    for i, last in enumerate((T0 + 3 * HOUR, T0 + HOUR // 2, T0, T0 - 5 * HOUR, T0 - 9 * HOUR)):
        engine = Engine(catalog)
        engine.apply(order_paid(f"c{i}", last, "o", 10.0), [])
        found.add(catalog.rfm, engine.store.get(f"c{i}"), T0)
    assert found.ages == [0, 0, 0, 5 * HOUR, 9 * HOUR]
    cal = calibrate(found, 5)
    assert cal.cuts["recency"] == ["5h", "9h", "10h", "11h"]
    written = {"rfm": {"cuts": cal.cuts}, "segments": {"r": {"when": {"rfm.r": {"gte": 2}}}}}
    parse_catalog(yaml.safe_dump(written), "s.yaml")


def test_ages_past_the_longest_duration_calibrate_to_cuts_the_grammar_reads():
    # A last payment stamped near the epoch, seen from today: an age over 100 years, the longest
    # duration a cut may be. Counted as the oldest age (R 1 under any cut), the cuts, raised past
    # it for ties, stay within the grammar.
    catalog = parse_catalog(SEGMENTS.replace("rfm.r: {gte: 3}", "paid_orders: {gte: 1}"), "s.yaml")
    assert catalog.rfm is not None
    found = Population()
    for i in range(5):
        engine = Engine(catalog)
        engine.apply(order_paid(f"c{i}", 0, "o", 10.0), [])
        found.add(catalog.rfm, engine.store.get(f"c{i}"), 200 * 365 * DAY)
    cal = calibrate(found, 5)
    written = {"rfm": {"cuts": cal.cuts}, "segments": {"r": {"when": {"rfm.r": {"gte": 2}}}}}
    parse_catalog(yaml.safe_dump(written), "s.yaml")
