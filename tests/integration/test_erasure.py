"""Erasure on a real broker: the topics the runtimes create carry the configs that bound how long
an erased customer's records stay (segment.ms, max.compaction.lag.ms, delete.retention.ms,
retention.ms). Tansu does not compact its memory storage (docs/embedded-broker.md), so compaction
itself is Kafka's; what is checked here, on Tansu and on an external Kafka alike, is that the
broker holds every config as specified."""
from __future__ import annotations

from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from stream import faust_app
from stream.broker import ensure_topics
from stream.config import WorkerConfig
from stream.runtime import worker_topics
from tests.test_erasure import expected, personal_topics


def test_the_broker_holds_the_erasure_bounds_of_every_topic(kafka_bootstrap, unique_topic):
    config = WorkerConfig(
        bootstrap_servers=kafka_bootstrap, group_id=unique_topic, partitions=2,
        input_topics=(f"{unique_topic}-in",), routed_topics=(f"{unique_topic}-orders",),
        changes_topic=f"{unique_topic}-changes", membership_topic=f"{unique_topic}-membership",
        dead_letter_topic=f"{unique_topic}-dead", definitions_topic=f"{unique_topic}-defs",
        erasure_max_lag_ms=3_600_000, changes_retention_ms=2 * 86_400_000, dead_letter_retention_ms=86_400_000)
    specs = {spec[0]: spec for spec in [*worker_topics(config), *faust_app.topics(config)]}
    ensure_topics(kafka_bootstrap, specs.values())
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    wanted = personal_topics(config)
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name) for name in wanted])
    for resource, future in futures.items():
        held = {key: entry.value for key, entry in future.result(timeout=30).items()}
        bound = expected(config, resource.name)
        assert {key: held.get(key) for key in bound} == {k: str(v) for k, v in bound.items()}, resource.name
