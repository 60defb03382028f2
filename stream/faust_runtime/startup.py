"""What the Faust runtime checks and prepares before Faust starts: its topics created and their
partition counts checked, partition databases too stale to catch up deleted, and the waits for the
brokers ended by SIGINT or SIGTERM (Faust's own handlers come only with its Worker).
"""
from __future__ import annotations

import logging
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from stream.errors import SegmentsError
from stream.faust_runtime.topics import TABLE, topics
from stream.kafka.clients import ATTEMPT_SECONDS, BrokerWatch, partition_counts, worker_client_config
from stream.kafka.topic_admin import admin_client, ensure_topics
from stream.model.time import DAY_MS
from stream.runtime.settings import WorkerConfig
from stream.runtime.topics import outlived_tombstones
from stream.storage.erasure import idle_ms_at

log = logging.getLogger("segments.faust")

T = TypeVar("T")


class PartitionCountsWrong(SegmentsError):
    """Input topics without the worker's partition count: partition p of each could not feed engine p."""


def set_up_topics(config: WorkerConfig, watch: BrokerWatch) -> dict[str, int]:
    """The topics created when absent and the input's partition counts checked; every topic's
    partition count (for the BrokerProbe)."""
    client = worker_client_config(config, watch)
    ensure_topics(client, topics(config), replication_factor=config.replication_factor,
                  timeout=ATTEMPT_SECONDS)
    check_partitions(config, watch)
    return partition_counts(client, [name for name, _, _ in topics(config)], timeout=ATTEMPT_SECONDS)


def check_partitions(config: WorkerConfig, watch: BrokerWatch) -> None:
    """Partition p of every keyed input topic must feed engine p, and Faust reads the topics as
    they are: each needs the worker's partition count (the co-partitioning of the ticks and
    changelog topics with the input rests on it too)."""
    admin = admin_client(worker_client_config(config, watch))
    found = admin.list_topics(timeout=ATTEMPT_SECONDS).topics
    wrong = {t: len(found[t].partitions) for t in config.keyed_topics
             if len(found[t].partitions) != config.partitions}
    if wrong:
        raise PartitionCountsWrong(f"segments worker: input topics must have {config.partitions} partitions "
                         f"(--partitions): {', '.join(f'{t} has {n}' for t, n in sorted(wrong.items()))}")


def drop_stale_partitions(tabledir: Path) -> None:
    """As the native worker: a partition database that has not seen its changelog for longer
    than the changelog keeps tombstones is deleted before Faust opens it, so Faust restores it
    whole rather than catching it up (and keeping a customer erased meanwhile)."""
    for path in sorted(tabledir.glob(f"{TABLE}-*.db")):
        idle = idle_ms_at(path)
        if idle is not None and outlived_tombstones(idle):
            log.warning("%s was last written %.1f days ago, longer than the changelog keeps erasure "
                        "tombstones; Faust restores it from the changelog", path, idle / DAY_MS)
            shutil.rmtree(path)


def until_signalled(start_up: Callable[[threading.Event], T | None]) -> T | None:
    """The start-up steps, waited out while no broker answers (said at a bounded rate); None
    when SIGINT or SIGTERM came first, as they end the native worker's wait. Faust's own
    handlers come only with its Worker, so until then these are ours."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():      # no handlers there
        return start_up(stop)
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        counts = start_up(stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return None if stop.is_set() else counts
