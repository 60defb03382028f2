"""The Faust 0.15 (faust-streaming) and aiokafka 0.14 workarounds this runtime needs, apart from how
it uses them: input partitions held paused until a rebalance has ended (recovery resumes them
before it seeks them), and no topic created by looking it up. docs/faust-runtime.md tells why."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import aiokafka.admin.client
import aiokafka.client
import faust
from aiokafka.protocol.metadata import MetadataRequest
from faust.types import TP


class HoldingApp(faust.App):
    """faust.App that resumes the input partitions only once a rebalance has ended (see
    docs/faust-runtime.md): Faust 0.15's recovery (faust/tables/recovery.py, on_recovery_completed and
    _resume_streams) resumes them and only then awaits consumer.perform_seek(), with the fetcher
    running and the app's flow control already resumed for the changelog restore. Events fetched
    while the seek awaits the committed offsets reach the agent's channel queue and move the
    consumer's read offsets; the seek then sets the read offsets back (a later event looks like a
    gap, and Consumer._new_offset fills gaps with offsets that were also acked: duplicates in
    `_acked`, so each commit takes one short run, about one offset) and the final
    flow_control.resume() clears the queue (those events are never applied nor acked, and their
    re-read is dropped by _drain_messages as already read: the commits stop there, or a gap covers
    them and they are committed unapplied). Held paused until on_rebalance_end, which Faust calls
    after all that, no input event moves before the seek."""

    def _new_consumer(self) -> Any:
        # Its methods are replaced here: Any, not faust's ConsumerT.
        consumer: Any = super()._new_consumer()
        resume = consumer.resume_partitions
        self._held: set[TP] = set()
        self.fetched: dict[TP, int] = {}     # per partition, the offset after the last record handed to Faust

        def resume_partitions(tps: Iterable[TP]) -> None:
            tps = set(tps)
            if self.rebalancing:            # set by on_rebalance_start, cleared by on_rebalance_end
                changelogs = self.tables.changelog_topics
                held = {tp for tp in tps if tp.topic not in changelogs}
                self._held |= held
                tps -= held
            resume(tps)

        consumer.resume_partitions = resume_partitions
        getmany = consumer._getmany

        async def _getmany(active_partitions, timeout):
            # Faust hands aiokafka its live set of active partitions, which the aiokafka fetch
            # reads while it waits, and aiokafka's fetched_records takes an empty set for "every
            # partition": while the inputs are held and the changelogs paused again after the
            # restore, it drained the held partitions (aiokafka's position moved to their end) and
            # Faust's getmany then dropped those records as not active. A snapshot, never empty.
            if active_partitions is not None:
                active_partitions = set(active_partitions)
                if not active_partitions:
                    return {}
            records = await getmany(active_partitions, timeout)
            for tp, batch in records.items():
                if batch:
                    self.fetched[tp] = batch[-1].offset + 1
            return records

        consumer._getmany = _getmany
        return consumer

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        held, self._held = self._held, set()
        self.consumer.resume_partitions(held & self.consumer.assignment())


class _NoAutoCreation(MetadataRequest):
    """A metadata request that never asks the broker to create the topics it names."""

    def __init__(self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None):
        super().__init__(topics, allow_auto_topic_creation=False)


def refuse_auto_creation() -> None:
    """Have this process's aiokafka clients look topics up without creating them, as
    allow.auto.create.topics=false does for the librdkafka ones. aiokafka 0.14 asks the broker to
    create every missing topic it looks up (its MetadataRequest defaults to it, with no setting):
    a broker that allows it (Kafka's default, Tansu) would recreate a deleted or wiped topic under
    the running group with its default partition count and no compaction."""
    for module in (aiokafka.client, aiokafka.admin.client):
        module.MetadataRequest = _NoAutoCreation
