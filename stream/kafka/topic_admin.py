"""Topic set-up on the embedded broker and on Apache Kafka alike: create what is missing and wait
until it is usable (ensure_topics), and say what is wrong with topics that exist (topic_problems).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from stream.errors import Problems

TopicSpec = tuple[str, int, Mapping[str, str | int]]


class TopicsNotAsExpected(Problems):
    """Topics the worker needs are missing or not as it created them; each problem named."""

    heading = "topics not as expected"

    def __init__(self, problems: list[str]):
        super().__init__(problems, "; ".join(problems))


def admin_client(client: Mapping[str, object] | str) -> AdminClient:
    """The one place an AdminClient is built from a client configuration. A plain bootstrap string is
    for the embedded broker and the tests; the product passes the whole client configuration
    (stream.kafka.clients.client_config), security settings and the watch's callbacks included."""
    # (confluent-kafka's AdminClient stub allows no callables in the config; AdminClient takes
    # error_cb and logger as Consumer and Producer do, whose stubs allow Any.)
    return AdminClient({"bootstrap.servers": client} if isinstance(client, str)
                       else dict(client))  # type: ignore[arg-type]


def ensure_topics(client: Mapping[str, object] | str, specs: Iterable[TopicSpec], *, replication_factor: int = -1,
                  timeout: float = 30.0) -> None:
    """Create the topics that do not exist yet and wait until every one is usable.

    `client` is the client configuration (or just the bootstrap servers). Configs are given
    explicitly so that a topic behaves alike on Tansu and on a Kafka cluster whose broker defaults
    may differ (and Tansu's DescribeConfigs reports only what was set at creation). A topic that
    already exists is left as it is, configs and partition count included (topic_problems checks
    them). `replication_factor` -1 takes the broker's default.
    """
    specs = list(specs)
    deadline = time.monotonic() + timeout
    admin = admin_client(client)
    where = client if isinstance(client, str) else client.get("bootstrap.servers")
    existing = admin.list_topics(timeout=timeout).topics
    new = [
        NewTopic(name, num_partitions=partitions, replication_factor=replication_factor,
                 config={k: str(v) for k, v in config.items()})
        for name, partitions, config in specs if name not in existing
    ]
    if new:
        for future in admin.create_topics(new, operation_timeout=timeout).values():
            # exception() rather than result(): a raised error would keep this frame, and with it
            # the AdminClient and its open connection, alive in a reference cycle until the
            # garbage collector runs.
            error = future.exception(timeout=max(0.0, deadline - time.monotonic()))
            if error is not None and not _already_exists(error):
                raise error
    wanted = {name for name, _, _ in specs}
    while True:
        topics = admin.list_topics(timeout=max(0.1, deadline - time.monotonic())).topics
        missing = {
            name for name in wanted
            if name not in topics or topics[name].error is not None or not topics[name].partitions
            or any(p.leader < 0 or p.error is not None for p in topics[name].partitions.values())
        }
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics not ready on {where} after {timeout:.0f}s: "
                               f"{sorted(missing)}")
        time.sleep(0.1)


def topic_problems(admin: AdminClient, specs: Iterable[TopicSpec], partitions: Mapping[str, int],
                   timeout: float = 10.0) -> list[str]:
    """What is wrong with the topics of `specs` now: missing, a partition count other than
    `partitions[name]` (for the names it has), compaction lost where the spec asks for it.

    Compaction is checked where DescribeConfigs answers cleanup.policy. Kafka always does (a
    topic's effective configs, defaults included); Tansu answers only the configs given at creation,
    so on Tansu a topic created without cleanup.policy (auto-created by a producer, say) cannot be
    told from a compacted one, and only its presence and partition count are checked."""
    specs = list(specs)
    found = admin.list_topics(timeout=timeout).topics
    problems, compacted = [], []
    for name, _, config in specs:
        meta = found.get(name)
        if meta is None or meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            problems.append(f"topic {name!r} does not exist")
        elif name in partitions and len(meta.partitions) != partitions[name]:
            problems.append(f"topic {name!r} has {len(meta.partitions)} partitions, the worker needs "
                            f"{partitions[name]}")
        elif "compact" in str(config.get("cleanup.policy", "")):
            compacted.append(name)
    if compacted:
        futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name) for name in compacted],
                                         request_timeout=timeout)
        for resource, future in futures.items():
            error = future.exception(timeout=timeout)
            if error is not None:
                raise error
            entry = future.result().get("cleanup.policy")
            if entry is not None and "compact" not in str(entry.value):
                problems.append(f"topic {resource.name!r} is not compacted (cleanup.policy={entry.value})")
    return problems


def _already_exists(error: BaseException) -> bool:
    # Another process (a second worker, a parallel test) created the topic first.
    return (isinstance(error, KafkaException)
            and error.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS)
