"""The topics both runtimes set up (stream.runtime.topics, stream.faust_runtime.topics): their
changelog takes the largest record a bounded state can make."""
from __future__ import annotations

from stream.faust_runtime.topics import changelog_topic, topics as faust_topics
from stream.model import events as ev
from stream.model.state import MAX_STATE_BYTES
from stream.runtime.settings import WorkerConfig
from stream.runtime.topics import CHANGELOG_MESSAGE_BYTES, PRODUCER_BATCH_BYTES, PRODUCER_MESSAGE_BYTES, worker_topics


def test_a_changelog_record_always_fits_the_changelog_topic():
    """The changelog topics say their max.message.bytes, above what any producer batches into them
    and above the largest record (the state bound plus the longest key)."""
    config = WorkerConfig(group_id="g")
    specs = {name: configs for name, _, configs in worker_topics(config)}
    faust = {name: configs for name, _, configs in faust_topics(config)}
    largest_record = MAX_STATE_BYTES + 4 * ev.MAX_ID_CHARS + 1024          # key and record framing
    for configs in (specs[config.changelog_topic], faust[changelog_topic(config)]):
        assert configs["cleanup.policy"] == "compact"
        assert configs["max.message.bytes"] == CHANGELOG_MESSAGE_BYTES
    assert PRODUCER_BATCH_BYTES + largest_record <= CHANGELOG_MESSAGE_BYTES <= PRODUCER_MESSAGE_BYTES
