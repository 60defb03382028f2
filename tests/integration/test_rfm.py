"""Live RFM on a real broker: `segments rfm calibrate --publish` reads a running worker's stores,
publishes the cut points as the next rfm.scores version, and the worker re-evaluates the segments
reading rfm.* only: its definition moves are exactly those of a reference engine per partition
redefined with the published section (tests/integration/definition_steps.Reference)."""
from __future__ import annotations

import shutil
from pathlib import Path

from stream.cli.main import main
from stream.kafka.definitions_feed import read_topic
from stream.kafka.topic_admin import ensure_topics
from stream.rules.catalog import load_catalog
from stream.rules.rfm import RFM_KEY
from stream.tools.synth import shopper_events
from stream.worker.loop import Worker

from . import conformance
from .definition_steps import Reference, ids, wait_for_moves
from .workers import PARTITIONS, Running, settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rfm.yaml"


def test_calibrated_cut_points_move_only_the_readers_of_rfm(kafka_bootstrap, unique_topic, tmp_path, capsys):
    segments = tmp_path / "rfm.yaml"
    shutil.copy(EXAMPLE, segments)
    catalog = load_catalog(segments)
    config = settings(kafka_bootstrap, unique_topic, tmp_path / "state", segments_file=segments,
                      definitions_topic=f"{unique_topic}-definitions")
    lines = list(shopper_events(300, 4000, seed=5))
    worker = Worker(config, catalog)
    ensure_topics(kafka_bootstrap, worker.topics())
    with Running(worker) as running:
        partition_of: dict[str, int] = {}
        conformance.produce(kafka_bootstrap, config.input_topics[0], lines, partition_of)
        running.wait_for(len(lines))
        reference = Reference(lines, partition_of, catalog)
        assert main(["rfm", "calibrate", "--state-dir", str(tmp_path / "state"), "--group-id", config.group_id,
                     "--segments", str(segments), "--publish", "--bootstrap-servers", kafka_bootstrap,
                     "--definitions-topic", str(config.definitions_topic)]) == 0
        assert "rfm.scores version 2 published" in capsys.readouterr().out
        feed = read_topic(kafka_bootstrap, {}, str(config.definitions_topic))
        published = feed.records[RFM_KEY].definition
        feed.close()
        assert published is not None and published["version"] == 2
        expected = reference.redefine(RFM_KEY, published)
        assert expected, "new cut points should move someone"
        moves = wait_for_moves(kafka_bootstrap, config.changes_topic, ids(expected))
    assert ids(moves) == ids(expected)
    assert {m["segment"] for m in moves} <= set(catalog.by_name) and {m["cause"] for m in moves} == {"definition"}
    assert len(conformance.read_all(kafka_bootstrap, config.changes_topic, PARTITIONS)) > len(moves)
